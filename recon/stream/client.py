"""``recon send``: replay a raw data file to an MRD v1 server and keep the images it sends back.

::

    recon send FILE -o OUT.h5 [--host 127.0.0.1] [--port 9002] [--config recon-sense] [--param lam=1e-3 ...]
                    [--realtime [--tick-us 2500] | --interval-ms MS] [--timeout S] [--overwrite] [-q]

It speaks as python-ismrmrd-server's client does: CONFIG_FILE (the config name), HEADER (the file's
XML), a TEXT with FIRE's JSON parameters when ``--param`` is given, the waveforms and acquisitions in
time order, CLOSE; meanwhile a thread receives IMAGE, TEXT and CLOSE messages. So it works against
``recon serve`` and against other MRD servers (Gadgetron, python-ismrmrd-server). ``--realtime``
sends each acquisition at the pace of its ``acquisition_time_stamp`` (``--tick-us`` microseconds per
tick, 2500 as Siemens scanners count), ``--interval-ms`` at a fixed pace; otherwise as fast as the
server reads.

Output (atomic, never over the input, an existing file only with ``--overwrite``): an HDF5 file with
the images in the ISMRMRD/MRD image layout (``/dataset/image_<series>/header``, ``attributes``,
``data``: what ``ismrmrd.Dataset.read_image`` reads, and python-ismrmrd-server's client writes) and,
when every image is real, single-channel and of one in-plane shape, ``reconstruction`` float32
``(n, y, x)`` stacked in arrival order: the dataset ``recon mri`` writes. Input: ISMRMRD files and
recorded MRD streams (``recon.io.read_raw``).

From Python: ``recon.stream.send(path_or_raw, port=..., config=...)`` returns a :class:`SendResult`
with the images, their meta attributes, the server's texts and, for ``recon serve``'s images,
the latency of each (last acquisition sent -> image received, ``recon.last_scan_counter``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..io.mrd import (
    MRD_MESSAGE_CLOSE,
    MRD_MESSAGE_CONFIG_TEXT,
    MRD_MESSAGE_IMAGE,
    MRD_MESSAGE_TEXT,
)
from ..io.mrd_stream import (
    MessageError,
    MessageLimits,
    encode_acquisition,
    encode_waveform,
)
from .wire import Connection, read_image

DEFAULT_PORT = 9002
SIEMENS_TICK_US = 2500.0
#: what the client accepts from a server: images up to 1 GiB
CLIENT_LIMITS = MessageLimits(max_message_bytes=1 << 30)


@dataclass
class SendResult:
    """What :func:`send` got back: ``images`` (``ismrmrd.Image``) with their ``meta`` (dicts) and
    receive times (``received``, ``time.monotonic()``); ``texts`` from the server; ``closed`` (the
    server sent CLOSE); ``sent`` acquisitions and their send times by ``scan_counter``;
    ``latencies_ms`` per image where the server named the acquisition that completed it;
    ``local_address`` this end of the connection ("host:port", as the server's log names it)."""

    images: list = field(default_factory=list)
    meta: list = field(default_factory=list)
    received: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    closed: bool = False
    sent: int = 0
    send_times: dict = field(default_factory=dict)
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    local_address: str = ""

    @property
    def errors(self) -> list[str]:
        return [t for t in self.texts if t.startswith("ERR")]

    @property
    def latencies_ms(self) -> np.ndarray:
        out = []
        for m, t in zip(self.meta, self.received):
            sc = m.get("recon.last_scan_counter")
            if sc is not None and int(sc) in self.send_times:
                out.append((t - self.send_times[int(sc)]) * 1e3)
        return np.asarray(out)

    def volume(self) -> np.ndarray | None:
        """The images stacked as ``(n, y, x)`` float32 (3D images contribute their z slices), or
        None when they are not all real, single-channel and of one in-plane shape."""
        planes = []
        for im in self.images:
            d = np.asarray(im.data)  # (channels, z, y, x)
            if d.shape[0] != 1 or np.iscomplexobj(d):
                return None
            planes.extend(d[0].astype(np.float32))
        if not planes or len({p.shape for p in planes}) != 1:
            return None
        return np.stack(planes)


def _order(acq, waveforms):
    """Send order: acquisitions as in the file, each waveform before the first acquisition that is
    not earlier than it. Items: ('a', i) or ('w', j)."""
    ts = acq.head["acquisition_time_stamp"].astype(np.int64) if len(acq) else np.zeros(0, np.int64)
    items = [("a", i) for i in range(len(acq))]
    if waveforms is None or not len(waveforms):
        return items
    wts = waveforms.head["time_stamp"].astype(np.int64)
    pos = np.searchsorted(np.maximum.accumulate(ts) if len(ts) else ts, wts, side="left")
    out, j_order = [], np.argsort(pos, kind="stable")
    k = 0
    for i in range(len(acq) + 1):
        while k < len(j_order) and pos[j_order[k]] <= i:
            out.append(("w", int(j_order[k])))
            k += 1
        if i < len(acq):
            out.append(("a", i))
    return out


def send(source, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, config: str = "recon-sense",
         params: dict | None = None, realtime: bool = False, interval_ms: float | None = None,
         tick_us: float = SIEMENS_TICK_US, timeout: float | None = 600.0, connect_timeout: float = 10.0,
         limits: MessageLimits = CLIENT_LIMITS, on_text=None,
         stop_after: int | None = None) -> SendResult:
    """Replay ``source`` (a path or a ``recon.io.RawData`` with acquisitions) to the MRD server at
    ``host:port`` with config ``config`` (module docstring). ``params``: FIRE-style parameters sent as
    a JSON TEXT after the header. ``timeout``: seconds to wait for the server's CLOSE after sending
    (None: no limit). ``on_text(text)`` is called for every TEXT received. ``stop_after``: send only
    that many acquisitions and then drop the connection without CLOSE (to test servers)."""
    from ..io.raw import RawData, read_raw

    raw = source if isinstance(source, RawData) else read_raw(source)
    if raw.acquisitions is None:
        raise ValueError(f"{raw.label}: recon send replays ISMRMRD raw data (acquisitions); this is a fastMRI file "
                         "(write it as ISMRMRD with recon.io.write_ismrmrd first)")
    if interval_ms is not None and (realtime or not interval_ms >= 0):
        raise ValueError("--interval-ms: a number >= 0, and not together with --realtime")
    acq = raw.acquisitions
    order = _order(acq, raw.waveforms)
    res = SendResult()
    sock = _connect(host, port, connect_timeout)
    conn = Connection(sock, limits)
    res.local_address = "{}:{}".format(*sock.getsockname()[:2])
    rx = threading.Thread(target=_receive, args=(conn, res, on_text), daemon=True)
    res.started = time.monotonic()
    rx.start()
    try:
        conn.send_config_file(config)
        conn.send_header(raw.header.xml)
        if params:
            conn.send(_text_message(json.dumps({"parameters": params})))
        ts0 = int(acq.head["acquisition_time_stamp"][0]) if len(acq) else 0
        t0 = time.monotonic()
        n = 0
        for kind, i in order:
            if kind == "w":
                conn.send(encode_waveform(raw.waveforms.head[i], raw.waveforms.data[i]))
                continue
            if stop_after is not None and n >= stop_after:
                break
            if realtime or interval_ms is not None:
                due = t0 + (n * interval_ms * 1e-3 if interval_ms is not None
                            else (int(acq.head["acquisition_time_stamp"][i]) - ts0) * tick_us * 1e-6)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            h = acq.head[i]
            conn.send(encode_acquisition(h, acq.traj[i], acq.data[i]))
            res.send_times[int(h["scan_counter"])] = time.monotonic()
            n += 1
            res.sent = n
        if stop_after is not None:
            conn.shutdown()
            rx.join(5.0)
            return res
        conn.send_close()
    except OSError as exc:  # the server closed early (its reason comes as TEXT) or went away
        res.error = res.error or f"sending stopped: {exc}"
    rx.join(timeout)
    res.finished = time.monotonic()
    if rx.is_alive():
        res.error = res.error or f"no CLOSE from the server within {timeout:g} s"
    conn.shutdown()
    return res


def _text_message(text: str) -> bytes:
    from ..io.mrd_stream import encode_text

    return encode_text(MRD_MESSAGE_TEXT, text)


def _connect(host, port, timeout) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"cannot connect to an MRD server at {host}:{port}: {exc}") from None
            time.sleep(0.1)


