"""``recon serve``: the MRD v1 socket server (one process, a pool of worker processes).

::

    recon serve [--host 127.0.0.1] [--port 9002] [--spool DIR] [--device cpu|cuda] [--max-connections 4]

The main process binds the socket (loopback by default), converts spool logs a killed server left
behind (``recon.stream.spool.recover``) and keeps ``max_connections`` worker processes started
(spawned: fresh interpreters, imports done before the first client). Each accepted connection is
handed (its file descriptor, over a Unix socket) to an idle worker, which serves it
(``recon.stream.connection``) and then waits for the next. Processes, not threads: the
per-slice and per-frame work holds the GIL in its Python parts, and one worker per connection keeps
connections from slowing each other down beyond the cores they share and keeps a crash in one
connection. A worker serves one connection at a time and is replaced by a fresh process after
``WORKER_CONNECTIONS`` connections (large arrays go back to the system when a connection ends). Memory per
connection is bounded by the limits (``--max-connection-bytes``, default a share of the available
memory; ``recon.io.mrd_stream.MessageLimits`` per message). A client that comes while every
worker is busy (or finishing its connection, or starting) waits, unread, for the next free worker,
at most ``PENDING_TIMEOUT_S``; when ``max_connections`` clients already wait, a new one gets a TEXT
"busy" and a CLOSE.

A worker that dies (a crash in native code, the OOM killer) is noticed by the main process, which
tells its client (TEXT + CLOSE on its own copy of the socket), converts that connection's spool log
and starts a new worker. SIGTERM (or SIGINT) stops accepting, lets every connection in progress run
to its client's CLOSE (at most ``--shutdown-timeout`` seconds; then what was received is finished,
the client told and the connection closed), and exits 0. SIGKILL leaves every received message in
the spool; the next ``recon serve`` on the same spool folder converts the logs.

OpenMP threads of the workers sleep when idle (``OMP_WAIT_POLICY=PASSIVE``) and OpenBLAS runs one
thread per worker (``OPENBLAS_NUM_THREADS=1``), unless the environment says otherwise: several
connections share a few cores, and spinning threads made each NUFFT (and a small coil-combination
matrix product) many times slower there (measured: 1 ms -> 80 ms, 0.1 ms -> 15 ms).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from ..io.mrd_stream import MessageLimits

DEFAULT_PORT = 9002
#: seconds a client may wait for a worker that is starting before it is refused
PENDING_TIMEOUT_S = 60.0


@dataclass
class ServerConfig:
    """Settings of ``recon serve`` (see the module docstring and docs/stream.md).

    ``spool``: folder of the spool logs and files; ``device`` cpu | cuda[:n]; ``max_connections``
    served at once; ``limits`` per message; ``max_connection_bytes`` received per connection (None:
    the available memory over 2 x ``max_connections``, at most 16 GiB); ``idle_timeout`` s without
    data before a connection is closed; ``shutdown_timeout`` s a connection may run on after SIGTERM;
    ``sync_interval`` s between spool fdatasyncs."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    spool: str = "recon-spool"
    device: str = "cpu"
    max_connections: int = 4
    limits: MessageLimits = field(default_factory=MessageLimits)
    max_connection_bytes: int | None = None
    idle_timeout: float = 300.0
    shutdown_timeout: float = 60.0
    sync_interval: float = 0.5

    def validate(self) -> ServerConfig:
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ValueError(f"--port must be an integer in [0, 65535], got {self.port!r}")
        if not (isinstance(self.max_connections, int) and 1 <= self.max_connections <= 256):
            raise ValueError(f"--max-connections must be an integer in [1, 256], got {self.max_connections!r}")
        for name in ("idle_timeout", "shutdown_timeout", "sync_interval"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number of seconds, got {v!r}")
        if self.max_connection_bytes is not None and self.max_connection_bytes < 1 << 16:
            raise ValueError(f"--max-connection-bytes must be at least 65536, got {self.max_connection_bytes}")
        if self.device != "cpu" and not str(self.device).startswith("cuda"):
            raise ValueError(f"--device must be cpu or cuda[:n], got {self.device!r}")
        return self

    def connection_bytes(self) -> int:
        if self.max_connection_bytes is not None:
            return int(self.max_connection_bytes)
        from .._memory import memory_limit

        limit, _ = memory_limit()
        return int(min(16 << 30, max(1 << 26, limit // (2 * self.max_connections))))

    def torch_device(self):
        """None for cpu (numpy), else the torch device name."""
        return None if self.device == "cpu" else self.device


# ---- the worker process -----------------------------------------------------------------------------


#: connections one worker serves before it exits and is replaced (a fresh process now and then)
WORKER_CONNECTIONS = 50


def _worker_main(pipe, config: ServerConfig) -> None:
    """One worker: serve the connections the main process hands over, one at a time; exit on
    "stop", when the main process is gone, or after ``WORKER_CONNECTIONS`` connections."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the main process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import ismrmrd  # noqa: F401

    from ..mri import pipeline, realtime  # noqa: F401
    from . import connection, images, pipelines  # noqa: F401  (imports done before the first client)

    for _ in range(WORKER_CONNECTIONS):
        pipe.send(("ready",))
        try:
            msg = pipe.recv()
        except (EOFError, OSError):
            return
        if msg[0] != "conn" or not _serve_one(pipe, config, msg[1]):
            return


def _serve_one(pipe, config: ServerConfig, peer: str) -> bool:
    """Serve the connection whose descriptor comes next on ``pipe``; False when the worker must stop."""
    from multiprocessing.reduction import recv_handle

    from .connection import serve_connection

    sock = socket.socket(fileno=recv_handle(pipe))
    stop, finished, gone = threading.Event(), threading.Event(), threading.Event()
    send_lock = threading.Lock()

    def report(item):
        with send_lock:
            try:
                pipe.send(item)
            except OSError:
                pass

    def watch():  # "stop" from the main process (SIGTERM): let the client finish, then cut its reading side
        try:
            while not finished.is_set():
                if not pipe.poll(0.2):
                    continue
                if pipe.recv()[0] == "stop":
                    stop.set()
                    finished.wait(config.shutdown_timeout)
                    if not finished.is_set():
                        try:
                            sock.shutdown(socket.SHUT_RD)
                        except OSError:
                            pass
                    return
        except (EOFError, OSError):
            gone.set()  # the main process is gone: finish this connection anyway, then exit

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = serve_connection(sock, config, stop=stop, report=report, peer=peer)
    finished.set()
    watcher.join()
    report(("done", summary))
    return not (stop.is_set() or gone.is_set())


# ---- the main process -----------------------------------------------------------------------------------


class _Worker:
    def __init__(self, ctx, config):
        parent, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, config), daemon=False, name="recon-serve-worker")
        self.process.start()
        child.close()
        self.pipe = parent
        self.state = "starting"   # starting -> idle -> busy -> finished -> idle ... (or its exit)
        self.client = None        # the main process's copy of the client socket
        self.spool = None
        self.peer = ""
        self.pipe_closed = False


class Server:
    """The ``recon serve`` main process (see the module docstring). ``serve_forever()`` returns after
    SIGTERM/SIGINT (or :meth:`stop`) once every connection has ended."""

    def __init__(self, config: ServerConfig, *, log=None):
        import multiprocessing as mp

        self.config = config.validate()
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        os.makedirs(config.spool, exist_ok=True)  # a spool we cannot create fails here, not at the first client
        self._ctx = mp.get_context("spawn")
        self.sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((config.host, config.port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.workers: list[_Worker] = []
        self.pending = deque()    # accepted clients waiting for a worker that is starting
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.served = 0

    def stop(self) -> None:
        """Stop accepting and finish (what SIGTERM does); safe from a signal handler or another thread."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- workers --------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        self.workers.append(_Worker(self._ctx, self.config))

    def _dispatch(self, client: socket.socket, peer: str) -> bool:
        from multiprocessing.reduction import send_handle

        for w in self.workers:
            if w.state == "idle":
                try:
                    w.pipe.send(("conn", peer))
                    send_handle(w.pipe, client.fileno(), w.process.pid)
                except OSError:
                    continue
                w.state, w.client, w.peer = "busy", client, peer
                self.served += 1
                return True
        return False

    def _refuse(self, client: socket.socket, reason: str) -> None:
        from ..io.mrd import MRD_MESSAGE_TEXT
        from ..io.mrd_stream import encode_close, encode_text

        try:
            client.settimeout(2.0)
            client.sendall(encode_text(MRD_MESSAGE_TEXT, f"ERR recon serve: {reason}") + encode_close())
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        client.close()

    def _on_message(self, w: _Worker) -> None:
        try:
            msg = w.pipe.recv()
        except (EOFError, OSError):
            w.pipe_closed = True
            return
        if msg[0] == "ready":
            w.state = "idle"
        elif msg[0] == "spool":
            w.spool = msg[1]
        elif msg[0] == "done":
            s = msg[1]
            w.state = "finished"  # "ready" again next, or its exit
            self.log(f"recon serve: {w.peer or 'client'}: {s.get('ended')}; {s.get('images', 0)} images; "
                     f"{s.get('messages', 0)} messages spooled to {s.get('spool')}"
                     + (f"; {s['error']}" if s.get("error") else ""))
            if w.client is not None:
                w.client.close()
                w.client = None

    def _on_exit(self, w: _Worker) -> None:
        from .spool import convert_log

        w.process.join(1.0)
        while not w.pipe_closed and w.pipe.poll():  # its last words ("done") before its exit
            self._on_message(w)
        if w.state == "busy":  # died while serving
            code = w.process.exitcode
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            where = w.spool or self.config.spool
            self.log(f"recon serve: the worker serving {w.peer} died ({why}); its data is in {where}")
            if w.client is not None:
                self._refuse(w.client, f"the reconstruction process of this connection died ({why}); the data "
                                       f"received is spooled ({where})")
                w.client = None
            if w.spool and os.path.exists(w.spool):
                try:
                    convert_log(w.spool)
                except OSError:
                    pass
        elif w.client is not None:
            w.client.close()
        w.pipe.close()
        self.workers.remove(w)

    # -- the loop ---------------------------------------------------------------------------------------

    def serve_forever(self, ready=None) -> int:
        """Serve until stopped; ``ready(port)`` is called once the workers are up."""
        from multiprocessing.connection import wait

        from .spool import recover

        for path in recover(self.config.spool):
            self.log(f"recon serve: recovered a spool log left by an earlier server: {path}")
        old = {s: signal.signal(s, lambda *_: self.stop()) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(self.config.max_connections):
                self._spawn()
            announced = False
            while True:
                if self._stopping and self.sock is not None:
                    self.sock.close()
                    self.sock = None
                    while self.pending:
                        self._refuse(self.pending.popleft()[0], "the server is shutting down")
                    for w in self.workers:
                        try:
                            w.pipe.send(("stop",))
                        except OSError:
                            pass
                if self._stopping and not self.workers:
                    self.log(f"recon serve: stopped after {self.served} connections")
                    return 0
                if not self._stopping:
                    while len(self.workers) < self.config.max_connections:
                        self._spawn()
                if not announced and all(w.state != "starting" for w in self.workers):
                    announced = True
                    self.log(f"recon serve: listening on {self.config.host}:{self.port} ({self.config.max_connections}"
                             f" connections, spool {os.path.abspath(self.config.spool)}, device {self.config.device})")
                    if ready is not None:
                        ready(self.port)
                waitables = [self._wake_r] + [w.process.sentinel for w in self.workers]
                waitables += [w.pipe for w in self.workers if not w.pipe_closed]
                if self.sock is not None:
                    waitables.append(self.sock)
                for obj in wait(waitables, timeout=0.5 if self.pending else 1.0):
                    if obj is self._wake_r:
                        try:
                            while self._wake_r.recv(64):
                                pass
                        except OSError:
                            pass
                    elif obj is self.sock:
                        self._accept()
                    else:
                        for w in list(self.workers):
                            if obj is w.pipe:
                                self._on_message(w)
                            elif obj == w.process.sentinel and not w.process.is_alive():
                                self._on_exit(w)
                self._dispatch_pending()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if self.sock is not None:
                self.sock.close()
                self.sock = None

    def _accept(self) -> None:
        try:
            client, addr = self.sock.accept()
        except OSError:
            return
        peer = f"{addr[0]}:{addr[1]}"
        busy = sum(w.state == "busy" for w in self.workers)
        if busy + len(self.pending) >= 2 * self.config.max_connections:
            self._refuse(client, f"busy: {busy} connections in progress and {len(self.pending)} waiting "
                                 f"(--max-connections {self.config.max_connections}); try again later")
            self.log(f"recon serve: refused {peer}: busy")
            return
        self.pending.append((client, peer, time.monotonic()))
        self._dispatch_pending()

    def _dispatch_pending(self) -> None:
        """Hand waiting clients to idle workers (a replacement worker may still be starting)."""
        while self.pending:
            client, peer, t = self.pending[0]
            if not self._dispatch(client, peer):
                if time.monotonic() - t > PENDING_TIMEOUT_S:
                    self.pending.popleft()
                    self._refuse(client, f"no reconstruction process became ready within {PENDING_TIMEOUT_S} s")
                    continue
                return
            self.pending.popleft()


def serve(config: ServerConfig, **kw) -> int:
    """Run ``recon serve`` with ``config`` until SIGTERM/SIGINT; returns the exit code."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # inherited by the workers (module docstring)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if config.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {config.device}: no CUDA device is available to torch")
    return Server(config).serve_forever(**kw)


# ---- the command line -------------------------------------------------------------------------------


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="MRD v1 (ISMRMRD streaming) reconstruction server",
                       description="Serve reconstructions over the ISMRMRD/MRD v1 socket protocol (Gadgetron, "
                                   "python-ismrmrd-server, FIRE clients). Config names: recon-sense, recon-cs, "
                                   "recon-zf, recon-realtime, recon-net. Every message received is spooled to disk first. "
                                   "See docs/stream.md.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--spool", default="recon-spool", help="folder of the spool (default ./recon-spool)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:n]")
    p.add_argument("--max-connections", type=int, default=4, help="connections served at once (default 4)")
    p.add_argument("--max-connection-bytes", type=float, default=None,
                   help="bytes one connection may send (default: available memory / (2 x max connections))")
    p.add_argument("--max-message-bytes", type=float, default=MessageLimits.max_message_bytes,
                   help="largest acquisition/waveform body (default 64 MiB)")
    p.add_argument("--max-channels", type=int, default=MessageLimits.max_channels, help="channels per acquisition")
    p.add_argument("--idle-timeout", type=float, default=300.0, help="seconds without data before closing (300)")
    p.add_argument("--shutdown-timeout", type=float, default=60.0,
                   help="seconds connections may run on after SIGTERM (60)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    limits = MessageLimits(max_message_bytes=int(args.max_message_bytes), max_channels=int(args.max_channels))
    config = ServerConfig(host=args.host, port=args.port, spool=args.spool, device=args.device,
                          max_connections=args.max_connections, limits=limits,
                          max_connection_bytes=None if args.max_connection_bytes is None else int(args.max_connection_bytes),
                          idle_timeout=args.idle_timeout, shutdown_timeout=args.shutdown_timeout)
    return serve(config)
