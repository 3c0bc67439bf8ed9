"""ISMRMRD v1 HDF5 raw data files: reading into ``recon.io.RawData`` and writing.

File layout (ISMRMRD v1, as written by the C library and the ``ismrmrd`` Python package):
``/dataset/xml`` is a (1,) variable-length string dataset with the XML header, ``/dataset/data`` a
1-D compound dataset, one element per acquisition, with fields ``head`` (the fixed
AcquisitionHeader, ``ACQ_HEAD_DTYPE`` below), ``traj`` (vlen float32: ``number_of_samples x
trajectory_dimensions``, sample-major) and ``data`` (vlen float32: interleaved real/imag of
``active_channels x number_of_samples`` complex samples, channel-major).

``/dataset/waveforms`` (optional) holds physiological waveforms: ``head`` (WaveformHeader) and
``data`` (vlen uint32, ``channels x number_of_samples``).

We read and write these compound datasets with h5py directly, vectorised (a few HDF5 reads of
16384 acquisitions each) rather than through ``ismrmrd.Dataset.read_acquisition`` one Python
object at a time, and feed them to ``recon.io.raw.AcquisitionDecoder``, the decoder a socket stream
feeds too; the tests check both directions against the ``ismrmrd`` package. Nothing is dropped:
the returned ``RawData`` keeps every acquisition (noise, navigators and calibration included) with
its full header, and every waveform (see ``recon.io.raw``).

Conventions of the views (recon's, see ``recon.conventions``):

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

import numpy as np

from .hdf5 import corrupt_guard, member, open_h5, write_hdf5
from .ismrmrd_header import build_ismrmrd_header
from .limits import check_read_size, nbytes_of
from .mrd import (  # noqa: F401  (flags and layouts: importable from here as before)
    ACQ_FIRST_IN_SLICE,
    ACQ_HEAD_DTYPE,
    ACQ_IS_DUMMYSCAN_DATA,
    ACQ_IS_HPFEEDBACK_DATA,
    ACQ_IS_NAVIGATION_DATA,
    ACQ_IS_NOISE_MEASUREMENT,
    ACQ_IS_PARALLEL_CALIBRATION,
    ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING,
    ACQ_IS_PHASE_STABILIZATION,
    ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    ACQ_IS_PHASECORR_DATA,
    ACQ_IS_REVERSE,
    ACQ_IS_RTFEEDBACK_DATA,
    ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ACQ_LAST_IN_MEASUREMENT,
    ACQ_LAST_IN_SLICE,
    ENCODING_COUNTERS_DTYPE,
    ISMRMRD_VERSION,
    WAVEFORM_HEAD_DTYPE,
    IsmrmrdFormatError,
    flag,
)
from .raw import COUNTER_DIMS, KSPACE_DIMS, AcquisitionDecoder, Acquisitions, RawData, Waveforms  # noqa: F401

#: ``read_ismrmrd``'s result: the raw-data type of every format
IsmrmrdData = RawData

#: acquisitions per HDF5 read
BLOCK = 1 << 14


def _acq_dtype():
    import h5py

    vlen = h5py.vlen_dtype(np.dtype("float32"))
    return np.dtype([("head", ACQ_HEAD_DTYPE), ("traj", vlen), ("data", vlen)])


def _wav_dtype():
    import h5py

    return np.dtype([("head", WAVEFORM_HEAD_DTYPE), ("data", h5py.vlen_dtype(np.dtype("uint32")))])


# ---- reading -------------------------------------------------------------------------------------

def _table(grp, name, fields, head_dtype, label):
    """A 1-D compound dataset of ``grp`` with ``fields`` whose ``head`` has ``head_dtype``'s fields."""
    import h5py

    ds = member(grp, name, IsmrmrdFormatError, label)
    names = getattr(ds, "dtype", np.dtype(float)).names or ()
    if not set(fields) <= set(names) or ds.ndim != 1:
        raise IsmrmrdFormatError(f"{label}: '{grp.name}/{name}' is not an ISMRMRD table (fields {names}, "
                                 f"shape {getattr(ds, 'shape', None)})")
    missing = set(head_dtype.names) - set(ds.dtype["head"].names or ())
    if missing:
        raise IsmrmrdFormatError(f"{label}: '{grp.name}/{name}' headers lack fields {sorted(missing)}")
    # a damaged datatype (a field of the wrong size, overlapping fields) makes libhdf5's conversion
    # write out of place: h5py then hands back garbage object pointers (a segfault on first use)
    bad = _layout_problem(ds.dtype["head"], head_dtype)
    for f in fields:
        if f != "head" and bad is None:
            base = h5py.check_vlen_dtype(ds.dtype[f])
            if base is None or base != (np.uint32 if f == "data" and "waveform_id" in head_dtype.names else np.float32):
                bad = f"field {f!r} is {ds.dtype[f]} ({base})"
    if bad is not None:
        raise IsmrmrdFormatError(f"{label}: '{grp.name}/{name}' has a damaged datatype: {bad}")
    return ds