def _receive(conn: Connection, res: SendResult, on_text) -> None:
    from .images import image_meta

    readers = {MRD_MESSAGE_IMAGE: read_image}
    try:
        while True:
            msg = conn.read(readers=readers)
            if msg is None:
                if not res.closed:
                    res.error = res.error or "the server ended the connection without a CLOSE message"
                return
            if msg.id == MRD_MESSAGE_IMAGE:
                res.received.append(time.monotonic())
                res.images.append(msg.payload)
                try:
                    res.meta.append(image_meta(msg.payload))
                except Exception:  # noqa: BLE001  (a server's meta we cannot read: keep the image)
                    res.meta.append({})
            elif msg.id in (MRD_MESSAGE_TEXT, MRD_MESSAGE_CONFIG_TEXT):
                res.texts.append(msg.text)
                if on_text is not None:
                    on_text(msg.text)
            elif msg.id == MRD_MESSAGE_CLOSE:
                res.closed = True
                return
    except (MessageError, OSError) as exc:
        res.error = res.error or f"receiving: {exc}"


def write_images(path, res: SendResult, *, overwrite: bool = False, attrs: dict | None = None) -> str:
    """Write the images of ``res`` to ``path`` (module docstring: MRD image groups + ``reconstruction``),
    atomically."""
    import h5py
    import ismrmrd

    from ..io.atomic import atomic_file

    with atomic_file(path, overwrite=overwrite) as tmp:
        ds = ismrmrd.Dataset(tmp, "dataset", create_if_needed=True)
        try:
            shapes = {}
            for im in res.images:
                group = f"image_{int(im.image_series_index)}"
                shape = tuple(np.asarray(im.data).shape) + (int(im.data_type),)
                while shapes.setdefault(group, shape) != shape:  # MRD files need one shape per series
                    group += "_"
                ds.append_image(group, im)
        finally:
            ds.close()
        vol = res.volume()
        with h5py.File(tmp, "a") as f:
            if vol is not None:
                d = f.create_dataset("reconstruction", data=vol)
                for k, v in (attrs or {}).items():
                    d.attrs[k] = v
            f.attrs["recon_send_texts"] = json.dumps(res.texts)
    return os.fspath(path)


