"""Atomic output: the one home of how recon writes files.

Every writer (HDF5, NIfTI, DICOM, PNG, ISMRMRD) writes to a temporary name in the target folder
(``.recon-<random>-<name>``, so the extension, which some writers read, is kept), closes it, flushes
it to disk (fsync) and only then renames it onto the target. A failure anywhere (disk full, file
size limit, an exception in the writer, Ctrl-C) deletes the temporary and leaves the target as it
was: a reader never sees a partial file. A DICOM series is written into a temporary folder that is
renamed into place the same way.

``OutputSet`` extends this to a group of outputs (a reconstruction, its preview, a reference
preview): all are written first, then all renamed, so a run leaves all of them or none.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil

_PREFIX = ".recon-"


def _tmp_path(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f"{_PREFIX}{secrets.token_hex(4)}-{base}")


def _fsync(path: str, tree: bool = True) -> None:
    """Flush a file to disk; a folder: its files (``tree``), then the folder's entries."""
    if tree and os.path.isdir(path):
        for name in os.listdir(path):
            _fsync(os.path.join(path, name))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        if not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def remove_stale_temporaries(path) -> list[str]:
    """Remove the temporaries of ``path`` that a killed writer left behind (``.recon-<random>-<name>``
    beside it: a process killed while writing cannot delete them); returns their paths. For a run
    that replaces an interrupted one over the same outputs."""
    d, base = os.path.split(os.path.abspath(os.fspath(path).rstrip("/" + os.sep)))
    if not os.path.isdir(d):
        return []
    pat = re.compile(re.escape(_PREFIX) + "[0-9a-f]{8}-" + re.escape(base) + "$")
    stale = [os.path.join(d, n) for n in sorted(os.listdir(d)) if pat.match(n)]
    for p in stale:
        _remove(p)
    return stale


class OutputSet:
    """A group of outputs written all-or-nothing.

    ::

        with OutputSet(overwrite=False) as out:
            write_nifti(out.file("x.nii.gz"), ...)       # writes a temporary in x.nii.gz's folder
            write_dicom_series(out.folder("series"), ...)
        # here every output has been renamed into place; on an exception none was, and the
        # temporaries are gone

    ``overwrite=False`` refuses (FileExistsError) a target that exists at commit time.
    ``folder(path, replaceable=...)``: an existing folder is replaced only when every entry in it is
    a file accepted by ``replaceable(name)`` (a previous series), never a folder of other things.
    """

    def __init__(self, *, overwrite: bool = True):
        self.overwrite = overwrite
        self._items = []  # (tmp, target, replaceable or None for files)

    def file(self, path) -> str:
        """Temporary path to write instead of ``path`` (same folder, same extension)."""
        path = os.fspath(path)
        tmp = _tmp_path(path)
        self._items.append((tmp, path, None))
        return tmp

    def folder(self, path, replaceable=lambda name: True) -> str:
        """Temporary folder to fill instead of ``path`` (created, in the same parent folder)."""
        path = os.fspath(path)
        tmp = _tmp_path(path.rstrip("/" + os.sep))
        os.mkdir(tmp)
        self._items.append((tmp, path, replaceable))
        return tmp

    def _check_target(self, target, replaceable):
        if not os.path.lexists(target):
            return
        if not self.overwrite:
            raise FileExistsError(f"{target} exists (not replaced)")
        if replaceable is None:
            if os.path.isdir(target) and not os.path.islink(target):
                raise IsADirectoryError(f"{target} is a folder; cannot replace it with a file")
            return
        if not os.path.isdir(target) or os.path.islink(target):
            raise NotADirectoryError(f"{target} exists and is not a folder")
        others = [n for n in os.listdir(target)
                  if not (os.path.isfile(os.path.join(target, n)) and replaceable(n))]
        if others:
            raise FileExistsError(f"{target} holds other things ({others[0]!r}); not replacing that folder")

    def commit(self) -> None:
        """Flush every temporary to disk and rename it onto its target."""
        for tmp, target, replaceable in self._items:
            if not os.path.lexists(tmp):
                raise FileNotFoundError(f"the writer of {target} wrote nothing")
            self._check_target(target, replaceable)
            _fsync(tmp)
        for tmp, target, replaceable in self._items:
            if replaceable is not None and os.path.isdir(target):
                trash = _tmp_path(target)
                os.rename(target, trash)
                os.rename(tmp, target)
                _remove(trash)
            else:
                os.replace(tmp, target)
        for d in {os.path.dirname(os.path.abspath(t)) for _, t, _ in self._items}:
            with contextlib.suppress(OSError):
                _fsync(d, tree=False)  # the renames themselves
        self._items = []

    def abort(self) -> None:
        """Delete every temporary (targets untouched)."""
        for tmp, _, _ in self._items:
            _remove(tmp)
        self._items = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
        return False


@contextlib.contextmanager
def atomic_file(path, *, overwrite: bool = True):
    """Context manager yielding a temporary path to write instead of ``path``; renamed onto
    ``path`` on success, deleted on failure (see the module docstring)."""
    with OutputSet(overwrite=overwrite) as out:
        yield out.file(path)


@contextlib.contextmanager
def atomic_folder(path, *, overwrite: bool = True, replaceable=lambda name: True):
    """As :func:`atomic_file` for a folder (filled in a temporary folder, then renamed)."""
    with OutputSet(overwrite=overwrite) as out:
        yield out.folder(path, replaceable)
