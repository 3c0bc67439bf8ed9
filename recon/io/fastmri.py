"""fastMRI HDF5 files: reading raw data (singlecoil and multicoil) and writing reconstructions.

Layout of a fastMRI file (as published by NYU/Meta; the same for knee and brain):

- ``kspace``: complex64, ``(slices, height, width)`` singlecoil or ``(slices, coils, height, width)``
  multicoil. ``height`` is the readout direction (ISMRMRD ``encodedSpace/matrixSize/x``, usually
  2x oversampled, e.g. 640) and ``width`` the phase-encode direction (``matrixSize/y``, e.g. 368):
  the undersampling masks act on the last axis. The image of a slice is
  ``ifft2c(kspace[s])`` (centred, orthonormal FFT over the last two axes), of size
  ``(height, width)``; the targets are its centre crop to ``reconSpace/matrixSize (x, y)``.
- ``reconstruction_rss`` (multicoil) / ``reconstruction_esc`` (singlecoil): float32
  ``(slices, rx, ry)`` magnitude targets, absent in challenge/test files.
- ``mask`` (test/challenge files only): the phase-encode sampling mask, shape ``(width,)``.
- ``ismrmrd_header``: the scan's ISMRMRD XML (bytes, scalar dataset).
- attributes: ``acquisition`` (e.g. ``CORPD_FBK``, ``AXT2``), ``max`` and ``norm`` (max and
  Frobenius norm of the target volume), ``patient_id``; test files add ``acceleration``,
  ``num_low_frequency``.

Padding: see ``recon.io.ismrmrd_header`` (``padding_left``, ``padding_right`` exactly as fastMRI).

Reading is lazy and bounded: ``FastMRIFile`` reads one slice at a time, and every read is checked
against ``recon.io.limits`` before it allocates (a small compressed or sparse file can declare
terabytes). Datasets stored outside the file (external links or storage, virtual datasets) are
refused (``recon.io.hdf5``). The reconstruction writer is atomic (``recon.io.atomic``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .hdf5 import corrupt_guard, member, open_h5, write_hdf5
from .ismrmrd_header import HeaderError, IsmrmrdHeader, parse_ismrmrd_header
from .limits import check_read_size, nbytes_of

TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}


class FastMRIFormatError(ValueError):
    """A file is truncated, corrupt, or not a fastMRI HDF5 file (one-line message)."""


def _attr(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class FastMRIVolume:
    """One fastMRI volume read into memory.

    kspace: complex64 ``(slices, [coils,] height, width)``; width is the phase-encode axis.
    target: float32 ``(slices, rx, ry)`` or None. header: the parsed ISMRMRD header.
    """

    path: str
    kspace: np.ndarray
    target: np.ndarray | None
    target_key: str | None
    header: IsmrmrdHeader
    attrs: dict = field(default_factory=dict)
    mask: np.ndarray | None = None

    @property
    def challenge(self) -> str:
        return "multicoil" if self.kspace.ndim == 4 else "singlecoil"

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def encoding_size(self) -> tuple[int, int, int]:
        return self.header.encoded_matrix

    @property
    def recon_size(self) -> tuple[int, int, int]:
        return self.header.recon_matrix

    @property
    def padding_left(self) -> int:
        return self.header.padding[0]

    @property
    def padding_right(self) -> int:
        return self.header.padding[1]


def _read_header(ds, p):
    if ds.shape not in ((), (1,)) or ds.dtype.kind not in "SOU":
        raise FastMRIFormatError(f"{p}: 'ismrmrd_header' must be one string, got {ds.dtype} of shape {ds.shape}")
    try:
        v = ds[()]
    except (OSError, RuntimeError) as exc:
        raise FastMRIFormatError(f"{p}: cannot read 'ismrmrd_header' ({str(exc).splitlines()[0]})") from None
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    try:
        return parse_ismrmrd_header(v)
    except HeaderError as exc:
        raise FastMRIFormatError(f"{p}: {exc}") from None


class FastMRIFile:
    """Lazy, validated access to one fastMRI file: ``f.kspace_slice(i)``, ``f.target_slice(i)``.

    Opens the file on each call (safe with torch DataLoader workers). Construction validates the
    layout and parses the header; errors are ``FastMRIFormatError`` / ``FileNotFoundError``.
    ``max_bytes``: the read limit of every call (default ``recon.io.limits.max_read_bytes()``).
    """

    def __init__(self, path, *, max_bytes: int | None = None):
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        with corrupt_guard(self.path, FastMRIFormatError, "layout"), open_h5(self.path, FastMRIFormatError) as hf:
            self._validate(hf)

    def _validate(self, hf):
        p = self.path
        ks = member(hf, "kspace", FastMRIFormatError, p)
        if ks is None:
            raise FastMRIFormatError(f"{p}: no 'kspace' dataset (not a fastMRI file); has {sorted(hf.keys())}")
        if not hasattr(ks, "dtype") or ks.dtype.kind != "c":
            raise FastMRIFormatError(f"{p}: 'kspace' must be a complex dataset, got {getattr(ks, 'dtype', type(ks))}")
        if ks.ndim not in (3, 4):
            raise FastMRIFormatError(f"{p}: 'kspace' must be (slices, [coils,] height, width), got shape {ks.shape}")
        if min(ks.shape) < 1:
            raise FastMRIFormatError(f"{p}: 'kspace' has an empty axis: shape {ks.shape}")
        hdr = member(hf, "ismrmrd_header", FastMRIFormatError, p)
        if hdr is None:
            raise FastMRIFormatError(f"{p}: no 'ismrmrd_header' dataset")
        self.header = _read_header(hdr, p)
        self.kspace_shape = tuple(int(n) for n in ks.shape)
        self._ks_bytes = ks.dtype.itemsize + 8  # per element: as stored, and the complex64 copy
        self.challenge = "multicoil" if ks.ndim == 4 else "singlecoil"
        keys = [TARGET_KEYS[self.challenge]] + [k for k in TARGET_KEYS.values() if k != TARGET_KEYS[self.challenge]]
        self.target_key = next((k for k in keys if k in hf), None)
        if self.target_key is not None:
            t = member(hf, self.target_key, FastMRIFormatError, p)
            if not hasattr(t, "dtype") or t.dtype.kind not in "fiu" or t.ndim != 3 or t.shape[0] != ks.shape[0]:
                raise FastMRIFormatError(
                    f"{p}: '{self.target_key}' must be real (slices, rx, ry) with {ks.shape[0]} slices, got "
                    f"{getattr(t, 'dtype', type(t))} of shape {getattr(t, 'shape', None)}"
                )
            self.target_shape = tuple(int(n) for n in t.shape)
            self._t_bytes = t.dtype.itemsize + 4
        self.attrs = {k: _attr(v) for k, v in hf.attrs.items()}
        self.has_mask = "mask" in hf

    @property
    def num_slices(self) -> int:
        return self.kspace_shape[0]

    def _read(self, name, index, shape, itemsize):
        check_read_size(nbytes_of(shape, itemsize), f"{self.path}: reading '{name}' {tuple(shape)}",
                        max_bytes=self.max_bytes, error=FastMRIFormatError)
        with corrupt_guard(self.path, FastMRIFormatError, f"reading '{name}'"), \
                open_h5(self.path, FastMRIFormatError) as hf:
            ds = member(hf, name, FastMRIFormatError, self.path)
            if ds is None or not hasattr(ds, "dtype"):
                raise FastMRIFormatError(f"{self.path}: '{name}' is missing or not a dataset")
            return ds[index]

    def _check_slice(self, i):
        i = int(i)
        if not -self.num_slices <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        return i

    def kspace_slice(self, i) -> np.ndarray:
        """k-space of slice i: complex64 ``([coils,] height, width)``."""
        return np.asarray(self._read("kspace", self._check_slice(i), self.kspace_shape[1:], self._ks_bytes), dtype=np.complex64)

    def target_slice(self, i) -> np.ndarray | None:
        if self.target_key is None:
            return None
        return np.asarray(self._read(self.target_key, self._check_slice(i), self.target_shape[1:], self._t_bytes),
                          dtype=np.float32)

    def mask(self) -> np.ndarray | None:
        if not self.has_mask:
            return None
        with corrupt_guard(self.path, FastMRIFormatError, "reading 'mask'"), \
                open_h5(self.path, FastMRIFormatError) as hf:
            ds = member(hf, "mask", FastMRIFormatError, self.path)
            if not hasattr(ds, "dtype") or ds.dtype.kind not in "biuf":
                raise FastMRIFormatError(f"{self.path}: 'mask' must be a numeric dataset")
            shape, itemsize = ds.shape, ds.dtype.itemsize
        return np.asarray(self._read("mask", (), shape, itemsize))

    def read(self) -> FastMRIVolume:
        """The whole volume in memory (refused, like every read, above the read limit)."""
        ks = np.asarray(self._read("kspace", (), self.kspace_shape, self._ks_bytes), dtype=np.complex64)
        tgt = None if self.target_key is None else np.asarray(
            self._read(self.target_key, (), self.target_shape, self._t_bytes), dtype=np.float32)
        return FastMRIVolume(self.path, ks, tgt, self.target_key, self.header, dict(self.attrs), self.mask())


def read_fastmri(path, *, max_bytes: int | None = None) -> FastMRIVolume:
    """Read a fastMRI HDF5 file (singlecoil or multicoil) into a ``FastMRIVolume``.

    Raises ``FileNotFoundError`` if missing and ``FastMRIFormatError`` (a ValueError) when the file
    is truncated, corrupt, lacks the fastMRI datasets, keeps data outside the file, or declares
    more than the read limit (``max_bytes``, see ``recon.io.limits``).
    """
    return FastMRIFile(path, max_bytes=max_bytes).read()


# ---- reconstructions (the layout fastMRI's evaluate.py and leaderboard read) ------------------------

def write_fastmri_reconstruction(path, volume, *, attrs: dict | None = None, compression: str | None = "gzip",
                                 overwrite: bool = True) -> str:
    """Write ``volume`` (slices, H, W) as dataset ``reconstruction`` (float32 magnitude), atomically.

    Complex input is stored as its magnitude (fastMRI targets are magnitudes). ``attrs`` become
    HDF5 attributes. Raises ValueError on a wrong shape or non-finite values, FileExistsError when
    ``path`` exists and not ``overwrite``, OSError when the disk refuses (nothing is left behind).
    Returns ``path``.
    """
    v = np.asarray(volume)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3:
        raise ValueError(f"volume must be (slices, H, W) or (H, W), got shape {np.shape(volume)}")
    if not np.all(np.isfinite(v)):
        raise ValueError("volume contains NaN or Inf")
    v = np.abs(v).astype(np.float32) if np.iscomplexobj(v) else v.astype(np.float32)

    def fill(hf):
        hf.create_dataset("reconstruction", data=v, compression=compression)
        for k, val in (attrs or {}).items():
            hf.attrs[k] = val

    return write_hdf5(path, fill, overwrite=overwrite)


def read_fastmri_reconstruction(path, *, max_bytes: int | None = None) -> np.ndarray:
    """The ``reconstruction`` dataset of a file written by ``write_fastmri_reconstruction``."""
    p = os.fspath(path)
    with corrupt_guard(p, FastMRIFormatError, "reading 'reconstruction'"), open_h5(p, FastMRIFormatError) as hf:
        ds = member(hf, "reconstruction", FastMRIFormatError, p)
        if ds is None or not hasattr(ds, "dtype"):
            raise FastMRIFormatError(f"{p}: no 'reconstruction' dataset; has {sorted(hf.keys())}")
        check_read_size(nbytes_of(ds.shape, max(ds.dtype.itemsize, 1)), f"{p}: reading 'reconstruction' {ds.shape}",
                        max_bytes=max_bytes, error=FastMRIFormatError)
        return np.asarray(ds[()])