# ---- the command line -------------------------------------------------------------------------------


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("send", help="replay a raw data file to an MRD v1 server and save the images",
                       description="Replay an ISMRMRD raw data file (or a recorded MRD stream) to an MRD v1 server "
                                   "(recon serve, Gadgetron, python-ismrmrd-server) and write the images it sends "
                                   "back. See docs/stream.md.")
    p.add_argument("input", help="ISMRMRD HDF5 file or recorded MRD stream")
    p.add_argument("-o", "--output", required=True, help="HDF5 file for the images")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    p.add_argument("--config", default="recon-sense", help="config name (default recon-sense)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter, sent in FIRE's JSON text (repeatable), e.g. --param iters=10")
    p.add_argument("--realtime", action="store_true", help="send at the pace of the acquisitions' time stamps")
    p.add_argument("--tick-us", type=float, default=SIEMENS_TICK_US,
                   help=f"microseconds per time stamp tick for --realtime (default {SIEMENS_TICK_US:g})")
    p.add_argument("--interval-ms", type=float, default=None, help="send one acquisition every MS milliseconds")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server after sending (600)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the server's text messages")
    p.set_defaults(func=run)
    return p


def _params(items) -> dict:
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--param {it!r}: expected NAME=VALUE")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def run(args) -> int:
    from ..io.files import check_input_file, check_outputs

    check_input_file(args.input)
    check_outputs([args.output], inputs=[args.input], overwrite=args.overwrite, hint="pass --overwrite to replace it")
    on_text = None if args.quiet else (lambda t: print(f"server: {t}", file=sys.stderr, flush=True))
    res = send(args.input, host=args.host, port=args.port, config=args.config, params=_params(args.param),
               realtime=args.realtime, interval_ms=args.interval_ms, tick_us=args.tick_us, timeout=args.timeout,
               on_text=on_text)
    if res.images:
        write_images(args.output, res, overwrite=args.overwrite, attrs={"config": args.config, "input": args.input})
    lat = res.latencies_ms
    if not args.quiet:
        extra = (f"; latency p50 {np.percentile(lat, 50):.0f} ms, max {lat.max():.0f} ms" if lat.size else "")
        print(f"sent {res.sent} acquisitions, received {len(res.images)} images{extra}"
              + (f"; wrote {args.output}" if res.images else "; nothing written"))
    if res.error or res.errors or not res.closed:
        raise RuntimeError(res.error or (res.errors[0] if res.errors else "the server did not close the connection"))
    if not res.images:  # e.g. a server whose pipeline failed without telling the client (its log may say why)
        raise RuntimeError(f"the server sent no images for config {args.config!r}; nothing written to {args.output}")
    return 0
