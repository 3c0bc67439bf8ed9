"""ISMRMRD v1 HDF5 raw data: reading into k-space arrays / sample lists, and writing.

File layout (ISMRMRD v1, as written by the C library and the ``ismrmrd`` Python package):
``/dataset/xml`` is a (1,) variable-length string dataset with the XML header, ``/dataset/data`` a
1-D compound dataset, one element per acquisition, with fields ``head`` (the fixed
AcquisitionHeader, ``ACQ_HEAD_DTYPE`` below), ``traj`` (vlen float32: ``number_of_samples x
trajectory_dimensions``, sample-major) and ``data`` (vlen float32: interleaved real/imag of
``active_channels x number_of_samples`` complex samples, channel-major).

We read and write that compound dataset with h5py directly, vectorised (one HDF5 read for all
acquisitions) rather than through ``ismrmrd.Dataset.read_acquisition`` one Python object at a time;
the tests check both directions against the ``ismrmrd`` package.

Conventions of the arrays returned (recon's, see ``recon.conventions``):

- Cartesian ``kspace``: complex64 with axes ``KSPACE_DIMS = (repetition, contrast, phase, set,
  average, slice, coil, kz, ky, kx)``: kx the readout (``encodedSpace/matrixSize/x`` samples),
  ky the first (``y``) and kz the second (``z``) phase-encode direction. An acquisition with
  counters ``kspace_encode_step_1 = e1`` lands on ``ky = e1 + enc_y // 2 - limits.step_1.center``
  (fastMRI's ``padding_left``; same for kz with step_2) when the header has encodingLimits and the
  result fits, otherwise on ``ky = e1``. Its samples (after discard_pre/discard_post) start at
  ``kx = enc_x // 2 - center_sample`` when ``center_sample > 0`` (asymmetric echoes land
  centred), otherwise at 0. ``ACQ_IS_REVERSE`` readouts are flipped. ``mask`` marks acquired lines.
  Acquisitions flagged ``ACQ_IS_PARALLEL_CALIBRATION`` (calibration only) go to ``calibration``
  (same layout), not ``kspace``; navigator, phase-correction, dummy, feedback, phase-stabilisation
  and surface-coil-correction data are skipped.
- Non-Cartesian ``samples``: complex64 ``(acquisitions, coil, readout)`` and ``trajectory``
  float32 ``(acquisitions, readout, d)`` in cycles per field of view, the last axis in image-axis
  order ``(ky, kx)`` / ``(kz, ky, kx)`` (ISMRMRD stores ``(kx, ky[, kz])``, so the axis is
  reversed). ISMRMRD does not fix the trajectory's unit. Files written by recon say so in
  ``trajectoryDescription`` (userParameterString ``trajectory_units``: ``normalized`` or
  ``cycles_per_fov``). Otherwise ``trajectory_units="auto"`` takes ``max |k| <= 0.5`` as
  normalised units (Gadgetron's convention: +-0.5 is the edge of k-space of the encoded matrix),
  anything larger as cycles/FOV already. Normalised coordinates are multiplied by the encoded
  matrix size of their axis (``encodedSpace/matrixSize`` x, y, z).
- ``noise``: complex64 ``(coil, samples)``: all ``ACQ_IS_NOISE_MEASUREMENT`` acquisitions
  concatenated along samples, for prewhitening (``noise_dwell_time_us`` / ``dwell_time_us`` give
  the bandwidth ratio).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .hdf5 import corrupt_guard, member, open_h5, write_hdf5
from .ismrmrd_header import HeaderError, IsmrmrdHeader, build_ismrmrd_header, parse_ismrmrd_header
from .limits import check_read_size, nbytes_of

# ---- ISMRMRD v1 binary layout -------------------------------------------------------------------
ENCODING_COUNTERS_DTYPE = np.dtype([
    ("kspace_encode_step_1", "<u2"), ("kspace_encode_step_2", "<u2"), ("average", "<u2"), ("slice", "<u2"),
    ("contrast", "<u2"), ("phase", "<u2"), ("repetition", "<u2"), ("set", "<u2"), ("segment", "<u2"),
    ("user", "<u2", (8,)),
])
ACQ_HEAD_DTYPE = np.dtype([
    ("version", "<u2"), ("flags", "<u8"), ("measurement_uid", "<u4"), ("scan_counter", "<u4"),
    ("acquisition_time_stamp", "<u4"), ("physiology_time_stamp", "<u4", (3,)), ("number_of_samples", "<u2"),
    ("available_channels", "<u2"), ("active_channels", "<u2"), ("channel_mask", "<u8", (16,)),
    ("discard_pre", "<u2"), ("discard_post", "<u2"), ("center_sample", "<u2"), ("encoding_space_ref", "<u2"),
    ("trajectory_dimensions", "<u2"), ("sample_time_us", "<f4"), ("position", "<f4", (3,)),
    ("read_dir", "<f4", (3,)), ("phase_dir", "<f4", (3,)), ("slice_dir", "<f4", (3,)),
    ("patient_table_position", "<f4", (3,)), ("idx", ENCODING_COUNTERS_DTYPE), ("user_int", "<i4", (8,)),
    ("user_float", "<f4", (8,)),
])
ISMRMRD_VERSION = 1


def _acq_dtype():
    import h5py

    vlen = h5py.vlen_dtype(np.dtype("float32"))
    return np.dtype([("head", ACQ_HEAD_DTYPE), ("traj", vlen), ("data", vlen)])


def flag(bit: int) -> int:
    """Bit mask of ISMRMRD acquisition flag number ``bit`` (1-based, as in the standard)."""
    return 1 << (bit - 1)


ACQ_FIRST_IN_SLICE = 7
ACQ_LAST_IN_SLICE = 8
ACQ_IS_NOISE_MEASUREMENT = 19
ACQ_IS_PARALLEL_CALIBRATION = 20
ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING = 21
ACQ_IS_REVERSE = 22
ACQ_IS_NAVIGATION_DATA = 23
ACQ_IS_PHASECORR_DATA = 24
ACQ_LAST_IN_MEASUREMENT = 25
ACQ_IS_HPFEEDBACK_DATA = 26
ACQ_IS_DUMMYSCAN_DATA = 27
ACQ_IS_RTFEEDBACK_DATA = 28
ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA = 29
ACQ_IS_PHASE_STABILIZATION_REFERENCE = 30
ACQ_IS_PHASE_STABILIZATION = 31
_SKIP_BITS = (ACQ_IS_NAVIGATION_DATA, ACQ_IS_PHASECORR_DATA, ACQ_IS_HPFEEDBACK_DATA, ACQ_IS_DUMMYSCAN_DATA,
              ACQ_IS_RTFEEDBACK_DATA, ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
              ACQ_IS_PHASE_STABILIZATION_REFERENCE, ACQ_IS_PHASE_STABILIZATION)

COUNTER_DIMS = ("repetition", "contrast", "phase", "set", "average", "slice")
KSPACE_DIMS = COUNTER_DIMS + ("coil", "kz", "ky", "kx")
_LIMIT_OF = {"repetition": "repetition", "contrast": "contrast", "phase": "phase", "set": "set",
             "average": "average", "slice": "slice"}


class IsmrmrdFormatError(ValueError):
    """An ISMRMRD file is truncated, corrupt, or lacks/mislabels the ISMRMRD datasets (one-line message)."""


@dataclass
class IsmrmrdData:
    """Raw data of one ISMRMRD file (one encoding). See the module docstring for axes and units.

    Cartesian files fill ``kspace``/``mask`` (and ``calibration`` when present); non-Cartesian files
    fill ``samples``/``trajectory``/``counters``. Header fields use ISMRMRD's (x, y, z) order;
    ``image_shape`` and ``voxel_size_mm`` are in recon's (z, y, x) order.
    """

    path: str
    header: IsmrmrdHeader
    trajectory_type: str
    kspace: np.ndarray | None = None
    mask: np.ndarray | None = None
    calibration: np.ndarray | None = None
    samples: np.ndarray | None = None
    trajectory: np.ndarray | None = None
    counters: dict = field(default_factory=dict)
    noise: np.ndarray | None = None
    noise_dwell_time_us: float | None = None
    dwell_time_us: float | None = None
    slice_geometry: dict = field(default_factory=dict)
    trajectory_units: str | None = None

    dims = KSPACE_DIMS

    @property
    def is_cartesian(self) -> bool:
        return self.kspace is not None

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
    def num_slices(self) -> int:
        if self.kspace is not None:
            return int(self.kspace.shape[KSPACE_DIMS.index("slice")])
        return int(self.counters["slice"].max()) + 1 if self.counters else 0

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Encoded image shape in recon order: (y, x) when z == 1, else (z, y, x)."""
        x, y, z = self.header.encoded_matrix
        return (y, x) if z == 1 else (z, y, x)

    @property
    def voxel_size_mm(self) -> tuple[float, ...]:
        """Encoded voxel size in recon order; for 2D, z is the slice thickness (FOV z)."""
        (x, y, z), (fx, fy, fz) = self.header.encoded_matrix, self.header.encoded_fov_mm
        return (fz / z, fy / y, fx / x)

    def slice_kspace(self, slice_index: int = 0, *, repetition=0, contrast=0, phase=0, set=0,
                     average=None) -> np.ndarray:
        """Cartesian k-space of one slice: ``(coil, kz, ky, kx)``.

        ``average=None`` averages over the average counter, each line over the averages in which it
        was acquired (unacquired lines stay zero); an int picks one average.
        """
        if self.kspace is None:
            raise ValueError("slice_kspace: this file is non-Cartesian; use slice_samples")
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
        file order.
        """
        if self.samples is None:
            raise ValueError("slice_samples: this file is Cartesian; use slice_kspace or kspace")
        sel = self.counters["slice"] == slice_index
        for name, v in counters.items():
            if name not in self.counters:
                raise ValueError(f"unknown counter {name!r}; have {sorted(self.counters)}")
            sel &= self.counters[name] == v
        return np.ascontiguousarray(self.samples[sel].transpose(1, 0, 2)), self.trajectory[sel]


# ---- reading -------------------------------------------------------------------------------------

def _complex_rows(raw_data, nch, ns, path):
    out = []
    for i, (d, c, n) in enumerate(zip(raw_data, nch, ns)):
        d = np.asarray(d, dtype=np.float32)
        if d.size != 2 * int(c) * int(n):
            raise IsmrmrdFormatError(
                f"{path}: acquisition {i} holds {d.size} floats, header says {c} channels x {n} samples x 2"
            )
        out.append(d.view(np.complex64).reshape(int(c), int(n)))
    return out


def read_ismrmrd(path, *, dataset: str = "dataset", encoding: int = 0,
                 trajectory_units: str = "auto") -> IsmrmrdData:
    """Read an ISMRMRD v1 HDF5 file into an ``IsmrmrdData`` (see the module docstring).

    ``trajectory_units``: ``"auto"`` (header's declaration, else the +-0.5 rule), ``"normalized"``
    or ``"cycles_per_fov"``. Raises ``FileNotFoundError``, or ``IsmrmrdFormatError`` (ValueError)
    for truncated, corrupt or non-ISMRMRD files.
    """
    if trajectory_units not in ("auto", "normalized", "cycles_per_fov"):
        raise ValueError(f"trajectory_units must be 'auto', 'normalized' or 'cycles_per_fov', got {trajectory_units!r}")
    path = os.fspath(path)
    with corrupt_guard(path, IsmrmrdFormatError, "reading"), open_h5(path, IsmrmrdFormatError) as hf:
        grp = member(hf, dataset, IsmrmrdFormatError, path)
        if grp is None:
            raise IsmrmrdFormatError(f"{path}: no '/{dataset}' group (not an ISMRMRD file); has {sorted(hf.keys())}")
        parts = {}
        for name in ("xml", "data"):
            parts[name] = member(grp, name, IsmrmrdFormatError, path) if hasattr(grp, "keys") else None
            if parts[name] is None or not hasattr(parts[name], "dtype"):
                raise IsmrmrdFormatError(f"{path}: no '/{dataset}/{name}' dataset (not an ISMRMRD file)")
        try:
            xml = parts["xml"][0] if parts["xml"].shape else parts["xml"][()]
            header = parse_ismrmrd_header(xml, encoding=encoding)
        except HeaderError as exc:
            raise IsmrmrdFormatError(f"{path}: {exc}") from None
        except (OSError, RuntimeError, IndexError, ValueError) as exc:
            raise IsmrmrdFormatError(f"{path}: cannot read '/{dataset}/xml': {str(exc).splitlines()[0]}") from None
        ds = parts["data"]
        names = ds.dtype.names or ()
        if not {"head", "data", "traj"} <= set(names) or ds.ndim != 1:
            raise IsmrmrdFormatError(
                f"{path}: '/{dataset}/data' is not an ISMRMRD acquisition table (fields {names}, shape {ds.shape})"
            )
        missing = set(ACQ_HEAD_DTYPE.names) - set(ds.dtype["head"].names or ())
        if missing:
            raise IsmrmrdFormatError(f"{path}: acquisition header lacks fields {sorted(missing)}")
        try:
            raw = ds[()]
        except (OSError, RuntimeError) as exc:
            raise IsmrmrdFormatError(
                f"{path}: cannot read acquisitions (truncated or corrupt?): {str(exc).splitlines()[0]}"
            ) from None
    if raw.size == 0:
        raise IsmrmrdFormatError(f"{path}: no acquisitions")
    head = raw["head"]
    flags = head["flags"].astype(np.uint64)

    def has(bit):
        return (flags & np.uint64(flag(bit))) != 0

    is_noise = has(ACQ_IS_NOISE_MEASUREMENT)
    skip = np.zeros(raw.size, dtype=bool)
    for b in _SKIP_BITS:
        skip |= has(b)
    other_enc = head["encoding_space_ref"] != encoding
    is_calib = has(ACQ_IS_PARALLEL_CALIBRATION) & ~has(ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    use = ~is_noise & ~skip & ~other_enc

    out = IsmrmrdData(path=path, header=header, trajectory_type=header.trajectory)
    # noise
    if is_noise.any():
        nh = head[is_noise]
        rows = _complex_rows(raw["data"][is_noise], nh["active_channels"], nh["number_of_samples"], path)
        if len({r.shape[0] for r in rows}) != 1:
            raise IsmrmrdFormatError(f"{path}: noise acquisitions have differing channel counts")
        out.noise = np.concatenate(rows, axis=1)
        out.noise_dwell_time_us = float(nh["sample_time_us"][0])
    if not use.any():
        raise IsmrmrdFormatError(f"{path}: no imaging acquisitions for encoding {encoding}")
    h = head[use]
    rows = _complex_rows(raw["data"][use], h["active_channels"], h["number_of_samples"], path)
    pre, post = h["discard_pre"].astype(int), h["discard_post"].astype(int)
    ns = h["number_of_samples"].astype(int)
    if np.any(pre + post >= np.maximum(ns, 1)):
        raise IsmrmrdFormatError(f"{path}: discard_pre + discard_post >= number_of_samples")
    rows = [r[:, a:n - b] for r, a, n, b in zip(rows, pre, ns, post)]
    out.dwell_time_us = float(h["sample_time_us"][0])
    idx = h["idx"]
    counters = {name: idx[name].astype(np.int64) for name in ENCODING_COUNTERS_DTYPE.names if name != "user"}
    for s in np.unique(counters["slice"]):
        first = np.flatnonzero(counters["slice"] == s)[0]
        out.slice_geometry[int(s)] = {k: h[k][first].astype(float) for k in ("position", "read_dir", "phase_dir", "slice_dir")}
    tdim = h["trajectory_dimensions"].astype(int)
    if np.any(tdim > 0):
        _fill_noncartesian(out, raw["traj"][use], rows, h, tdim, pre, ns, post, counters, trajectory_units)
    else:
        _fill_cartesian(out, rows, h, counters, is_calib[use], has(ACQ_IS_REVERSE)[use])
    return out


def _fill_noncartesian(out, trajs, rows, h, tdim, pre, ns, post, counters, units):
    path, header = out.path, out.header
    if len(set(tdim.tolist())) != 1 or tdim[0] not in (2, 3):
        raise IsmrmrdFormatError(f"{path}: trajectory_dimensions must be 2 or 3 and equal for all acquisitions, got {sorted(set(tdim.tolist()))}")
    shapes = {r.shape for r in rows}
    if len(shapes) != 1:
        raise IsmrmrdFormatError(f"{path}: non-Cartesian acquisitions of differing (channels, samples) {sorted(shapes)} are not supported")
    d = int(tdim[0])
    tr = []
    for i, (t, a, n, b) in enumerate(zip(trajs, pre, ns, post)):
        t = np.asarray(t, dtype=np.float32)
        if t.size != n * d:
            raise IsmrmrdFormatError(f"{path}: acquisition {i} trajectory holds {t.size} floats, expected {n} x {d}")
        tr.append(t.reshape(n, d)[a:n - b])
    traj = np.stack(tr)  # (A, N, d) in ISMRMRD (kx, ky, kz) order
    if units == "auto":
        declared = header.trajectory_params.get("trajectory_units")
        if declared in ("normalized", "cycles_per_fov"):
            units = declared
        else:
            units = "normalized" if np.abs(traj).max() <= 0.5 + 1e-4 else "cycles_per_fov"
    if units == "normalized":
        traj = traj * np.asarray(header.encoded_matrix[:d], dtype=np.float32)
    out.trajectory_units = units
    out.trajectory = np.ascontiguousarray(traj[..., ::-1])
    out.samples = np.stack(rows)
    out.counters = counters
    if out.trajectory_type == "cartesian":
        out.trajectory_type = "other"


def _placement(n_enc, steps, lim, what, path):
    """Shift of encode counters onto the matrix (fastMRI's padding rule) and the axis size."""
    steps = np.asarray(steps)
    size = max(int(n_enc), 1)
    if lim is not None:
        shift = size // 2 - lim.center
        if steps.min() + shift >= 0 and steps.max() + shift < size:
            return shift, size
        warnings.warn(f"{path}: {what} counters do not fit encodingLimits centre {lim.center} in {size}; placing them unshifted",
                      stacklevel=3)
    return 0, max(size, int(steps.max()) + 1)


def _fill_cartesian(out, rows, h, counters, is_calib, is_reverse):
    path, header = out.path, out.header
    nch = {r.shape[0] for r in rows}
    if len(nch) != 1:
        raise IsmrmrdFormatError(f"{path}: Cartesian acquisitions have differing channel counts {sorted(nch)}")
    nc = nch.pop()
    enc_x, enc_y, enc_z = header.encoded_matrix
    lims = header.limits
    sy, ny = _placement(enc_y, counters["kspace_encode_step_1"], lims.get("kspace_encoding_step_1"), "kspace_encode_step_1", path)
    sz, nz = _placement(enc_z, counters["kspace_encode_step_2"], lims.get("kspace_encoding_step_2"), "kspace_encode_step_2", path)
    n_read = np.array([r.shape[1] for r in rows])
    center = h["center_sample"].astype(int) - h["discard_pre"].astype(int)
    start = np.where(center > 0, enc_x // 2 - center, 0)
    nx = max(enc_x, 1)
    if np.any(start < 0) or np.any(start + n_read > nx):
        warnings.warn(f"{path}: readouts do not fit encodedSpace x = {enc_x} at their centre_sample; placing them at 0",
                      stacklevel=2)
        start = np.zeros_like(start)
        nx = max(nx, int(n_read.max()))
    sizes = []
    for name in COUNTER_DIMS:
        lim = lims.get(_LIMIT_OF[name])
        sizes.append(max(int(counters[name].max()) + 1, (lim.maximum + 1) if lim is not None else 1))
    lead = tuple(sizes)
    total = int(np.prod(lead, dtype=np.int64)) * nz * ny * nc * nx
    acquired = sum(r.size for r in rows)
    if total > 2**31 or (total > 2**26 and acquired * 256 < total):
        raise IsmrmrdFormatError(
            f"{path}: counters/encoding limits imply a k-space of {lead + (nc, nz, ny, nx)} for {len(rows)} acquisitions "
            "(corrupt counters?)"
        )
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
        setattr(out, attr, np.ascontiguousarray(np.moveaxis(k, -2, len(lead))))
        if attr == "kspace":
            out.mask = m
    if out.kspace is None:
        raise IsmrmrdFormatError(f"{path}: only calibration acquisitions, no imaging data")


# ---- writing -------------------------------------------------------------------------------------

def _head_template(n):
    head = np.zeros(n, dtype=ACQ_HEAD_DTYPE)
    head["version"] = ISMRMRD_VERSION
    head["read_dir"] = (1.0, 0.0, 0.0)
    head["phase_dir"] = (0.0, 1.0, 0.0)
    head["slice_dir"] = (0.0, 0.0, 1.0)
    return head


def _set_channels(head, nc):
    head["active_channels"] = nc
    head["available_channels"] = nc
    mask = np.zeros(16, dtype=np.uint64)
    for c in range(nc):
        mask[c // 64] |= np.uint64(1) << np.uint64(c % 64)
    head["channel_mask"] = mask


def write_ismrmrd(path, kspace=None, *, samples=None, trajectory=None, noise=None, mask=None,
                  image_shape=None, fov_mm=None, recon_shape=None, recon_fov_mm=None, trajectory_type=None,
                  trajectory_units: str = "normalized", dwell_time_us: float = 5.0,
                  noise_dwell_time_us: float | None = None, overwrite: bool = True, **header_kwargs) -> str:
    """Write an ISMRMRD v1 HDF5 file (Cartesian ``kspace`` or non-Cartesian ``samples``+``trajectory``).

    Cartesian ``kspace``: ``(coil, ky, kx)``, ``(slice, coil, ky, kx)`` (2D multi-slice) or
    ``(slice, coil, kz, ky, kx)`` (3D encoding: pass slice = 1). One acquisition is written per
    (slice, kz, ky) line where ``mask`` (bool, broadcastable to ``(slice, kz, ky)``; default all) is
    true, with counters ``kspace_encode_step_1 = ky``, ``_2 = kz``, ``slice`` and encodingLimits
    centres ``n // 2`` (so the reader puts every line back where it was).

    Non-Cartesian ``samples``: ``(coil, acq, readout)`` or ``(slice, coil, acq, readout)``;
    ``trajectory``: ``(acq, readout, d)`` or ``(slice, acq, readout, d)`` in cycles/FOV, last axis
    in image-axis order; ``image_shape`` ((y, x) or (z, y, x)) is required. The trajectory is stored
    in ISMRMRD's (kx, ky[, kz]) order, in ``trajectory_units`` (``"normalized"``: divided by the
    matrix size, +-0.5 at the k-space edge, Gadgetron's convention; or ``"cycles_per_fov"``), and
    the unit is declared in trajectoryDescription.

    ``noise``: ``(coil, samples)`` or ``(k, coil, samples)`` written first as
    ``ACQ_IS_NOISE_MEASUREMENT`` acquisitions. ``fov_mm`` in recon (z, y, x) order (z: slice
    thickness for 2D); default 1 mm voxels. ``header_kwargs`` go to ``build_ismrmrd_header``.
    """
    import h5py

    if (kspace is None) == (samples is None):
        raise ValueError("write_ismrmrd: pass exactly one of kspace (Cartesian) or samples (non-Cartesian)")
    if trajectory_units not in ("normalized", "cycles_per_fov"):
        raise ValueError(f"trajectory_units must be 'normalized' or 'cycles_per_fov', got {trajectory_units!r}")
    heads, datas, trajs = [], [], []
    if kspace is not None:
        k = np.asarray(kspace)
        if k.ndim == 3:
            k = k[None, :, None]
        elif k.ndim == 4:
            k = k[:, :, None]
        elif k.ndim != 5:
            raise ValueError(f"kspace must be (coil, ky, kx), (slice, coil, ky, kx) or (slice, coil, kz, ky, kx), got shape {np.shape(kspace)}")
        if not np.iscomplexobj(k) or not np.all(np.isfinite(k)):
            raise ValueError("kspace must be complex and finite")
        ns_, nc, nz, ny, nx = k.shape
        m = np.ones((ns_, nz, ny), dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), (ns_, nz, ny))
        s_idx, z_idx, y_idx = np.nonzero(m)
        if s_idx.size == 0:
            raise ValueError("mask selects no k-space lines")
        n = s_idx.size
        head = _head_template(n)
        _set_channels(head, nc)
        head["number_of_samples"] = nx
        head["center_sample"] = nx // 2
        head["idx"]["kspace_encode_step_1"] = y_idx
        head["idx"]["kspace_encode_step_2"] = z_idx
        head["idx"]["slice"] = s_idx
        d = np.ascontiguousarray(k.transpose(0, 2, 3, 1, 4)[s_idx, z_idx, y_idx]).astype(np.complex64)  # (n, coil, kx)
        datas.extend(row.reshape(-1).view(np.float32) for row in d)
        trajs.extend([np.zeros(0, np.float32)] * n)
        shape_zyx = (nz, ny, nx)
        traj_type = trajectory_type or "cartesian"
        traj_params = None
        limits = {"kspace_encoding_step_1": (0, ny - 1, ny // 2), "kspace_encoding_step_2": (0, nz - 1, nz // 2),
                  "slice": (0, ns_ - 1, ns_ // 2)}
    else:
        if trajectory is None or image_shape is None:
            raise ValueError("non-Cartesian write_ismrmrd needs trajectory and image_shape")
        s = np.asarray(samples)
        t = np.asarray(trajectory, dtype=np.float64)
        if s.ndim == 3:
            s = s[None]
        if t.ndim == 3:
            t = t[None]
        if s.ndim != 4 or t.ndim != 4:
            raise ValueError(f"samples must be (coil, acq, readout) or (slice, coil, acq, readout), trajectory (acq, readout, d) or (slice, acq, readout, d); got {np.shape(samples)}, {np.shape(trajectory)}")
        ns_, nc, na, nr = s.shape
        if t.shape[0] not in (1, ns_) or t.shape[1:3] != (na, nr) or t.shape[3] not in (2, 3):
            raise ValueError(f"trajectory shape {np.shape(trajectory)} does not match samples {np.shape(samples)}")
        if not np.iscomplexobj(s) or not np.all(np.isfinite(s)) or not np.all(np.isfinite(t)):
            raise ValueError("samples must be complex and finite, trajectory finite")
        dim = t.shape[3]
        image_shape = tuple(int(v) for v in image_shape)
        if len(image_shape) != dim:
            raise ValueError(f"image_shape {image_shape} must have {dim} entries for a {dim}-D trajectory")
        shape_zyx = image_shape if dim == 3 else (1,) + image_shape
        t = np.broadcast_to(t, (ns_, na, nr, dim))[..., ::-1]  # ISMRMRD (kx, ky[, kz])
        if trajectory_units == "normalized":
            t = t / np.asarray(shape_zyx[::-1][:dim], dtype=np.float64)
        n = ns_ * na
        head = _head_template(n)
        _set_channels(head, nc)
        head["number_of_samples"] = nr
        head["center_sample"] = nr // 2
        head["trajectory_dimensions"] = dim
        s_idx = np.repeat(np.arange(ns_), na)
        head["idx"]["kspace_encode_step_1"] = np.tile(np.arange(na), ns_)
        head["idx"]["slice"] = s_idx
        d = np.ascontiguousarray(s.transpose(0, 2, 1, 3)).reshape(n, nc, nr).astype(np.complex64)
        datas.extend(row.reshape(-1).view(np.float32) for row in d)
        tt = np.ascontiguousarray(t, dtype=np.float32).reshape(n, nr * dim)
        trajs.extend(tt)
        traj_type = trajectory_type or "radial"
        traj_params = {"trajectory_units": trajectory_units}
        limits = {"kspace_encoding_step_1": (0, na - 1, na // 2), "slice": (0, ns_ - 1, ns_ // 2)}
    nz, ny, nx = shape_zyx
    if fov_mm is None:
        fov_mm = (float(nz), float(ny), float(nx))
    fz, fy, fx = (float(v) for v in fov_mm)
    thick = fz / nz
    head["sample_time_us"] = dwell_time_us
    head["position"][:, 2] = (head["idx"]["slice"].astype(np.float64) - ns_ // 2) * thick
    first = np.r_[True, head["idx"]["slice"][1:] != head["idx"]["slice"][:-1]]
    last = np.r_[head["idx"]["slice"][1:] != head["idx"]["slice"][:-1], True]
    head["flags"] |= np.where(first, np.uint64(flag(ACQ_FIRST_IN_SLICE)), np.uint64(0))
    head["flags"] |= np.where(last, np.uint64(flag(ACQ_LAST_IN_SLICE)), np.uint64(0))
    head["flags"][-1] |= np.uint64(flag(ACQ_LAST_IN_MEASUREMENT))
    heads.append(head)
    if noise is not None:
        nz_ = np.asarray(noise)
        if nz_.ndim == 2:
            nz_ = nz_[None]
        if nz_.ndim != 3 or nz_.shape[1] != nc or not np.iscomplexobj(nz_):
            raise ValueError(f"noise must be complex (coil={nc}, samples) or (k, coil={nc}, samples), got {np.shape(noise)}")
        nh = _head_template(nz_.shape[0])
        _set_channels(nh, nc)
        nh["number_of_samples"] = nz_.shape[2]
        nh["sample_time_us"] = noise_dwell_time_us if noise_dwell_time_us is not None else dwell_time_us
        nh["flags"] = flag(ACQ_IS_NOISE_MEASUREMENT)
        heads.insert(0, nh)
        ndat = [row.astype(np.complex64).reshape(-1).view(np.float32) for row in nz_]
        datas[:0] = ndat
        trajs[:0] = [np.zeros(0, np.float32)] * nz_.shape[0]
    allhead = np.concatenate(heads)
    allhead["scan_counter"] = np.arange(allhead.size)
    rs = recon_shape if recon_shape is not None else shape_zyx[-len(shape_zyx):]
    rs = tuple(int(v) for v in rs)
    rs = (1,) * (3 - len(rs)) + rs
    rf = recon_fov_mm if recon_fov_mm is not None else (fz, fy, fx)
    rf = tuple(float(v) for v in rf)
    if len(rf) == 2:
        rf = (fz,) + rf
    xml = build_ismrmrd_header(
        (nx, ny, nz), (fx, fy, fz), rs[::-1], rf[::-1], limits=limits, trajectory=traj_type,
        trajectory_params=traj_params, receiver_channels=nc, **header_kwargs,
    )
    table = np.empty(allhead.size, dtype=_acq_dtype())
    table["head"] = allhead
    obj_d = np.empty(allhead.size, dtype=object)
    obj_t = np.empty(allhead.size, dtype=object)
    for i in range(allhead.size):
        obj_d[i] = np.asarray(datas[i], dtype=np.float32)
        obj_t[i] = np.asarray(trajs[i], dtype=np.float32)
    table["data"] = obj_d
    table["traj"] = obj_t
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")

    def fill(hf):
        g = hf.create_group("dataset")
        x = g.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        x[0] = xml.encode("utf-8")
        g.create_dataset("data", data=table, maxshape=(None,), chunks=True)

    return write_hdf5(path, fill, overwrite=overwrite)
