"""Raw MRI data as a file or a stream delivers it: every acquisition with its full header, the noise
scans, the physiological waveforms and the parsed XML header, nothing dropped; and the views that
group acquisitions for reconstruction.

The table (``Acquisitions``): one row per acquisition in arrival order. Every field of the ISMRMRD
AcquisitionHeader is a column (``acq["acquisition_time_stamp"]``, ``acq["physiology_time_stamp"]``
``(n, 3)``, ``acq["flags"]``, ``acq["position"]`` ``(n, 3)``, ``acq["read_dir"]``, ...,
``acq["sample_time_us"]``, ``acq["center_sample"]``, ``acq["discard_pre"]``; the encoding counters
by name: ``acq["kspace_encode_step_1"]``, ``acq["kspace_encode_step_2"]`` (the partition of 3D and
stack-of-stars data), ``acq["average"]``, ``acq["slice"]``, ``acq["contrast"]``, ``acq["phase"]``,
``acq["repetition"]``, ``acq["set"]``, ``acq["segment"]``, ``acq["user"]`` ``(n, 8)``), with
``acq.data[i]`` complex64 ``(channels, samples)`` and ``acq.traj[i]`` float32 ``(samples, d)`` as
stored (ISMRMRD's (kx, ky, kz) order and unit). Noise scans, navigators and calibration lines stay
in the table with their flags. ``Waveforms`` holds ``/dataset/waveforms`` (ECG, pulse, respiratory
bellows: ``WAVEFORM_*`` ids) with their time stamps, in the same clock as the acquisitions.

The views of ``RawData`` (computed from the table, for the acquisitions of one encoding that are
neither noise nor navigator/feedback/dummy data):

- ``slices``: the units of reconstruction, one ``RawSlice`` per group of
  ``GROUP_DIMS = (repetition, contrast, phase, set, slice)`` present, in that lexicographic
  order. Cartesian: k-space ``(coil, [kz,] ky, kx)`` with the averages combined line by line
  (each line averaged over the averages that acquired it); non-Cartesian: samples
  ``(coil, acq, readout)`` and trajectory ``(acq, readout, d)`` in cycles/FOV, image-axis order.
  fastMRI files give one ``RawSlice`` per slice, read from the file when first asked for.
- the dense arrays of ``read_ismrmrd`` (``kspace`` with axes ``KSPACE_DIMS``, ``mask``,
  ``calibration``; ``samples``, ``trajectory``, ``counters``), ``noise``, ``slice_geometry``;
- ``acquisitions.in_time_order()`` for time-resolved (4D, real-time) work.

``AcquisitionDecoder`` builds a ``RawData`` one acquisition (``add``), one block (``add_many``) or
one MRD v1 message body (``add_bytes``) at a time: the file reader and a socket stream feed the
same decoder, so both give identical data.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .ismrmrd_header import HeaderError, IsmrmrdHeader, parse_ismrmrd_header
from .limits import check_read_size, max_read_bytes, nbytes_of
from .mrd import (
    ACQ_HEAD_DTYPE,
    ACQ_IS_NOISE_MEASUREMENT,
    ACQ_IS_PARALLEL_CALIBRATION,
    ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING,
    ACQ_IS_REVERSE,
    COUNTER_NAMES,
    ENCODING_COUNTERS_DTYPE,
    NON_IMAGING_BITS,
    WAVEFORM_HEAD_DTYPE,
    IsmrmrdFormatError,
    acquisition_from_bytes,
    as_header_array,
    flag,
    waveform_from_bytes,
)

#: counters that make a k-space of their own (a unit of reconstruction), in output order
GROUP_DIMS = ("repetition", "contrast", "phase", "set", "slice")
#: leading axes of the dense Cartesian k-space (``RawData.kspace``)
COUNTER_DIMS = ("repetition", "contrast", "phase", "set", "average", "slice")
KSPACE_DIMS = COUNTER_DIMS + ("coil", "kz", "ky", "kx")


# ---- the table ------------------------------------------------------------------------------------

class Acquisitions:
    """All acquisitions in arrival order (see the module docstring): ``head`` (structured,
    ``ACQ_HEAD_DTYPE``), ``data`` (list of complex64 ``(channels, samples)``), ``traj`` (list of
    float32 ``(samples, d)``). ``acq[name]`` is a header column or an encoding counter;
    ``acq[index_array]`` a sub-table."""

    def __init__(self, head: np.ndarray, data: list, traj: list):
        if not (len(head) == len(data) == len(traj)):
            raise ValueError(f"Acquisitions: {len(head)} headers, {len(data)} data, {len(traj)} trajectories")
        self.head, self.data, self.traj = head, data, traj

    def __len__(self) -> int:
        return len(self.head)

    def column(self, name: str) -> np.ndarray:
        """One header field or encoding counter for every acquisition."""
        if name in ACQ_HEAD_DTYPE.names:
            return self.head[name]
        if name in ENCODING_COUNTERS_DTYPE.names:
            return self.head["idx"][name]
        raise KeyError(f"no acquisition field {name!r}; have {ACQ_HEAD_DTYPE.names + ENCODING_COUNTERS_DTYPE.names}")

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.column(key)
        idx = np.arange(len(self))[key]
        return Acquisitions(self.head[idx], [self.data[i] for i in idx], [self.traj[i] for i in idx])

    def has_flag(self, bit: int) -> np.ndarray:
        """Boolean per acquisition: ISMRMRD flag ``bit`` (1-based, ``recon.io.mrd.ACQ_*``) set."""
        return (self.head["flags"] & np.uint64(flag(bit))) != 0

    def in_time_order(self) -> Acquisitions:
        """The acquisitions sorted by ``acquisition_time_stamp`` (stable: ties keep arrival order)."""
        return self[np.argsort(self.head["acquisition_time_stamp"], kind="stable")]

    def __eq__(self, other) -> bool:
        return (isinstance(other, Acquisitions) and len(self) == len(other) and _same_fields(self.head, other.head)
                and all(np.array_equal(a, b) for a, b in zip(self.data, other.data))
                and all(np.array_equal(a, b) for a, b in zip(self.traj, other.traj)))


def _same_fields(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal structured arrays, field by field (padding bytes ignored)."""
    if a.dtype.names != b.dtype.names:
        return False
    return all(_same_fields(a[n], b[n]) if a.dtype[n].names else np.array_equal(a[n], b[n]) for n in a.dtype.names)


