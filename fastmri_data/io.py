"""Reading fastMRI HDF5 files (singlecoil and multicoil).

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

Padding: see ``fastmri_data.header`` (``padding_left``, ``padding_right`` exactly as fastMRI).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np

from .header import HeaderError, IsmrmrdHeader, parse_ismrmrd_header

TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}


class FastMRIFormatError(ValueError):
    """A file is truncated, corrupt, or not a fastMRI HDF5 file (one-line message)."""


def _open_h5(path):
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FastMRIFormatError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {msg}") from None


_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)


def _first_line(exc) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def _corrupt_guard(path, error_cls, what: str):
    """Turn the many exceptions h5py raises on damaged files into ``error_cls`` (one line)."""
    try:
        yield
    except (error_cls, FileNotFoundError):
        raise
    except _H5_ERRORS as exc:
        raise error_cls(f"{path}: corrupt or truncated HDF5 ({what}): {_first_line(exc)}") from None


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


class FastMRIFile:
    """Lazy, validated access to one fastMRI file: ``f.kspace_slice(i)``, ``f.target_slice(i)``.

    Opens the file on each call (safe with torch DataLoader workers). Construction validates the
    layout and parses the header; errors are ``FastMRIFormatError`` / ``FileNotFoundError``.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        with _corrupt_guard(self.path, FastMRIFormatError, "layout"), _open_h5(self.path) as hf:
            self._validate(hf)

    def _validate(self, hf):
        p = self.path
        if "kspace" not in hf:
            raise FastMRIFormatError(f"{p}: no 'kspace' dataset (not a fastMRI file); has {sorted(hf.keys())}")
        ks = hf["kspace"]
        if not hasattr(ks, "dtype") or ks.dtype.kind != "c":
            raise FastMRIFormatError(f"{p}: 'kspace' must be a complex dataset, got {getattr(ks, 'dtype', type(ks))}")
        if ks.ndim not in (3, 4):
            raise FastMRIFormatError(f"{p}: 'kspace' must be (slices, [coils,] height, width), got shape {ks.shape}")
        if "ismrmrd_header" not in hf:
            raise FastMRIFormatError(f"{p}: no 'ismrmrd_header' dataset")
        try:
            self.header = parse_ismrmrd_header(hf["ismrmrd_header"][()])
        except HeaderError as exc:
            raise FastMRIFormatError(f"{p}: {exc}") from None
        except (OSError, RuntimeError) as exc:
            raise FastMRIFormatError(f"{p}: cannot read 'ismrmrd_header' ({str(exc).splitlines()[0]})") from None
        self.kspace_shape = tuple(int(n) for n in ks.shape)
        self.challenge = "multicoil" if ks.ndim == 4 else "singlecoil"
        self.target_key = TARGET_KEYS[self.challenge] if TARGET_KEYS[self.challenge] in hf else None
        if self.target_key is None:
            other = [k for k in TARGET_KEYS.values() if k in hf]
            self.target_key = other[0] if other else None
        if self.target_key is not None:
            t = hf[self.target_key]
            if t.ndim != 3 or t.shape[0] != ks.shape[0]:
                raise FastMRIFormatError(
                    f"{p}: '{self.target_key}' shape {t.shape} does not match {ks.shape[0]} k-space slices"
                )
        self.attrs = {k: _attr(v) for k, v in hf.attrs.items()}
        self.has_mask = "mask" in hf

    @property
    def num_slices(self) -> int:
        return self.kspace_shape[0]

    def _read(self, name, index):
        with _corrupt_guard(self.path, FastMRIFormatError, f"reading '{name}'"), _open_h5(self.path) as hf:
            return hf[name][index]

    def _check_slice(self, i):
        i = int(i)
        if not -self.num_slices <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        return i

    def kspace_slice(self, i) -> np.ndarray:
        """k-space of slice i: complex64 ``([coils,] height, width)``."""
        return np.asarray(self._read("kspace", self._check_slice(i)), dtype=np.complex64)

    def target_slice(self, i) -> np.ndarray | None:
        if self.target_key is None:
            return None
        return np.asarray(self._read(self.target_key, self._check_slice(i)), dtype=np.float32)

    def mask(self) -> np.ndarray | None:
        return np.asarray(self._read("mask", ())) if self.has_mask else None

    def read(self) -> FastMRIVolume:
        """The whole volume in memory."""
        ks = np.asarray(self._read("kspace", ()), dtype=np.complex64)
        tgt = None if self.target_key is None else np.asarray(self._read(self.target_key, ()), dtype=np.float32)
        return FastMRIVolume(self.path, ks, tgt, self.target_key, self.header, dict(self.attrs), self.mask())


def read_fastmri(path) -> FastMRIVolume:
    """Read a fastMRI HDF5 file (singlecoil or multicoil) into a ``FastMRIVolume``.

    Raises ``FileNotFoundError`` if missing and ``FastMRIFormatError`` (a ValueError) when the file
    is truncated, corrupt or lacks the fastMRI datasets.
    """
    return FastMRIFile(path).read()
