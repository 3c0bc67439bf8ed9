"""MRD v1 streams: the messages of the ISMRMRD socket protocol (Gadgetron, python-ismrmrd-server,
Siemens FIRE) framed from any byte source, and recorded streams (a file holding the bytes of a
stream, e.g. a ``recon serve`` spool log) read as ``RawData``.

A message is a uint16 id (little endian) followed by its body:

==================  =====  ===========================================================================
CONFIG_FILE         1      1024 bytes: a NUL-padded UTF-8 name (the pipeline, e.g. ``recon-sense``)
CONFIG_TEXT         2      uint32 length + text (NUL-terminated in practice)
HEADER              3      uint32 length + the ISMRMRD XML header
CLOSE               4      nothing: all data sent
TEXT                5      uint32 length + text (log lines; FIRE's JSON "configAdditional")
ACQUISITION         1008   340-byte AcquisitionHeader, trajectory float32, data complex64 (``recon.io.mrd``)
IMAGE               1022   198-byte ImageHeader, uint64 attribute length, attributes (XML), data
WAVEFORM            1026   40-byte WaveformHeader, data uint32 (``recon.io.mrd``)
==================  =====  ===========================================================================

``read_message(read_exactly, limits)`` frames one message, checking every declared size against
``MessageLimits`` *before* reading (a hostile or corrupt stream cannot make it allocate more): an
unknown id, a size over a limit or undecodable text raise ``MessageError`` (a ValueError, one line);
a source that ends inside a message raises ``StreamTruncated``. IMAGE bodies are framed by a caller
that passes a reader for them (``readers={MRD_MESSAGE_IMAGE: ...}``; ``recon.stream`` does, with the
``ismrmrd`` package's ``Image``); without one an IMAGE is refused like an unknown id. The ``encode_*``
functions build messages; ``Message.raw`` is a message's exact bytes, id included.

``read_mrd_stream(path)`` reads a recorded stream into a ``RawData`` through the same
``AcquisitionDecoder`` as files and sockets; a recording cut short inside its last message (a
process killed while writing) keeps everything before it, with a warning. ``recon.io.read_raw``
recognises such files by their first message (CONFIG_FILE, CONFIG_TEXT or HEADER).
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from .mrd import (
    ACQ_HEAD_DTYPE,
    MRD_MESSAGE_ACQUISITION,
    MRD_MESSAGE_CLOSE,
    MRD_MESSAGE_CONFIG_FILE,
    MRD_MESSAGE_CONFIG_TEXT,
    MRD_MESSAGE_HEADER,
    MRD_MESSAGE_IMAGE,
    MRD_MESSAGE_TEXT,
    MRD_MESSAGE_WAVEFORM,
    WAVEFORM_HEAD_DTYPE,
    IsmrmrdFormatError,
    acquisition_to_bytes,
    waveform_to_bytes,
)

MESSAGE_NAMES = {MRD_MESSAGE_CONFIG_FILE: "CONFIG_FILE", MRD_MESSAGE_CONFIG_TEXT: "CONFIG_TEXT",
                 MRD_MESSAGE_HEADER: "HEADER", MRD_MESSAGE_CLOSE: "CLOSE", MRD_MESSAGE_TEXT: "TEXT",
                 MRD_MESSAGE_ACQUISITION: "ACQUISITION", MRD_MESSAGE_IMAGE: "IMAGE",
                 MRD_MESSAGE_WAVEFORM: "WAVEFORM"}
#: the messages a stream may begin with (how ``recon.io.detect_format`` recognises a recorded stream)
FIRST_MESSAGES = (MRD_MESSAGE_CONFIG_FILE, MRD_MESSAGE_CONFIG_TEXT, MRD_MESSAGE_HEADER)
CONFIG_FILE_BYTES = 1024
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


@dataclass(frozen=True)
class MessageLimits:
    """What one message may declare (bytes, counts); larger declarations are refused before reading.

    ``max_text_bytes``: CONFIG_TEXT and TEXT; ``max_header_bytes``: the XML HEADER (the XML parser
    refuses more than 16 MiB anyway); ``max_samples`` / ``max_channels`` / ``max_trajectory_dims``:
    an acquisition's ``number_of_samples``, ``active_channels`` and ``trajectory_dimensions`` (a
    waveform's samples and channels); ``max_message_bytes``: the body of one acquisition, waveform or
    image."""

    max_text_bytes: int = 1 << 20
    max_header_bytes: int = 16 << 20
    max_samples: int = 65535
    max_channels: int = 1024
    max_trajectory_dims: int = 3
    max_message_bytes: int = 64 << 20


class MessageError(ValueError):
    """A stream holds a message recon cannot frame: unknown id, size over a limit, bad text (one line)."""


class StreamTruncated(MessageError):
    """The byte source ended inside a message."""


@dataclass
class Message:
    """One framed message: ``id``, ``raw`` (its exact bytes, id included), ``text`` (CONFIG_FILE's
    name, CONFIG_TEXT, HEADER, TEXT; else None) and ``payload`` (what a caller's reader returned)."""

    id: int
    raw: bytes
    text: str | None = None
    payload: object = None

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.id, str(self.id))

    @property
    def body(self) -> memoryview:
        """The bytes after the id (an ACQUISITION's or WAVEFORM's MRD layout)."""
        return memoryview(self.raw)[2:]


