"""Reading and writing HDF5 safely: the one home of the rules every HDF5 reader and writer follows.

Reading (``open_h5``, ``member``, ``stored_datasets``, ``corrupt_guard``):

- only regular files are opened (``recon.io.files.check_input_file``);
- only objects stored in the file itself are read: external links (to another file), soft links,
  datasets with external storage (raw bytes taken from other files, e.g. a system file) and
  virtual datasets (mapped from other files) are refused with a one-line error. Every reader gets
  its datasets and groups through ``member``, which checks each link of a path before following it
  (``stored_datasets`` lists only what is stored in the file, for readers that search for a dataset);
- the many exceptions h5py raises on damaged files become the reader's format error, one line;
- global heaps (where variable-length data live: ISMRMRD acquisitions, XML headers) are walked
  before the file is opened (``check_global_heaps``): libhdf5 (2.0) loops forever, holding the
  GIL, on a heap whose free-space entry has size 0, which one flipped bit can make.

Writing (``write_hdf5``): the file is built in memory and written through ``recon.io.atomic``, so
HDF5 itself never writes to disk: a full disk or a file-size limit gives one clean ``OSError``, never
a half-written file or an error in libhdf5's exit handler.
"""

from __future__ import annotations

import contextlib
import io
import os

from .atomic import atomic_file
from .files import check_input_file, first_line

#: exceptions h5py raises on damaged or unexpected files
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError)


@contextlib.contextmanager
def corrupt_guard(path, error_cls, what: str):
    """Turn h5py's exceptions on damaged files into ``error_cls`` (one line naming ``path``, ``what``)."""
    try:
        yield
    except (error_cls, FileNotFoundError):
        raise
    except H5_ERRORS as exc:
        raise error_cls(f"{os.fspath(path)}: corrupt or truncated HDF5 ({what}): {first_line(exc)}") from None


def check_global_heaps(path, error_cls) -> None:
    """Walk every global heap collection of an HDF5 file as libhdf5 will and refuse (``error_cls``)
    one whose object list does not advance or runs past the collection (libhdf5 would loop
    forever or read beyond it). Layout (HDF5 spec, III.E): "GCOL", version 1, 3 reserved bytes,
    collection size (8 bytes, >= 4096, the header included); then objects: index (2), reference
    count (2), reserved (4), size (8), data padded to 8 bytes; index 0 is the free space, its size
    covering the rest."""
    import mmap
    import struct

    p = os.fspath(path)
    head, obj = struct.Struct("<Q"), struct.Struct("<HHIQ")
    with open(p, "rb") as f:
        st = os.fstat(f.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if st.st_size < 16 or key in _HEAPS_CHECKED:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            n = len(m)
            at = m.find(b"GCOL\x01\x00\x00\x00")
            while at != -1:
                size = head.unpack_from(m, at + 8)[0] if at + 16 <= n else 0
                if not (size >= 4096 and at + size <= n):  # not a collection (or one HDF5 refuses itself)
                    size = 1
                else:
                    pos, end = at + 16, at + size
                    while pos + 16 <= end:  # a smaller rest is free space
                        idx, _, _, osize = obj.unpack_from(m, pos)
                        need = 16 + (osize + 7) // 8 * 8 if idx > 0 else osize
                        if need <= 0 or pos + need > end:
                            raise error_cls(f"{p}: corrupt HDF5 global heap at byte {at} (object {idx} of size "
                                            f"{osize} at byte {pos}); not read")
                        pos += need
                at = m.find(b"GCOL\x01\x00\x00\x00", at + size)  # nothing to look for inside a collection
    if len(_HEAPS_CHECKED) > 4096:
        _HEAPS_CHECKED.clear()
    _HEAPS_CHECKED.add(key)


#: files (device, inode, size, mtime) whose heaps passed ``check_global_heaps`` in this process
_HEAPS_CHECKED: set = set()


def open_h5(path, error_cls):
    """Open a regular file read-only as HDF5; ``error_cls`` (one line) when it is not readable HDF5
    or its global heaps are corrupt (``check_global_heaps``)."""
    import h5py

    p = check_input_file(path)
    check_global_heaps(p, error_cls)
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise error_cls(f"{p}: not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}") from None


def member(group, name: str, error_cls, path=None):
    """``group[name]`` (a Dataset or Group), None when absent; ``error_cls`` for anything that is not
    stored in this file (external/soft/user-defined link, external storage, virtual dataset). A path
    ``"a/b/c"`` is followed link by link, each one checked."""
    import h5py

    where = f"{os.fspath(path) if path is not None else group.file.filename}: '{name}'"
    obj = group
    for part in [p for p in str(name).split("/") if p]:
        if not isinstance(obj, h5py.Group):
            raise error_cls(f"{where}: '{part}' is inside a dataset, not a group")
        link = obj.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise error_cls(f"{where} is an external link to {link.filename}:{link.path}; recon reads only data "
                            "stored in the file itself")
        if not isinstance(link, h5py.HardLink):
            kind = "a soft link" if isinstance(link, h5py.SoftLink) else "a user-defined link"
            raise error_cls(f"{where} is {kind}; recon reads only data stored in the file itself")
        obj = obj[part]
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                raise error_cls(f"{where} is a virtual dataset (mapped from other files); recon reads only data "
                                "stored in the file itself")
            if obj.external:
                raise error_cls(f"{where} has external storage ({os.fsdecode(obj.external[0][0])}, ...); recon "
                                "reads only data stored in the file itself")
    return obj


def stored_datasets(group, prefix: str = ""):
    """``(path, dataset)`` of every dataset below ``group`` reachable through hard links and stored in
    the file itself (links of other kinds, virtual datasets and external storage are skipped)."""
    import h5py

    for key in group:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            continue
        obj = group[key]
        name = f"{prefix}/{key}"
        if isinstance(obj, h5py.Group):
            yield from stored_datasets(obj, name)
        elif isinstance(obj, h5py.Dataset) and not obj.is_virtual and not obj.external:
            yield name, obj


def write_hdf5(path, fill, *, overwrite: bool = True) -> str:
    """Write an HDF5 file atomically: ``fill(h5py.File)`` populates an in-memory file whose bytes
    are then written to ``path`` through ``recon.io.atomic`` (see the module docstring)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as hf:
        fill(hf)
    path = os.fspath(path)
    with atomic_file(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(buf.getbuffer())
    return path
