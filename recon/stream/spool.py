"""The spool: every message a connection receives is on disk before it is processed.

Each connection appends the exact bytes of every message it receives (a recorded MRD v1 stream,
``recon.io.mrd_stream``) to ``<spool>/<UTC time>-<pid>-<n>.mrd`` with one ``write`` per message,
before the message is decoded or reconstructed. Written bytes live in the kernel's page cache, so a
process killed at any point (SIGKILL, a crash in a native library, the OOM killer) loses nothing it
had received; ``fdatasync`` runs at most ``sync_interval`` seconds apart (and at the end), which bounds
what a power failure can take. A live log is locked (``flock``) by its connection.

When the connection ends (CLOSE, the client gone, a protocol error, a crash of the pipeline) the log
is converted to an ISMRMRD HDF5 file of the same name (``.h5``: header, every acquisition and
waveform, plus ``/dataset/config_file``, ``config`` and ``configAdditional`` as python-ismrmrd-server
saves them), written atomically and checked, and the log is removed. Logs left behind by a killed
server (unlocked ``.mrd`` files) are converted by :func:`recover`, which ``recon serve`` runs at
start-up; until then ``recon mri LOG.mrd`` reads a log directly (``recon.io.read_raw``). A log that
cannot be converted (no header, damaged) is kept as it is.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import threading
import time
import warnings

from ..io.mrd import MRD_MESSAGE_CONFIG_FILE, MRD_MESSAGE_CONFIG_TEXT, MRD_MESSAGE_TEXT

LOG_SUFFIX = ".mrd"
#: messages kept in the converted file, under python-ismrmrd-server's dataset names (the first of each)
_SAVED = {MRD_MESSAGE_CONFIG_FILE: "config_file", MRD_MESSAGE_CONFIG_TEXT: "config", MRD_MESSAGE_TEXT: "configAdditional"}
_counter = itertools.count()


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Spool:
    """The append-only log of one connection (see the module docstring).

    ``folder`` is created when missing; ``sync_interval`` (s) bounds the time between fdatasyncs.
    ``append(raw)`` writes one message's bytes; ``close()`` syncs, unlocks and converts the log,
    returning the path that now holds the data (``.h5``, or the ``.mrd`` when it could not be
    converted; None for a connection that sent nothing).
    """

    def __init__(self, folder, *, sync_interval: float = 0.5):
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = os.path.join(folder, f"{stamp}-{os.getpid()}-{next(_counter)}{LOG_SUFFIX}")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _fsync_folder(folder)
        self.sync_interval = float(sync_interval)
        self.messages = 0
        self.nbytes = 0
        self._last_sync = time.monotonic()
        self._lock = threading.Lock()
        self.result = None

    def append(self, raw: bytes) -> None:
        """Write one message's bytes (all of them, or raise OSError)."""
        with self._lock:
            view = memoryview(raw)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self.messages += 1
            self.nbytes += len(raw)
            if time.monotonic() - self._last_sync >= self.sync_interval:
                self._sync()

    def _sync(self) -> None:
        os.fdatasync(self._fd)
        self._last_sync = time.monotonic()

    def sync(self) -> None:
        with self._lock:
            self._sync()

    def close(self):
        """Sync and release the log, then convert it (see the module docstring)."""
        with self._lock:
            if self._fd is None:
                return self.result
            try:
                self._sync()
            finally:
                os.close(self._fd)  # releases the lock
                self._fd = None
        self.result = convert_log(self.path)
        return self.result


def _converted_path(log: str) -> str:
    return log[: -len(LOG_SUFFIX)] + ".h5" if log.endswith(LOG_SUFFIX) else log + ".h5"


def convert_log(log) -> str | None:
    """Convert a spool log to ISMRMRD HDF5 (module docstring). Returns the ``.h5`` path, the log's
    own path when it cannot be converted (kept, with a warning), or None for an empty log (removed)."""
    import h5py

    from ..io.ismrmrd import write_ismrmrd_raw
    from ..io.mrd_stream import read_mrd_stream

    log = os.fspath(log)
    if os.path.getsize(log) == 0:
        os.unlink(log)
        return None
    extra = {}

    def keep(msg):
        name = _SAVED.get(msg.id)
        if name is not None:
            extra.setdefault(name, msg.text)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a truncated last message: what came before is kept
            raw = read_mrd_stream(log, views=False, on_message=keep)
        target = _converted_path(log)
        tmp = os.path.join(os.path.dirname(target), ".recon-spool-" + os.path.basename(target))
        write_ismrmrd_raw(tmp, raw)
        with h5py.File(tmp, "r+") as f:
            g = f["dataset"]
            for name, text in extra.items():
                d = g.create_dataset(name, shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
                d[0] = text.encode("utf-8")
            if g["data"].shape[0] != len(raw.acquisitions):
                raise ValueError(f"wrote {g['data'].shape[0]} acquisitions of {len(raw.acquisitions)}")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_folder(os.path.dirname(target) or ".")
    except (ValueError, OSError) as exc:
        warnings.warn(f"{log}: not converted to HDF5 ({str(exc).splitlines()[0]}); the spool log is kept as it is",
                      RuntimeWarning, stacklevel=2)
        return log
    os.unlink(log)
    return target


def recover(folder) -> list[str]:
    """Convert the spool logs in ``folder`` that no live connection holds (left by a killed server).
    Returns the paths that hold their data (``.h5`` or kept ``.mrd``)."""
    folder = os.fspath(folder)
    out = []
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.endswith(LOG_SUFFIX) or not os.path.isfile(path):
            continue
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live connection's log
        try:
            result = convert_log(path)
        finally:
            os.close(fd)
        if result is not None:
            out.append(result)
    return out
