"""ISMRMRD / MRD v1 binary layout, shared by files and sockets: acquisition and waveform headers,
acquisition flags, stream message ids, and the byte form of one acquisition or waveform.

An ACQUISITION (message 1008 on a socket, one element of ``/dataset/data`` in a file) is the
340-byte ``AcquisitionHeader`` (``ACQ_HEAD_DTYPE``, packed, little endian) followed by the
trajectory, ``number_of_samples x trajectory_dimensions`` float32 (sample-major), and the data,
``active_channels x number_of_samples`` complex float32 (channel-major). A WAVEFORM (message 1026,
``/dataset/waveforms``) is the 40-byte ``WaveformHeader`` (``WAVEFORM_HEAD_DTYPE``, C-aligned)
followed by ``channels x number_of_samples`` uint32. These are the layouts of the ISMRMRD C library
and of the ``ismrmrd`` Python package (the tests compare byte for byte).
"""

from __future__ import annotations

import numpy as np

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
assert ACQ_HEAD_DTYPE.itemsize == 340
WAVEFORM_HEAD_DTYPE = np.dtype([
    ("version", "<u2"), ("flags", "<u8"), ("measurement_uid", "<u4"), ("scan_counter", "<u4"),
    ("time_stamp", "<u4"), ("number_of_samples", "<u2"), ("channels", "<u2"), ("sample_time_us", "<f4"),
    ("waveform_id", "<u2"),
], align=True)
assert WAVEFORM_HEAD_DTYPE.itemsize == 40
ISMRMRD_VERSION = 1


class IsmrmrdFormatError(ValueError):
    """ISMRMRD data (a file or a stream) is truncated, corrupt, or lacks/mislabels what ISMRMRD
    requires (one-line message)."""


#: encoding counters (``idx``) other than ``user``: one column each in ``Acquisitions``
COUNTER_NAMES = tuple(n for n in ENCODING_COUNTERS_DTYPE.names if n != "user")

#: MRD v1 stream message ids (uint16, little endian)
MRD_MESSAGE_CONFIG_FILE = 1
MRD_MESSAGE_CONFIG_TEXT = 2
MRD_MESSAGE_HEADER = 3
MRD_MESSAGE_CLOSE = 4
MRD_MESSAGE_TEXT = 5
MRD_MESSAGE_ACQUISITION = 1008
MRD_MESSAGE_IMAGE = 1022
MRD_MESSAGE_WAVEFORM = 1026

#: waveform ids of the ISMRMRD standard (>= 1024: user defined)
WAVEFORM_ECG = 0
WAVEFORM_PULSE = 1
WAVEFORM_RESPIRATORY = 2
WAVEFORM_EXT1 = 3
WAVEFORM_EXT2 = 4


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
#: acquisitions that are neither imaging data nor noise (kept in the table, not used for images)
NON_IMAGING_BITS = (ACQ_IS_NAVIGATION_DATA, ACQ_IS_PHASECORR_DATA, ACQ_IS_HPFEEDBACK_DATA, ACQ_IS_DUMMYSCAN_DATA,
                    ACQ_IS_RTFEEDBACK_DATA, ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
                    ACQ_IS_PHASE_STABILIZATION_REFERENCE, ACQ_IS_PHASE_STABILIZATION)


def as_header_array(heads, dtype: np.dtype = ACQ_HEAD_DTYPE) -> np.ndarray:
    """Structured array of ``dtype`` from headers of any compatible layout (e.g. h5py's, field
    order or alignment may differ), matched by field name, padding bytes zero; bytes are read as
    ``dtype``'s layout."""
    if isinstance(heads, (bytes, bytearray, memoryview)):
        b = bytes(heads)
        if len(b) % dtype.itemsize:
            raise ValueError(f"header bytes: {len(b)} is not a multiple of {dtype.itemsize}")
        return np.frombuffer(b, dtype=dtype).copy()
    h = np.asarray(heads)
    packed = dtype.itemsize == sum(f[0].itemsize for f in dtype.fields.values())
    if packed and h.dtype.fields == dtype.fields and h.dtype.itemsize == dtype.itemsize:  # the same bytes
        return np.atleast_1d(h).copy().view(dtype)
    if h.dtype.names is None:
        raise TypeError(f"headers must be structured arrays or bytes, got {h.dtype}")
    out = np.zeros(h.shape, dtype=dtype)
    _copy_fields(out, h, dtype)
    return np.atleast_1d(out)