def _layout_problem(got: np.dtype, want: np.dtype, prefix: str = "") -> str | None:
    """Why the file's structured ``got`` does not carry ``want``'s fields (types, shapes, no
    overlaps), or None."""
    spans = []
    for n in want.names:
        g, w = got.fields[n][0], want.fields[n][0]
        if w.names is not None:
            if g.names is None:
                return f"{prefix}{n} is not a compound"
            inner = _layout_problem(g, w, f"{prefix}{n}.")
            if inner:
                return inner
        elif (g.base.kind, g.base.itemsize, g.shape) != (w.base.kind, w.base.itemsize, w.shape):  # any byte order
            return f"{prefix}{n} is {g}, expected {w}"
        spans.append((got.fields[n][1], got.fields[n][1] + g.itemsize))
    spans.sort()
    for (a0, a1), (b0, _) in zip(spans, spans[1:]):
        if b0 < a1:
            return f"{prefix}fields overlap at byte {b0}"
    if spans and spans[-1][1] > got.itemsize:
        return f"{prefix}fields run past the record ({spans[-1][1]} > {got.itemsize} bytes)"
    return None


def _read_blocks(ds, what, label, max_bytes, feed):
    """Read ``ds`` in blocks of ``BLOCK`` rows (refusing a declared row count above the limit)."""
    check_read_size(nbytes_of(ds.shape, ds.dtype.itemsize), f"{label}: {ds.shape[0]} {what}", max_bytes=max_bytes,
                    error=IsmrmrdFormatError)
    for start in range(0, ds.shape[0], BLOCK):
        try:
            block = ds[start:start + BLOCK]
        except (OSError, RuntimeError) as exc:
            raise IsmrmrdFormatError(f"{label}: cannot read {what} (truncated or corrupt?): "
                                     f"{str(exc).splitlines()[0]}") from None
        feed(block)


