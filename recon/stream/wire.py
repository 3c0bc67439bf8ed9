"""One MRD v1 socket: framed, size-checked reads (``recon.io.mrd_stream``) and serialised writes.

``Connection(sock, limits, idle_timeout=, max_bytes=)`` reads whole messages (``read()``), refusing
before it reads them any message over ``limits`` and anything past ``max_bytes`` received in all
(``MessageError``); a peer silent for ``idle_timeout`` seconds raises ``socket.timeout``. Writes
(``send_text``, ``send_image``, ``send_close``, ...) hold a lock, so a reconstruction thread and the
receiving thread can both send. IMAGE messages are framed with the ``ismrmrd`` package
(:func:`read_image`: the declared matrix, channels and attribute length are checked against the
limits before anything is allocated).
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading

import numpy as np

from ..io.mrd import (
    MRD_MESSAGE_CONFIG_TEXT,
    MRD_MESSAGE_HEADER,
    MRD_MESSAGE_IMAGE,
    MRD_MESSAGE_TEXT,
)
from ..io.mrd_stream import (
    MessageError,
    MessageLimits,
    StreamTruncated,
    encode_close,
    encode_config_file,
    encode_text,
    read_message,
)

DEFAULT_LIMITS = MessageLimits()
_IMAGE_DTYPES = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 16}  # MRD data_type -> bytes per value


def read_image(read_exactly, limits: MessageLimits):
    """Frame one IMAGE body with the ``ismrmrd`` package: ``(bytes, ismrmrd.Image)``; the declared
    sizes are checked against ``limits`` first (``MessageError``)."""
    import ismrmrd

    n_head = ctypes.sizeof(ismrmrd.ImageHeader)
    hb = read_exactly(n_head)
    if len(hb) != n_head:
        raise StreamTruncated("the stream ends inside an IMAGE header")
    head = ismrmrd.ImageHeader.from_buffer_copy(hb)
    itemsize = _IMAGE_DTYPES.get(int(head.data_type))
    if itemsize is None:
        raise MessageError(f"IMAGE: unknown data_type {head.data_type}")
    nbytes = int(head.channels) * int(np.prod([int(v) for v in head.matrix_size], dtype=np.int64)) * itemsize
    if nbytes > limits.max_message_bytes:
        raise MessageError(f"IMAGE: {nbytes} bytes of data exceed the limit of {limits.max_message_bytes}")
    parts = [bytes(hb)]

    def counted(n):
        attributes = len(parts) == 2
        if attributes and n > limits.max_text_bytes:
            raise MessageError(f"IMAGE: attributes of {n} bytes exceed the limit of {limits.max_text_bytes}")
        b = read_exactly(n)
        if len(b) != n:
            raise StreamTruncated("the stream ends inside an IMAGE message")
        if attributes:
            _check_meta_xml(b)
        parts.append(bytes(b))
        return b

    try:
        image = ismrmrd.Image.deserialize_from_with_header(bytes(hb), counted)
    except MessageError:
        raise
    except Exception as exc:  # noqa: BLE001  (the package's parsing of the attributes: assertions, XML errors)
        raise MessageError(f"IMAGE: unreadable attributes ({type(exc).__name__}: {exc})") from None
    return b"".join(parts), image


def _check_meta_xml(b: bytes) -> None:
    """The ``ismrmrd`` package parses image attributes with the standard library's XML parser; they
    are first parsed by ``defusedxml`` with DTDs (entities) forbidden."""
    import defusedxml.ElementTree as DET

    text = b.rstrip(b"\0")
    if not text:
        return
    try:
        DET.fromstring(text, forbid_dtd=True)
    except Exception as exc:  # noqa: BLE001  (defusedxml's and expat's errors alike)
        raise MessageError(f"IMAGE: attributes are not acceptable XML ({type(exc).__name__})") from None


def image_bytes(image) -> bytes:
    """An ``ismrmrd.Image`` as the body of an IMAGE message (the package's own serialisation)."""
    parts = []
    image.serialize_into(lambda b: parts.append(bytes(b)))
    return b"".join(parts)


class Connection:
    """An MRD v1 connection over ``sock`` (see the module docstring)."""

    def __init__(self, sock: socket.socket, limits: MessageLimits = DEFAULT_LIMITS, *,
                 idle_timeout: float | None = None, max_bytes: int | None = None):
        self.sock = sock
        self.limits = limits
        self.max_bytes = max_bytes
        self.received = 0
        self.sent = 0
        self._send_lock = threading.Lock()
        sock.settimeout(idle_timeout)

    def read_exactly(self, n: int) -> bytes:
        """``n`` bytes, fewer only when the peer ends the stream."""
        if self.max_bytes is not None and self.received + n > self.max_bytes:
            raise MessageError(f"connection: more than {self.max_bytes} bytes received (the per-connection limit)")
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                break
            got += k
        self.received += got
        return bytes(buf) if got == n else bytes(buf[:got])

    def read(self, readers=None):
        """The next ``recon.io.mrd_stream.Message`` (None when the peer ended the stream between messages)."""
        return read_message(self.read_exactly, self.limits, readers=readers)

    def send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)
            self.sent += len(data)

    def send_many(self, chunks) -> None:
        """Several messages in one go (no other thread's message between them)."""
        with self._send_lock:
            for c in chunks:
                self.sock.sendall(c)
                self.sent += len(c)

    def send_text(self, text: str) -> None:
        self.send(encode_text(MRD_MESSAGE_TEXT, text))

    def send_close(self) -> None:
        self.send(encode_close())

    def send_config_file(self, name: str) -> None:
        self.send(encode_config_file(name))

    def send_config_text(self, text: str) -> None:
        self.send(encode_text(MRD_MESSAGE_CONFIG_TEXT, text))

    def send_header(self, xml: str) -> None:
        self.send(encode_text(MRD_MESSAGE_HEADER, xml))

    def send_image(self, image) -> None:
        """One ``ismrmrd.Image`` as an IMAGE message."""
        self.send(struct.pack("<H", MRD_MESSAGE_IMAGE) + image_bytes(image))

    def shutdown(self) -> None:
        """End the connection for the peer (whoever else holds the socket), then close it."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
