"""One client connection, start to end: config, header, data, images back, CLOSE.

The order is FIRE's (python-ismrmrd-server) and Gadgetron's: a CONFIG_FILE (or CONFIG_TEXT) names
the pipeline, the HEADER carries the ISMRMRD XML, an optional TEXT carries FIRE's JSON parameters
(which may rename the pipeline, as ``parameters.config`` / ``customconfig`` do there), then
ACQUISITION and WAVEFORM messages, then CLOSE. Every message is appended to the spool
(``recon.stream.spool``) as soon as it is read, before anything else looks at it.

Replies: IMAGE messages as they are made; TEXT lines with FIRE's level prefixes (``ERR``, ``WRN``,
``DBG``); a summary TEXT; CLOSE. An unknown or unavailable config, or parameters that are not valid,
get a TEXT naming the problem (and the valid configs) and a CLOSE at once; the rest of the client's
data is still read and spooled until its CLOSE. A message that cannot be framed (garbage, an
unknown id, a size over a limit, a stream cut inside a message) or a client silent for
``idle_timeout`` seconds ends the connection: TEXT + CLOSE when the client is still there, and
nothing else is affected. A client that goes away stops its reconstruction; its data stays spooled.
"""

from __future__ import annotations

import socket
import threading
import time

from ..io.mrd import (
    MRD_MESSAGE_ACQUISITION,
    MRD_MESSAGE_CLOSE,
    MRD_MESSAGE_CONFIG_FILE,
    MRD_MESSAGE_CONFIG_TEXT,
    MRD_MESSAGE_HEADER,
    MRD_MESSAGE_TEXT,
    MRD_MESSAGE_WAVEFORM,
    acquisition_from_bytes,
    waveform_from_bytes,
)
from ..io.mrd_stream import MessageError, StreamTruncated
from .pipelines import PipelineError, available, build_pipeline, parse_config_text
from .spool import Spool
from .wire import Connection


class _End(Exception):
    """End the connection with this TEXT line (and a CLOSE)."""


def _quiet(f, *args) -> bool:
    """Run a send; False when the client is gone."""
    try:
        f(*args)
        return True
    except OSError:
        return False