def _exactly(read_exactly, n: int, what: str) -> bytes:
    b = read_exactly(n) if n else b""
    if len(b) != n:
        raise StreamTruncated(f"the stream ends inside a {what} message ({len(b)} of {n} bytes)")
    return bytes(b)


def _text(b: bytes, what: str, strict: bool) -> str:
    b = b.split(b"\0", 1)[0]
    try:
        return b.decode("utf-8", errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise MessageError(f"{what} message: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _check(value: int, limit: int, what: str) -> None:
    if value > limit:
        raise MessageError(f"{what} {value} exceeds the limit of {limit}")


def read_message(read_exactly, limits: MessageLimits = MessageLimits(), *, readers=None) -> Message | None:
    """The next message from ``read_exactly(n)`` (which returns ``n`` bytes, fewer only where the
    source ends); None when the source ends before a message begins.

    ``readers``: ``{id: f}`` for messages framed by the caller (IMAGE): ``f(read_exactly, limits)``
    returns ``(body bytes, payload)``. Raises ``MessageError`` (unknown id, a size over ``limits``,
    text that is not UTF-8) or ``StreamTruncated``.
    """
    head = read_exactly(2)
    if len(head) == 0:
        return None
    if len(head) != 2:
        raise StreamTruncated("the stream ends inside a message id")
    mid = _U16.unpack(head)[0]
    name = MESSAGE_NAMES.get(mid)
    if readers and mid in readers:
        body, payload = readers[mid](read_exactly, limits)
        return Message(mid, bytes(head) + body, None, payload)
    if mid == MRD_MESSAGE_CONFIG_FILE:
        body = _exactly(read_exactly, CONFIG_FILE_BYTES, name)
        return Message(mid, bytes(head) + body, _text(body, name, True))
    if mid in (MRD_MESSAGE_CONFIG_TEXT, MRD_MESSAGE_HEADER, MRD_MESSAGE_TEXT):
        lb = _exactly(read_exactly, 4, name)
        n = _U32.unpack(lb)[0]
        limit = limits.max_header_bytes if mid == MRD_MESSAGE_HEADER else limits.max_text_bytes
        _check(n, limit, f"{name} message: length")
        body = _exactly(read_exactly, n, name)
        return Message(mid, bytes(head) + lb + body, _text(body, name, mid != MRD_MESSAGE_TEXT))
    if mid == MRD_MESSAGE_CLOSE:
        return Message(mid, bytes(head))
    if mid == MRD_MESSAGE_ACQUISITION:
        h = _exactly(read_exactly, ACQ_HEAD_DTYPE.itemsize, name)
        a = np.frombuffer(h, dtype=ACQ_HEAD_DTYPE)[0]
        ns, nc, td = int(a["number_of_samples"]), int(a["active_channels"]), int(a["trajectory_dimensions"])
        _check(ns, limits.max_samples, "ACQUISITION: number_of_samples")
        _check(nc, limits.max_channels, "ACQUISITION: active_channels")
        _check(td, limits.max_trajectory_dims, "ACQUISITION: trajectory_dimensions")
        n = 4 * ns * td + 8 * ns * nc
        _check(n, limits.max_message_bytes, "ACQUISITION: bytes of trajectory and data")
        return Message(mid, bytes(head) + h + _exactly(read_exactly, n, name))
    if mid == MRD_MESSAGE_WAVEFORM:
        h = _exactly(read_exactly, WAVEFORM_HEAD_DTYPE.itemsize, name)
        w = np.frombuffer(h, dtype=WAVEFORM_HEAD_DTYPE)[0]
        ns, nc = int(w["number_of_samples"]), int(w["channels"])
        _check(nc, limits.max_channels, "WAVEFORM: channels")
        n = 4 * ns * nc
        _check(n, limits.max_message_bytes, "WAVEFORM: bytes of data")
        return Message(mid, bytes(head) + h + _exactly(read_exactly, n, name))
    if name is not None:
        raise MessageError(f"{name} messages ({mid}) are not accepted here")
    raise MessageError(f"unknown message id {mid} (0x{mid:04x}): not an MRD v1 stream, or a damaged one")


# ---- building messages ----------------------------------------------------------------------------

def encode_config_file(name: str) -> bytes:
    """CONFIG_FILE message naming a configuration (at most 1023 UTF-8 bytes)."""
    b = str(name).encode("utf-8")
    if len(b) >= CONFIG_FILE_BYTES or b"\0" in b:
        raise ValueError(f"config name: at most {CONFIG_FILE_BYTES - 1} UTF-8 bytes without NUL, got {len(b)}")
    return _U16.pack(MRD_MESSAGE_CONFIG_FILE) + b.ljust(CONFIG_FILE_BYTES, b"\0")


def encode_text(message_id: int, text: str) -> bytes:
    """CONFIG_TEXT, HEADER or TEXT message (uint32 length, text, a terminating NUL as FIRE sends)."""
    if message_id not in (MRD_MESSAGE_CONFIG_TEXT, MRD_MESSAGE_HEADER, MRD_MESSAGE_TEXT):
        raise ValueError(f"message_id must be CONFIG_TEXT, HEADER or TEXT, got {message_id}")
    b = (text if isinstance(text, (bytes, bytearray)) else str(text).encode("utf-8")) + b"\0"
    return _U16.pack(message_id) + _U32.pack(len(b)) + bytes(b)


def encode_close() -> bytes:
    return _U16.pack(MRD_MESSAGE_CLOSE)


def encode_acquisition(head, traj=None, data=None) -> bytes:
    """ACQUISITION message of one acquisition (see ``recon.io.mrd.acquisition_to_bytes``)."""
    return _U16.pack(MRD_MESSAGE_ACQUISITION) + acquisition_to_bytes(head, traj, data)


def encode_waveform(head, data=None) -> bytes:
    """WAVEFORM message of one waveform (see ``recon.io.mrd.waveform_to_bytes``)."""
    return _U16.pack(MRD_MESSAGE_WAVEFORM) + waveform_to_bytes(head, data)


# ---- recorded streams -----------------------------------------------------------------------------

def is_mrd_stream(first_bytes: bytes) -> bool:
    """True when a file's first bytes begin like an MRD v1 stream (a CONFIG_FILE, CONFIG_TEXT or HEADER id)."""
    return len(first_bytes) >= 2 and _U16.unpack(first_bytes[:2])[0] in FIRST_MESSAGES


def iter_stream_file(path, limits: MessageLimits = MessageLimits()):
    """The messages of a recorded stream, in order. A recording cut short inside its last message
    ends the iteration with a ``RuntimeWarning`` (everything before it is kept); other damage raises
    ``MessageError``."""
    from .files import check_input_file

    path = check_input_file(path)
    with open(path, "rb") as f:
        while True:
            pos = f.tell()
            try:
                msg = read_message(f.read, limits)
            except StreamTruncated as exc:
                warnings.warn(f"{path}: {exc} at byte {pos}: the recording was cut short; reading what came "
                              "before it", RuntimeWarning, stacklevel=2)
                return
            except MessageError as exc:
                raise MessageError(f"{path}: byte {pos}: {exc}") from None
            if msg is None:
                return
            yield msg


def read_mrd_stream(path, *, encoding: int = 0, trajectory_units: str = "auto", max_bytes: int | None = None,
                    views: bool = True, on_message=None):
    """A recorded MRD v1 stream (a ``recon serve`` spool log, a saved socket stream) as a ``RawData``.

    The HEADER must come before the first acquisition; config and text messages are skipped (passed
    to ``on_message(msg)`` when given, as every message is); the stream ends at CLOSE or at the end
    of the file. Raises ``IsmrmrdFormatError`` (a ValueError) for a stream without a header, with
    IMAGE messages or damaged messages (a truncated last message only warns), and as
    ``read_ismrmrd`` for unusable data (``views=False`` skips building the views).
    """
    from .raw import AcquisitionDecoder

    label = os.fspath(path)
    dec = None
    try:
        for msg in iter_stream_file(path):
            if on_message is not None:
                on_message(msg)
            if msg.id == MRD_MESSAGE_HEADER:
                if dec is not None:
                    raise IsmrmrdFormatError(f"{label}: a second HEADER message")
                dec = AcquisitionDecoder(msg.text, encoding=encoding, trajectory_units=trajectory_units, path=label,
                                         source="stream", max_bytes=max_bytes)
            elif msg.id in (MRD_MESSAGE_ACQUISITION, MRD_MESSAGE_WAVEFORM):
                if dec is None:
                    raise IsmrmrdFormatError(f"{label}: {msg.name} before the HEADER message")
                (dec.add_bytes if msg.id == MRD_MESSAGE_ACQUISITION else dec.add_waveform_bytes)(msg.body)
            elif msg.id == MRD_MESSAGE_CLOSE:
                break
    except MessageError as exc:
        raise IsmrmrdFormatError(str(exc)) from None
    if dec is None:
        raise IsmrmrdFormatError(f"{label}: MRD stream without a HEADER message (no ISMRMRD XML header)")
    return dec.finish(views=views)


__all__ = [
    "FIRST_MESSAGES",
    "MESSAGE_NAMES",
    "Message",
    "MessageError",
    "MessageLimits",
    "StreamTruncated",
    "encode_acquisition",
    "encode_close",
    "encode_config_file",
    "encode_text",
    "encode_waveform",
    "is_mrd_stream",
    "iter_stream_file",
    "read_message",
    "read_mrd_stream",
]