def read_ismrmrd(path, *, dataset: str = "dataset", encoding: int = 0, trajectory_units: str = "auto",
                 max_bytes: int | None = None) -> RawData:
    """Read an ISMRMRD v1 HDF5 file into a ``RawData`` (see the module docstring and ``recon.io.raw``).

    ``trajectory_units``: ``"auto"`` (header's declaration, else the +-0.5 rule), ``"normalized"``
    or ``"cycles_per_fov"``. ``max_bytes``: the read limit (``recon.io.limits``). Raises
    ``FileNotFoundError``, or ``IsmrmrdFormatError`` (ValueError) for truncated, corrupt or
    non-ISMRMRD files, data kept outside the file, or sizes above the read limit.
    """
    if trajectory_units not in ("auto", "normalized", "cycles_per_fov"):
        raise ValueError(f"trajectory_units must be 'auto', 'normalized' or 'cycles_per_fov', got {trajectory_units!r}")
    path = os.fspath(path)
    with corrupt_guard(path, IsmrmrdFormatError, "reading"), open_h5(path, IsmrmrdFormatError) as hf:
        grp = member(hf, dataset, IsmrmrdFormatError, path)
        if grp is None:
            raise IsmrmrdFormatError(f"{path}: no '/{dataset}' group (not an ISMRMRD file); has {sorted(hf.keys())}")
        if not hasattr(grp, "keys"):
            raise IsmrmrdFormatError(f"{path}: '/{dataset}' is not a group (not an ISMRMRD file)")
        xml_ds = member(grp, "xml", IsmrmrdFormatError, path)
        if xml_ds is None or "data" not in grp or not hasattr(xml_ds, "dtype"):
            raise IsmrmrdFormatError(f"{path}: no '/{dataset}/xml' or '/{dataset}/data' dataset (not an ISMRMRD file)")
        if xml_ds.shape not in ((), (1,)) or xml_ds.dtype.kind not in "SOU":
            raise IsmrmrdFormatError(f"{path}: '/{dataset}/xml' must be one string, got {xml_ds.dtype} of shape "
                                     f"{xml_ds.shape}")
        try:
            xml = xml_ds[0] if xml_ds.shape else xml_ds[()]
        except (OSError, RuntimeError, IndexError, ValueError) as exc:
            raise IsmrmrdFormatError(f"{path}: cannot read '/{dataset}/xml': {str(exc).splitlines()[0]}") from None
        dec = AcquisitionDecoder(xml, encoding=encoding, trajectory_units=trajectory_units, path=path,
                                 max_bytes=max_bytes)
        data = _table(grp, "data", ("head", "traj", "data"), ACQ_HEAD_DTYPE, path)
        _read_blocks(data, "acquisitions", path, max_bytes, lambda b: dec.add_many(b["head"], b["traj"], b["data"]))
        if "waveforms" in grp:
            wav = _table(grp, "waveforms", ("head", "data"), WAVEFORM_HEAD_DTYPE, path)
            _read_blocks(wav, "waveforms", path, max_bytes, lambda b: dec.add_waveforms_many(b["head"], b["data"]))
    return dec.finish()


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
    acq = Acquisitions(allhead, [np.asarray(d, np.float32).view(np.complex64) for d in datas],
                       [np.asarray(t, np.float32) for t in trajs])
    return write_ismrmrd_raw(path, xml, acq, overwrite=overwrite)


def write_ismrmrd_raw(path, header, acquisitions: Acquisitions | None = None, waveforms: Waveforms | None = None, *,
                      overwrite: bool = True) -> str:
    """Write an acquisition table (and waveforms) as an ISMRMRD v1 file, atomically: ``header`` is
    the XML (str) or a ``RawData`` (whose header XML, acquisitions and waveforms are written when
    the others are None). ``write_ismrmrd_raw(p, read_ismrmrd(q))`` copies a file's content."""
    import h5py

    if isinstance(header, RawData):
        raw = header
        header = raw.header.xml
        acquisitions = raw.acquisitions if acquisitions is None else acquisitions
        waveforms = raw.waveforms if waveforms is None else waveforms
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    n = len(acquisitions)
    table = np.empty(n, dtype=_acq_dtype())
    table["head"] = acquisitions.head
    obj_d, obj_t = np.empty(n, dtype=object), np.empty(n, dtype=object)
    for i in range(n):
        obj_d[i] = np.ascontiguousarray(acquisitions.data[i], dtype=np.complex64).reshape(-1).view(np.float32)
        obj_t[i] = np.ascontiguousarray(acquisitions.traj[i], dtype=np.float32).reshape(-1)
    table["data"], table["traj"] = obj_d, obj_t
    if waveforms is not None and len(waveforms):
        wtable = np.empty(len(waveforms), dtype=_wav_dtype())
        wtable["head"] = waveforms.head
        obj_w = np.empty(len(waveforms), dtype=object)
        for i, d in enumerate(waveforms.data):
            obj_w[i] = np.ascontiguousarray(d, dtype=np.uint32).reshape(-1)
        wtable["data"] = obj_w
    else:
        wtable = None

    def fill(hf):
        g = hf.create_group("dataset")
        x = g.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        x[0] = (header if isinstance(header, str) else bytes(header).decode("utf-8")).encode("utf-8")
        g.create_dataset("data", data=table, maxshape=(None,), chunks=True)
        if wtable is not None:
            g.create_dataset("waveforms", data=wtable, maxshape=(None,), chunks=True)

    return write_hdf5(path, fill, overwrite=overwrite)