class Waveforms:
    """Physiological waveforms (``/dataset/waveforms``, MRD WAVEFORM messages) in arrival order:
    ``head`` (structured, ``WAVEFORM_HEAD_DTYPE``: ``time_stamp``, ``waveform_id``,
    ``sample_time_us``, ...) and ``data`` (list of uint32 ``(channels, samples)``)."""

    def __init__(self, head: np.ndarray, data: list):
        if len(head) != len(data):
            raise ValueError(f"Waveforms: {len(head)} headers, {len(data)} data")
        self.head, self.data = head, data

    def __len__(self) -> int:
        return len(self.head)

    def select(self, waveform_id: int) -> Waveforms:
        """The waveforms with one id (``recon.io.mrd.WAVEFORM_RESPIRATORY``, ``WAVEFORM_ECG``, ...)."""
        idx = np.flatnonzero(self.head["waveform_id"] == waveform_id)
        return Waveforms(self.head[idx], [self.data[i] for i in idx])

    def __eq__(self, other) -> bool:
        return (isinstance(other, Waveforms) and len(self) == len(other) and _same_fields(self.head, other.head)
                and all(np.array_equal(a, b) for a, b in zip(self.data, other.data)))


# ---- the unit of reconstruction -------------------------------------------------------------------

@dataclass
class RawSlice:
    """One unit of reconstruction (a 2D slice or a 3D volume of one group).

    ``kspace``: Cartesian ``(coil, *im_shape)`` (zeros where not acquired) or non-Cartesian
    ``(coil, *sample_shape)`` with ``coord`` ``(*sample_shape, d)`` in cycles/FOV; ``index``: the
    group's counters (e.g. ``{"slice": 3, "repetition": 0, ...}``).
    """

    kspace: object
    coord: object
    im_shape: tuple
    index: dict = field(default_factory=dict)

    @property
    def cartesian(self) -> bool:
        return self.coord is None


def check_kspace_values(k, label) -> None:
    """ValueError (one line naming ``label``) for k-space that holds NaN/Inf or only zeros."""
    if not np.isfinite(k).all():
        raise ValueError(f"{label}: k-space contains NaN or Inf")
    if not np.any(k):
        raise ValueError(f"{label}: k-space is all zero")


class _FastMRISlices(Sequence):
    """The slices of a fastMRI file, each read (and checked) when asked for; the last ``KEEP`` are
    kept, so that memory holds a few slices, never the volume."""

    KEEP = 2

    def __init__(self, fastmri_file):
        self._f = fastmri_file
        self._cache = {}

    def __len__(self) -> int:
        return self._f.num_slices

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        i = self._f._check_slice(i) % len(self)
        if i not in self._cache:
            k = self._f.kspace_slice(i)
            if k.ndim == 2:  # singlecoil
                k = k[None]
            check_kspace_values(k, self._f.path)
            while len(self._cache) >= self.KEEP:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = RawSlice(np.ascontiguousarray(k), None, tuple(k.shape[1:]), {"slice": i})
        return self._cache[i]


# ---- raw data ------------------------------------------------------------------------------------