def serve_connection(sock: socket.socket, config, *, stop: threading.Event | None = None, report=None,
                     peer: str = "") -> dict:
    """Serve one client on ``sock`` by ``config`` (a ``recon.stream.server.ServerConfig``); returns a
    summary dict (``ended``: close | refused | disconnected | error | shutdown; ``spool``: the file
    holding the data; the pipeline's statistics). ``stop`` set and the socket shut for reading means
    the server is shutting down: what was received is finished and the client told. ``report(item)``
    receives ``("spool", path)`` as soon as the log exists."""
    conn = Connection(sock, config.limits, idle_timeout=config.idle_timeout, max_bytes=config.connection_bytes())
    spool = Spool(config.spool, sync_interval=config.sync_interval)
    if report is not None:
        report(("spool", spool.path))
    summary = {"peer": peer, "ended": "error"}
    name, params, header = None, {}, None
    pipeline, refused, finished = None, None, False
    try:
        while True:
            try:
                msg = conn.read()
            except TimeoutError:
                raise _End(f"ERR recon: no data for {config.idle_timeout:g} s (idle timeout); closing") from None
            received = time.monotonic()
            if msg is None:
                if stop is not None and stop.is_set():
                    summary["ended"] = "shutdown"
                    break
                summary["ended"] = "disconnected"
                return summary
            spool.append(msg.raw)
            mid = msg.id
            if mid == MRD_MESSAGE_CLOSE:
                summary["ended"] = "refused" if refused else "close"
                break
            if refused is not None:
                continue  # draining: the data is spooled, nothing is made of it
            if mid == MRD_MESSAGE_CONFIG_FILE:
                name = msg.text
            elif mid == MRD_MESSAGE_CONFIG_TEXT or (mid == MRD_MESSAGE_TEXT and pipeline is None):
                try:
                    n, p = parse_config_text(msg.text)
                except PipelineError as exc:
                    refused = _refuse(conn, str(exc))
                    continue
                name = n or name
                params.update(p)
            elif mid == MRD_MESSAGE_HEADER:
                if header is not None:
                    raise _End("ERR recon: a second HEADER message")
                header = msg.text
            elif mid in (MRD_MESSAGE_ACQUISITION, MRD_MESSAGE_WAVEFORM):
                if pipeline is None:
                    try:
                        pipeline = _start(conn, name, header, params, config)
                    except PipelineError as exc:
                        refused = _refuse(conn, str(exc))
                        continue
                try:
                    if mid == MRD_MESSAGE_ACQUISITION:
                        head, traj, data, _ = acquisition_from_bytes(msg.body)
                        pipeline.add_acquisition(head[0], traj, data, received)
                    else:
                        head, data, _ = waveform_from_bytes(msg.body)
                        pipeline.add_waveform(head[0], data)
                except PipelineError as exc:
                    pipeline.abort()
                    refused = _refuse(conn, str(exc))
        # the client's CLOSE (or the server's shutdown): finish and answer
        if refused is None:
            stats = pipeline.finish() if pipeline is not None else {}
            finished = True
            summary.update(stats)
            if pipeline is None and name is not None and name not in available():
                _quiet(conn.send_text, f"ERR recon: unknown config {name!r}; valid configs: {', '.join(available())}")
            if summary["ended"] == "shutdown":
                _quiet(conn.send_text, "WRN recon: the server is shutting down; data sent after this point was not "
                                       "received (what was received is reconstructed above and spooled)")
            _quiet(conn.send_text, "DBG recon: " + _summary_line(name, stats, spool))
            _quiet(conn.send_close)
    except _End as exc:
        _quiet(conn.send_text, str(exc))
        _quiet(conn.send_close)
    except StreamTruncated as exc:
        summary["ended"] = "disconnected"
        summary["error"] = str(exc)
    except MessageError as exc:
        summary["error"] = str(exc)
        _quiet(conn.send_text, f"ERR recon: {exc}; closing this connection")
        _quiet(conn.send_close)
    except OSError as exc:  # the client went away while we read or wrote
        summary["ended"] = "disconnected"
        summary["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001  (a bug: tell the client, keep the data, let the server go on)
        summary["error"] = f"{type(exc).__name__}: {exc}"
        _quiet(conn.send_text, f"ERR recon: internal error ({type(exc).__name__}: {exc}); the data is spooled")
        _quiet(conn.send_close)
    finally:
        if pipeline is not None and not finished:
            pipeline.abort()
        conn.shutdown()
        summary["spool"] = spool.close()
        summary["messages"] = spool.messages
        summary["bytes"] = conn.received
    return summary


def _refuse(conn, reason: str) -> str:
    _quiet(conn.send_text, f"ERR recon: {reason}")
    _quiet(conn.send_close)
    return reason


def _start(conn, name, header, params, config):
    if name is None:
        raise PipelineError(f"data before any CONFIG_FILE/CONFIG_TEXT message; valid configs: {', '.join(available())}")
    if header is None:
        raise PipelineError("data before the HEADER message (the ISMRMRD XML header)")
    pipeline, ignored = build_pipeline(name, header, params, send_image=conn.send_image, send_text=conn.send_text,
                                       device=config.torch_device())
    if ignored:
        _quiet(conn.send_text, f"WRN recon {name}: ignored parameters {', '.join(sorted(ignored))} (recon-* pipelines "
                               f"take {', '.join(pipeline.params)})")
    return pipeline


def _summary_line(name, stats, spool) -> str:
    parts = [f"config {name}", f"{stats.get('images', 0)} images"]
    if "frames_dropped" in stats:
        parts.append(f"{stats['frames_dropped']} frames dropped")
    if "latency_ms_p50" in stats:
        parts.append(f"latency p50 {stats['latency_ms_p50']:.0f} ms, p95 {stats['latency_ms_p95']:.0f} ms, max "
                     f"{stats['latency_ms_max']:.0f} ms")
    if stats.get("errors"):
        parts.append(f"{stats['errors']} errors")
    parts.append(f"{spool.messages} messages spooled ({spool.path})")
    return "; ".join(parts)