def _copy_fields(dst, src, dtype):
    missing = set(dtype.names) - set(src.dtype.names or ())
    if missing:
        raise ValueError(f"header lacks fields {sorted(missing)}")
    for name in dtype.names:
        if dtype[name].names is not None:
            _copy_fields(dst[name], src[name], dtype[name])
        else:
            dst[name] = src[name]


def acquisition_to_bytes(head, traj=None, data=None) -> bytes:
    """One acquisition as MRD v1 lays it out (header, trajectory float32, data complex64);
    ``traj`` ``(samples, d)`` and ``data`` ``(channels, samples)``."""
    h = as_header_array(head)
    if h.size != 1:
        raise ValueError(f"one header expected, got {h.size}")
    t = np.zeros(0, np.float32) if traj is None else np.ascontiguousarray(traj, dtype="<f4")
    d = np.zeros(0, np.complex64) if data is None else np.ascontiguousarray(data, dtype="<c8")
    return h.tobytes() + t.tobytes() + d.tobytes()


def acquisition_from_bytes(buf, offset: int = 0):
    """``(head, traj (samples, d) float32, data (channels, samples) complex64, bytes used)`` of one
    acquisition in MRD v1 layout at ``buf[offset:]``; ValueError when ``buf`` is too short."""
    mv = memoryview(buf)[offset:]
    n = ACQ_HEAD_DTYPE.itemsize
    if len(mv) < n:
        raise ValueError(f"acquisition: {len(mv)} bytes, the header alone needs {n}")
    head = np.frombuffer(mv[:n], dtype=ACQ_HEAD_DTYPE).copy()
    ns, nc, td = (int(head[k][0]) for k in ("number_of_samples", "active_channels", "trajectory_dimensions"))
    nt, nd = 4 * ns * td, 8 * ns * nc
    if len(mv) < n + nt + nd:
        raise ValueError(f"acquisition: header declares {nt + nd} bytes of trajectory and data, {len(mv) - n} follow")
    traj = np.frombuffer(mv[n:n + nt], dtype="<f4").reshape(ns, td).copy()
    data = np.frombuffer(mv[n + nt:n + nt + nd], dtype="<c8").reshape(nc, ns).copy()
    return head, traj, data, n + nt + nd


def waveform_to_bytes(head, data=None) -> bytes:
    """One waveform as MRD v1 lays it out (header, ``(channels, samples)`` uint32)."""
    h = as_header_array(head, WAVEFORM_HEAD_DTYPE)
    d = np.zeros(0, np.uint32) if data is None else np.ascontiguousarray(data, dtype="<u4")
    return h.tobytes() + d.tobytes()


def waveform_from_bytes(buf, offset: int = 0):
    """``(head, data (channels, samples) uint32, bytes used)`` of one waveform at ``buf[offset:]``."""
    mv = memoryview(buf)[offset:]
    n = WAVEFORM_HEAD_DTYPE.itemsize
    if len(mv) < n:
        raise ValueError(f"waveform: {len(mv)} bytes, the header alone needs {n}")
    head = np.frombuffer(mv[:n], dtype=WAVEFORM_HEAD_DTYPE).copy()
    ns, nc = int(head["number_of_samples"][0]), int(head["channels"][0])
    nd = 4 * ns * nc
    if len(mv) < n + nd:
        raise ValueError(f"waveform: header declares {nd} bytes of data, {len(mv) - n} follow")
    return head, np.frombuffer(mv[n:n + nd], dtype="<u4").reshape(nc, ns).copy(), n + nd