class RawData:
    """Raw data of one file or stream (see the module docstring). Header sizes are ISMRMRD's
    ``(x, y, z)``; ``image_shape`` and ``voxel_size_mm`` are recon's ``(z, y, x)``.

    ``source``: ``"ismrmrd"``, ``"stream"`` (both with ``acquisitions``) or ``"fastmri"`` (slices
    read lazily from ``fastmri``, a ``recon.io.FastMRIFile``).
    """

    dims = KSPACE_DIMS

    def __init__(self, header: IsmrmrdHeader, *, source: str = "ismrmrd", path=None,
                 acquisitions: Acquisitions | None = None, waveforms: Waveforms | None = None, encoding: int = 0,
                 trajectory_units: str = "auto", fastmri=None, max_bytes: int | None = None):
        if trajectory_units not in ("auto", "normalized", "cycles_per_fov"):
            raise ValueError(f"trajectory_units must be 'auto', 'normalized' or 'cycles_per_fov', got {trajectory_units!r}")
        self.header = header
        self.source = source
        self.path = None if path is None else os.fspath(path)
        self.acquisitions = acquisitions
        self.waveforms = waveforms
        self.encoding = int(encoding)
        self._units = trajectory_units
        self.fastmri = fastmri
        self.max_bytes = max_bytes
        self._v = None  # the ISMRMRD views, built once by _views()
        self._fastmri_slices = None

    @property
    def label(self) -> str:
        """How errors name this data: the file's path, or '<stream>'."""
        return self.path or f"<{self.source}>"

    def __repr__(self) -> str:
        n = len(self.acquisitions) if self.acquisitions is not None else self.fastmri.num_slices
        what = "acquisitions" if self.acquisitions is not None else "slices"
        return f"RawData({self.source}, {self.label}, {n} {what}, encoded matrix {self.header.encoded_matrix})"

    # -- header-derived ---------------------------------------------------------------------------

    @property
    def matrix_size(self) -> tuple[int, int, int]:
        """Encoded matrix (x, y, z)."""
        return self.header.encoded_matrix

    @property
    def recon_matrix(self) -> tuple[int, int, int]:
        return self.header.recon_matrix

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        """Encoded field of view (x, y, z) in mm."""
        return self.header.encoded_fov_mm

    @property
    def limits(self):
        return self.header.limits

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Encoded image shape in recon order: (y, x) when z == 1, else (z, y, x) (fastMRI: the
        k-space's (height, width))."""
        if self.fastmri is not None:
            return tuple(self.fastmri.kspace_shape[-2:])
        x, y, z = self.header.encoded_matrix
        return (y, x) if z == 1 else (z, y, x)

    @property
    def voxel_size_mm(self) -> tuple[float, ...]:
        """Voxel size (dz, dy, dx) in mm of the reconstructed images; for 2D, dz is the slice
        thickness (FOV z; 1 mm when a fastMRI header leaves it zero)."""
        (x, y, z), (fx, fy, fz) = self.header.encoded_matrix, self.header.encoded_fov_mm
        if self.fastmri is not None:
            h, w = self.image_shape  # image (H, W): H along ISMRMRD x (the readout)
            return (float(fz) if fz > 0 else 1.0, fx / h, fy / w)
        return (fz / z, fy / y, fx / x)

    @property
    def crop(self) -> tuple[int, int] | None:
        """In-plane (y, x) centre crop of the images to the header's recon matrix (readout
        oversampling), or None."""
        rx, ry, _ = self.header.recon_matrix
        if self.fastmri is not None:
            h, w = self.image_shape
            return (min(rx, h), min(ry, w)) if (rx < h or ry < w) and rx > 0 and ry > 0 else None
        ish = self.slices[0].im_shape
        if 0 < rx < ish[-1] or 0 < ry < ish[-2]:
            return (min(ry, ish[-2]) if ry > 0 else ish[-2], min(rx, ish[-1]) if rx > 0 else ish[-1])
        return None

    # -- views ------------------------------------------------------------------------------------

    @property
    def slices(self) -> Sequence:
        """The units of reconstruction (``RawSlice``; see the module docstring)."""
        if self.fastmri is not None:
            if self._fastmri_slices is None:
                self._fastmri_slices = _FastMRISlices(self.fastmri)
            return self._fastmri_slices
        v = self._views()
        if v["slices"] is None:
            v["slices"] = _cartesian_slices(v, self) if v["kspace"] is not None else _noncartesian_slices(v, self)
        return v["slices"]

    def reference(self, index: int):
        """fastMRI: the target (``reconstruction_rss``/``_esc``) of slice ``index``, or None."""
        return self.fastmri.target_slice(index) if self.fastmri is not None else None

    def __getattr__(self, name):
        # the ISMRMRD views (kspace, mask, calibration, samples, trajectory, counters, noise, ...)
        if name.startswith("_") or name not in _VIEW_NAMES:
            raise AttributeError(f"RawData has no attribute {name!r}")
        if self.acquisitions is None:
            return None
        return self._views()[name]

    @property
    def is_cartesian(self) -> bool:
        return self.fastmri is not None or self.kspace is not None

    @property
    def cartesian(self) -> bool:
        return self.is_cartesian

    @property
    def noise_scale(self) -> float:
        """Noise-to-data bandwidth ratio ``noise_dwell / data_dwell`` for prewhitening (1 when unknown)."""
        if self.noise is not None and self.noise_dwell_time_us and self.dwell_time_us:
            return float(self.noise_dwell_time_us) / float(self.dwell_time_us)
        return 1.0

    @property
    def num_slices(self) -> int:
        """Number of slice counter values (fastMRI: slices)."""
        if self.fastmri is not None:
            return self.fastmri.num_slices
        if self.kspace is not None:
            return int(self.kspace.shape[KSPACE_DIMS.index("slice")])
        return int(self.counters["slice"].max()) + 1 if self.counters else 0

    def slice_kspace(self, slice_index: int = 0, *, repetition=0, contrast=0, phase=0, set=0,
                     average=None) -> np.ndarray:
        """Cartesian k-space of one slice: ``(coil, kz, ky, kx)``.

        ``average=None`` averages over the average counter, each line over the averages in which it
        was acquired (unacquired lines stay zero); an int picks one average.
        """
        if self.kspace is None:
            raise ValueError("slice_kspace: this data is non-Cartesian; use slice_samples")
        sel = (repetition, contrast, phase, set)
        k = self.kspace[sel]  # (average, slice, coil, kz, ky, kx)
        m = self.mask[sel]  # (average, slice, kz, ky)
        if average is not None:
            return k[average, slice_index]
        k, m = k[:, slice_index], m[:, slice_index]
        cnt = m.sum(axis=0)
        return (k.sum(axis=0) / np.maximum(cnt, 1)[None, ..., None]).astype(np.complex64)

    def kspace_by_slice(self, *, repetition=0, contrast=0, phase=0, set=0, average=None) -> np.ndarray:
        """All slices of ``slice_kspace`` stacked: ``(slice, coil, kz, ky, kx)``."""
        return np.stack([self.slice_kspace(s, repetition=repetition, contrast=contrast, phase=phase, set=set,
                                           average=average) for s in range(self.num_slices)])

    def slice_samples(self, slice_index: int = 0, **counters) -> tuple[np.ndarray, np.ndarray]:
        """Non-Cartesian data of one slice: samples ``(coil, acq, readout)``, trajectory ``(acq, readout, d)``.

        Further keyword filters select other counters (e.g. ``repetition=1``); acquisitions keep
        arrival order.
        """
        if self.samples is None:
            raise ValueError("slice_samples: this data is Cartesian; use slice_kspace or kspace")
        sel = self.counters["slice"] == slice_index
        for name, v in counters.items():
            if name not in self.counters:
                raise ValueError(f"unknown counter {name!r}; have {sorted(self.counters)}")
            sel &= self.counters[name] == v
        return np.ascontiguousarray(self.samples[sel].transpose(1, 0, 2)), self.trajectory[sel]

    def _views(self) -> dict:
        if self._v is None:
            self._v = _ismrmrd_views(self)
        return self._v


_VIEW_NAMES = ("kspace", "mask", "calibration", "samples", "trajectory", "counters", "noise", "noise_dwell_time_us",
               "dwell_time_us", "slice_geometry", "trajectory_units", "trajectory_type", "imaging")


# ---- views of an ISMRMRD acquisition table --------------------------------------------------------

def _ismrmrd_views(raw: RawData) -> dict:
    """Every view of ``raw`` (see the module docstring); IsmrmrdFormatError for unusable data."""
    acq, label, header = raw.acquisitions, raw.label, raw.header
    v = dict.fromkeys(_VIEW_NAMES + ("slices",))
    v["trajectory_type"] = header.trajectory
    v["slice_geometry"] = {}
    if len(acq) == 0:
        raise IsmrmrdFormatError(f"{label}: no acquisitions")
    is_noise = acq.has_flag(ACQ_IS_NOISE_MEASUREMENT)
    skip = np.zeros(len(acq), dtype=bool)
    for b in NON_IMAGING_BITS:
        skip |= acq.has_flag(b)
    is_calib = acq.has_flag(ACQ_IS_PARALLEL_CALIBRATION) & ~acq.has_flag(ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    use = ~is_noise & ~skip & (acq.head["encoding_space_ref"] == raw.encoding)
    v["imaging"] = use
    if is_noise.any():
        rows = [acq.data[i] for i in np.flatnonzero(is_noise)]
        if len({r.shape[0] for r in rows}) != 1:
            raise IsmrmrdFormatError(f"{label}: noise acquisitions have differing channel counts")
        v["noise"] = np.concatenate(rows, axis=1)
        v["noise_dwell_time_us"] = float(acq.head["sample_time_us"][is_noise][0])
    if not use.any():
        raise IsmrmrdFormatError(f"{label}: no imaging acquisitions for encoding {raw.encoding}")
    idx = np.flatnonzero(use)
    h = acq.head[idx]
    pre, post = h["discard_pre"].astype(int), h["discard_post"].astype(int)
    ns = h["number_of_samples"].astype(int)
    if np.any(pre + post >= np.maximum(ns, 1)):
        raise IsmrmrdFormatError(f"{label}: discard_pre + discard_post >= number_of_samples")
    rows = [acq.data[i][:, a:n - b] for i, a, n, b in zip(idx, pre, ns, post)]
    v["dwell_time_us"] = float(h["sample_time_us"][0])
    counters = {name: h["idx"][name].astype(np.int64) for name in COUNTER_NAMES}
    v["counters"] = counters
    for s in np.unique(counters["slice"]):
        first = np.flatnonzero(counters["slice"] == s)[0]
        v["slice_geometry"][int(s)] = {k: h[k][first].astype(float) for k in ("position", "read_dir", "phase_dir",
                                                                              "slice_dir")}
    tdim = h["trajectory_dimensions"].astype(int)
    if np.any(tdim > 0):
        trajs = [acq.traj[i] for i in idx]
        _noncartesian(v, raw, trajs, rows, tdim, pre, ns, post)
    else:
        _cartesian(v, raw, rows, h, is_calib[idx], acq.has_flag(ACQ_IS_REVERSE)[idx])
    return v


def _noncartesian(v, raw, trajs, rows, tdim, pre, ns, post):
    label, header = raw.label, raw.header
    if len(set(tdim.tolist())) != 1 or tdim[0] not in (2, 3):
        raise IsmrmrdFormatError(f"{label}: trajectory_dimensions must be 2 or 3 and equal for all acquisitions, "
                                 f"got {sorted(set(tdim.tolist()))}")
    shapes = {r.shape for r in rows}
    if len(shapes) != 1:
        raise IsmrmrdFormatError(f"{label}: non-Cartesian acquisitions of differing (channels, samples) "
                                 f"{sorted(shapes)} are not supported")
    d = int(tdim[0])
    traj = np.stack([t[a:n - b] for t, a, n, b in zip(trajs, pre, ns, post)])  # (A, N, d), ISMRMRD (kx, ky, kz)
    if not np.all(np.isfinite(traj)):
        raise IsmrmrdFormatError(f"{label}: the trajectory contains NaN or Inf")
    units = raw._units
    if units == "auto":
        declared = header.trajectory_params.get("trajectory_units")
        if declared in ("normalized", "cycles_per_fov"):
            units = declared
        else:
            units = "normalized" if np.abs(traj).max() <= 0.5 + 1e-4 else "cycles_per_fov"
    if units == "normalized":
        traj = traj * np.asarray(header.encoded_matrix[:d], dtype=np.float32)
    v["trajectory_units"] = units
    v["trajectory"] = np.ascontiguousarray(traj[..., ::-1])
    v["samples"] = np.stack(rows)
    if v["trajectory_type"] == "cartesian":
        v["trajectory_type"] = "other"


def _groups(counters):
    """Distinct (GROUP_DIMS) counter combinations in lexicographic order, and each row's group."""
    keys = np.stack([counters[n] for n in GROUP_DIMS], axis=1)
    return np.unique(keys, axis=0, return_inverse=True)


def _noncartesian_slices(v, raw):
    label = raw.label
    im_shape = tuple(raw.image_shape)
    half = np.asarray(im_shape, dtype=np.float32) / 2
    if v["trajectory"].shape[-1] != len(im_shape):
        raise IsmrmrdFormatError(f"{label}: {v['trajectory'].shape[-1]}-D trajectory for a {len(im_shape)}-D "
                                 f"matrix {im_shape}")
    keys, inverse = _groups(v["counters"])
    out = []
    for g, key in enumerate(keys):
        sel = inverse.reshape(-1) == g
        smp = np.ascontiguousarray(v["samples"][sel].transpose(1, 0, 2))
        traj = v["trajectory"][sel]
        check_kspace_values(smp, label)
        if (np.abs(traj) > half * 1.001).any():
            raise IsmrmrdFormatError(f"{label}: trajectory exceeds the encoded matrix (|k| > N/2 cycles/FOV)")
        out.append(RawSlice(smp, np.clip(traj, -half, half), im_shape, dict(zip(GROUP_DIMS, map(int, key)))))
    return out


def _placement(n_enc, steps, lim, what, label):
    """Shift of encode counters onto the matrix (fastMRI's padding rule) and the axis size."""
    steps = np.asarray(steps)
    size = max(int(n_enc), 1)
    if lim is not None:
        shift = size // 2 - lim.center
        if steps.min() + shift >= 0 and steps.max() + shift < size:
            return shift, size
        warnings.warn(f"{label}: {what} counters do not fit encodingLimits centre {lim.center} in {size}; placing them "
                      "unshifted", stacklevel=4)
    return 0, max(size, int(steps.max()) + 1)


def _cartesian(v, raw, rows, h, is_calib, is_reverse):
    label, header = raw.label, raw.header
    counters = v["counters"]
    nch = {r.shape[0] for r in rows}
    if len(nch) != 1:
        raise IsmrmrdFormatError(f"{label}: Cartesian acquisitions have differing channel counts {sorted(nch)}")
    nc = nch.pop()
    enc_x, enc_y, enc_z = header.encoded_matrix
    lims = header.limits
    sy, ny = _placement(enc_y, counters["kspace_encode_step_1"], lims.get("kspace_encoding_step_1"),
                        "kspace_encode_step_1", label)
    sz, nz = _placement(enc_z, counters["kspace_encode_step_2"], lims.get("kspace_encoding_step_2"),
                        "kspace_encode_step_2", label)
    n_read = np.array([r.shape[1] for r in rows])
    center = h["center_sample"].astype(int) - h["discard_pre"].astype(int)
    start = np.where(center > 0, enc_x // 2 - center, 0)
    nx = max(enc_x, 1)
    if np.any(start < 0) or np.any(start + n_read > nx):
        warnings.warn(f"{label}: readouts do not fit encodedSpace x = {enc_x} at their centre_sample; placing them at 0",
                      stacklevel=3)
        start = np.zeros_like(start)
        nx = max(nx, int(n_read.max()))
    sizes = []
    for name in COUNTER_DIMS:
        lim = lims.get(name)
        sizes.append(max(int(counters[name].max()) + 1, (lim.maximum + 1) if lim is not None else 1))
    lead = tuple(sizes)
    shape = lead + (nc, nz, ny, nx)
    total = nbytes_of(shape, 1)
    acquired = sum(r.size for r in rows)
    what = f"{label}: counters/encoding limits imply a k-space of {shape} for {len(rows)} acquisitions"
    if total > 2**26 and acquired * 256 < total:
        raise IsmrmrdFormatError(f"{what} (corrupt counters?)")
    # the k-space, its coil-axis copy, and the calibration lines when present
    check_read_size(total * 8 * (3 if is_calib.any() else 2), what, max_bytes=raw.max_bytes, error=IsmrmrdFormatError)
    ky = counters["kspace_encode_step_1"] + sy
    kz = counters["kspace_encode_step_2"] + sz
    for target_sel, attr in ((~is_calib, "kspace"), (is_calib, "calibration")):
        if not target_sel.any():
            continue
        k = np.zeros(lead + (nz, ny, nc, nx), dtype=np.complex64)  # coil moved into place at the end
        m = np.zeros(lead + (nz, ny), dtype=bool)
        for i in np.flatnonzero(target_sel):
            r = rows[i][:, ::-1] if is_reverse[i] else rows[i]
            key = tuple(int(counters[name][i]) for name in COUNTER_DIMS) + (int(kz[i]), int(ky[i]))
            k[key + (slice(None), slice(int(start[i]), int(start[i]) + r.shape[1]))] = r
            m[key] = True
        v[attr] = np.ascontiguousarray(np.moveaxis(k, -2, len(lead)))
        if attr == "kspace":
            v["mask"] = m
    if v["kspace"] is None:
        raise IsmrmrdFormatError(f"{label}: only calibration acquisitions, no imaging data")


def _cartesian_slices(v, raw):
    """One RawSlice per (repetition, contrast, phase, set, slice) holding any line, averages combined."""
    present = v["mask"].any(axis=(4, 6, 7))  # (repetition, contrast, phase, set, slice)
    out = []
    for key in np.argwhere(present):
        rep, con, pha, st, s = (int(x) for x in key)
        k = raw.slice_kspace(s, repetition=rep, contrast=con, phase=pha, set=st)  # (coil, kz, ky, kx)
        if k.shape[1] == 1:
            k = k[:, 0]
        check_kspace_values(k, raw.label)
        out.append(RawSlice(np.ascontiguousarray(k), None, tuple(k.shape[1:]), dict(zip(GROUP_DIMS, (rep, con, pha, st, s)))))
    return out


# ---- the decoder: files and streams ----------------------------------------------------------------

class AcquisitionDecoder:
    """Builds a ``RawData`` from acquisitions as they come: one at a time (``add``, a stream),
    in blocks (``add_many``, a file), or as MRD v1 bytes (``add_bytes``); waveforms likewise.

    ``header``: the ISMRMRD XML (str/bytes) or a parsed ``IsmrmrdHeader``. Every acquisition is
    checked as it is added (data and trajectory lengths against its header); the total held is
    bounded by ``max_bytes`` (``recon.io.limits``). ``finish()`` returns the ``RawData`` with its
    views built (raising ``IsmrmrdFormatError`` for unusable data). ``path`` names the source in
    error messages (``<stream>`` when None).
    """

    def __init__(self, header, *, encoding: int = 0, trajectory_units: str = "auto", path=None,
                 source: str | None = None, max_bytes: int | None = None):
        self.label = os.fspath(path) if path is not None else "<stream>"
        if not isinstance(header, IsmrmrdHeader):
            try:
                header = parse_ismrmrd_header(header, encoding=encoding)
            except HeaderError as exc:
                raise IsmrmrdFormatError(f"{self.label}: {exc}") from None
        self.header = header
        self._kw = dict(source=source or ("ismrmrd" if path is not None else "stream"), path=path, encoding=encoding,
                        trajectory_units=trajectory_units, max_bytes=max_bytes)
        self._limit = max_read_bytes() if max_bytes is None else int(max_bytes)
        self._heads, self._data, self._traj = [], [], []
        self._wheads, self._wdata = [], []
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def _reserve(self, nbytes: int, what: str):
        self._nbytes += int(nbytes)
        check_read_size(self._nbytes, f"{self.label}: {what}", max_bytes=self._limit, error=IsmrmrdFormatError)

    def add_many(self, heads, trajs, datas) -> None:
        """A block of acquisitions: ``heads`` (structured, any ACQ_HEAD-compatible layout, or bytes),
        ``trajs`` / ``datas`` sequences of float32 arrays (trajectory ``samples x d``; data as
        interleaved float32 or complex64 ``channels x samples``)."""
        try:
            h = as_header_array(heads)
        except (TypeError, ValueError) as exc:
            raise IsmrmrdFormatError(f"{self.label}: acquisition headers: {exc}") from None
        if not (len(h) == len(trajs) == len(datas)):
            raise IsmrmrdFormatError(f"{self.label}: {len(h)} headers, {len(trajs)} trajectories, {len(datas)} data")
        ns = h["number_of_samples"].astype(np.int64)
        nc = h["active_channels"].astype(np.int64)
        td = h["trajectory_dimensions"].astype(np.int64)
        first = len(self._data)
        self._reserve(int(np.sum(8 * ns * nc + 4 * ns * td)) + h.nbytes, f"{len(self) + len(h)} acquisitions")
        data, traj = [], []
        for i, (d, t) in enumerate(zip(datas, trajs)):
            d = np.asarray(d)
            d = d.view(np.float32) if d.dtype == np.complex64 else np.asarray(d, dtype=np.float32)
            if d.size != 2 * nc[i] * ns[i]:
                raise IsmrmrdFormatError(f"{self.label}: acquisition {first + i} holds {d.size} floats, header says "
                                         f"{nc[i]} channels x {ns[i]} samples x 2")
            t = np.asarray(t, dtype=np.float32)
            if t.size != ns[i] * td[i]:
                raise IsmrmrdFormatError(f"{self.label}: acquisition {first + i} trajectory holds {t.size} floats, "
                                         f"expected {ns[i]} x {td[i]}")
            data.append(d.reshape(-1).view(np.complex64).reshape(int(nc[i]), int(ns[i])))
            traj.append(t.reshape(int(ns[i]), int(td[i])))
        self._heads.append(h)
        self._data += data
        self._traj += traj

    def add(self, head, traj=None, data=None) -> None:
        """One acquisition: ``head`` (340 bytes or a structured header), ``traj`` (``samples x d``
        float32; None when d = 0) and ``data`` (``channels x samples`` complex64)."""
        self.add_many(head, [np.zeros(0, np.float32) if traj is None else traj],
                      [np.zeros(0, np.float32) if data is None else data])

    def add_bytes(self, buf) -> int:
        """One acquisition in MRD v1 layout (the body of an ACQUISITION message, after its id) at
        the start of ``buf``; returns the number of bytes it used."""
        try:
            head, traj, data, n = acquisition_from_bytes(buf)
        except ValueError as exc:
            raise IsmrmrdFormatError(f"{self.label}: {exc}") from None
        self.add(head, traj, data)
        return n

    def add_waveforms_many(self, heads, datas) -> None:
        """A block of waveforms: headers (WAVEFORM_HEAD-compatible) and uint32 data arrays."""
        try:
            h = as_header_array(heads, WAVEFORM_HEAD_DTYPE)
        except (TypeError, ValueError) as exc:
            raise IsmrmrdFormatError(f"{self.label}: waveform headers: {exc}") from None
        if len(h) != len(datas):
            raise IsmrmrdFormatError(f"{self.label}: {len(h)} waveform headers, {len(datas)} data")
        ns, nc = h["number_of_samples"].astype(np.int64), h["channels"].astype(np.int64)
        self._reserve(int(np.sum(4 * ns * nc)) + h.nbytes, f"{len(self._wdata) + len(h)} waveforms")
        out = []
        for i, d in enumerate(datas):
            d = np.asarray(d, dtype=np.uint32)
            if d.size != ns[i] * nc[i]:
                raise IsmrmrdFormatError(f"{self.label}: waveform {len(self._wdata) + i} holds {d.size} values, header "
                                         f"says {nc[i]} channels x {ns[i]} samples")
            out.append(d.reshape(int(nc[i]), int(ns[i])))
        self._wheads.append(h)
        self._wdata += out

    def add_waveform(self, head, data=None) -> None:
        """One waveform: header (40 bytes or structured) and ``(channels, samples)`` uint32."""
        self.add_waveforms_many(head, [np.zeros(0, np.uint32) if data is None else data])

    def add_waveform_bytes(self, buf) -> int:
        """One waveform in MRD v1 layout at the start of ``buf``; returns the bytes used."""
        try:
            head, data, n = waveform_from_bytes(buf)
        except ValueError as exc:
            raise IsmrmrdFormatError(f"{self.label}: {exc}") from None
        self.add_waveform(head, data)
        return n

    def finish(self, *, views: bool = True) -> RawData:
        """The ``RawData`` of everything added; its views are built (and checked) unless ``views=False``."""
        head = np.concatenate(self._heads) if self._heads else np.zeros(0, ACQ_HEAD_DTYPE)
        wav = None
        if self._wheads:
            wav = Waveforms(np.concatenate(self._wheads), list(self._wdata))
        raw = RawData(self.header, acquisitions=Acquisitions(head, list(self._data), list(self._traj)), waveforms=wav,
                      **self._kw)
        if views:
            raw._views()
        return raw


# ---- files ----------------------------------------------------------------------------------------

def detect_format(path) -> str:
    """'fastmri', 'ismrmrd' or 'mrd-stream' (a recorded MRD v1 stream, ``recon.io.mrd_stream``) from a
    file's content, never its name; ValueError otherwise (one line)."""
    from .files import check_input_file, first_line
    from .hdf5 import member, open_h5
    from .mrd_stream import is_mrd_stream

    path = check_input_file(path)
    with open(path, "rb") as f:
        magic = f.read(8)
    if is_mrd_stream(magic):
        return "mrd-stream"
    if magic != b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{path}: not an HDF5 file (expected fastMRI or ISMRMRD HDF5 raw data, or a recorded MRD "
                         "stream)")
    with open_h5(path, ValueError) as hf:
        try:
            keys = set(hf.keys())
            if "kspace" in keys:
                return "fastmri"
            for k in ["dataset"] + sorted(keys - {"dataset"}):  # ISMRMRD files may name their group differently
                g = member(hf, k, ValueError, path) if k in keys else None
                if hasattr(g, "keys") and "data" in g and ("xml" in g or k == "dataset"):
                    return "ismrmrd"
        except (OSError, RuntimeError, KeyError) as exc:
            raise ValueError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}") from None
    raise ValueError(f"{path}: HDF5 file is neither fastMRI (no 'kspace') nor ISMRMRD (no '/dataset/data'); "
                     f"has {sorted(keys)}")


def read_raw(path, *, max_bytes: int | None = None, **kw) -> RawData:
    """Raw data of a fastMRI or ISMRMRD file or a recorded MRD stream (format detected from the
    content). fastMRI slices are read when first used; ISMRMRD files and streams are read whole
    (``recon.io.read_ismrmrd`` / ``recon.io.mrd_stream.read_mrd_stream``, ``kw``)."""
    from .fastmri import FastMRIFile
    from .ismrmrd import read_ismrmrd
    from .mrd_stream import read_mrd_stream

    fmt = detect_format(path)
    if fmt == "mrd-stream":
        return read_mrd_stream(path, max_bytes=max_bytes, **kw)
    if fmt == "fastmri":
        f = FastMRIFile(path, max_bytes=max_bytes)
        return RawData(f.header, source="fastmri", path=path, fastmri=f, max_bytes=max_bytes)
    return read_ismrmrd(path, max_bytes=max_bytes, **kw)
