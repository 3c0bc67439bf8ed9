"""DICOM image series output (MR Image Storage, CT Image Storage; one file per slice) through
pydicom, and reading a series back.

Geometry follows ``recon.io.geometry``: ImageOrientationPatient/ImagePositionPatient from the
volume's ``direction`` and ``origin_mm`` (the origin convention of each modality is there too).
Both writers share one series writer (:func:`_write_series`: the Patient, General Study, General
Series, Frame of Reference, General Equipment, General Image, Image Plane, Image Pixel, VOI LUT
and SOP Common modules); each adds its own modality module and pixel encoding:

* MR (:func:`write_dicom_series`): magnitude (complex input takes ``abs``) as uint16 with
  ``RescaleSlope``/``RescaleIntercept`` (:func:`uint16_rescale`: ``intercept = min(0, vmin)``,
  ``slope = (vmax - intercept) / 65535`` over the whole volume, so the slices compare); a reader
  recovers ``value = stored * slope + intercept`` within ``slope / 2``. Window centre/width from the
  0.5 and 99.5 percentiles.
* CT (:func:`write_ct_series`): Hounsfield units as int16 with slope 1 and intercept 0 (whole HU,
  the usual CT encoding; values clipped to the int16 range), RescaleType ``HU``, the window presets
  of :data:`CT_WINDOWS` (soft tissue first), ImageType ``DERIVED\\SECONDARY\\AXIAL``.

The files use Explicit VR Little Endian and fresh UIDs (study, series, frame of reference and one
SOP instance per slice; pass ``study_uid``/``frame_of_reference_uid`` to put several series in one
study/frame). The series is written into a temporary folder renamed into place when complete
(``recon.io.atomic``). dciodvfy (dicom3tools) reports no errors on either IOD (tests/test_io.py,
tests/test_ct_pipeline.py).
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from .atomic import atomic_folder
from .files import check_input_file, first_line
from .geometry import check_direction, check_voxel_size, default_origin
from .limits import check_read_size, nbytes_of

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

#: CT display windows (centre, width) in HU, the usual presets: soft tissue, lung, bone.
CT_WINDOWS = {"soft-tissue": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0)}


def ds_string(x: float) -> str:
    """A DICOM DS (decimal string) value: at most 16 characters."""
    s = f"{x:.10g}"
    if len(s) > 16:
        s = f"{x:.6e}"
    return s


def uint16_rescale(values):
    """``(stored uint16, slope, intercept)`` with ``values ~ stored * slope + intercept`` within
    ``slope / 2``: ``intercept = min(0, vmin)``, ``slope = (vmax - intercept) / 65535`` (1 for a
    constant array)."""
    v = np.asarray(values, dtype=np.float64)
    vmin, vmax = float(v.min()), float(v.max())
    intercept = min(0.0, vmin)
    slope = (vmax - intercept) / 65535.0 if vmax > intercept else 1.0
    return np.clip(np.rint((v - intercept) / slope), 0, 65535).astype(np.uint16), slope, intercept


def new_dataset(sop_class_uid: str, *, explicit_vr: bool = True):
    """A pydicom Dataset with its file meta (a fresh SOP instance UID), SpecificCharacterSet and the
    SOP Common attributes set; Explicit (default) or Implicit VR Little Endian."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        generate_uid,
    )

    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if explicit_vr else ImplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    return ds


def is_dicom(path) -> bool:
    """True for a folder (a series) or a file that starts with DICOM's 128-byte preamble and ``DICM``:
    how recon tells DICOM inputs from others by their content."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return True
    with open(p, "rb") as f:
        return f.read(132)[128:132] == b"DICM"


def _check_volume(volume) -> np.ndarray:
    v = np.asarray(volume)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or min(v.shape) < 1:
        raise ValueError(f"volume must be (z, y, x) or (y, x), got shape {np.shape(volume)}")
    if not np.all(np.isfinite(v)):
        raise ValueError("volume contains NaN or Inf")
    return v


#: the keyword options of every series writer, passed through to :func:`_write_series`
_SERIES_OPTIONS = ("direction", "origin_mm", "series_description", "series_number", "patient_name", "patient_id",
                   "study_uid", "frame_of_reference_uid", "slice_thickness_mm", "prefix", "overwrite")


def _write_series(directory, stored, voxel_size_mm, *, sop_class_uid, modality, direction, origin_mm,
                  series_description, series_number, patient_name, patient_id, study_uid, frame_of_reference_uid,
                  slice_thickness_mm, prefix, overwrite, fill) -> list[str]:
    """Write ``stored`` ``(z, y, x)`` (uint16 or int16 pixel values) as one file per slice; ``fill(ds,
    k)`` adds the modality's own attributes (rescale, window, modality module) to slice ``k``."""
    from pydicom.uid import generate_uid

    vs = check_voxel_size(voxel_size_mm)
    d = check_direction(direction)
    origin = default_origin(stored.shape, vs, d) if origin_mm is None else np.asarray(origin_mm, dtype=np.float64)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise ValueError(f"origin_mm must be 3 finite LPS coordinates (mm), got {origin_mm!r}")
    dz, dy, dx = vs
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    for_uid = frame_of_reference_uid or generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    normal = d[:, 2]
    signed = stored.dtype == np.int16
    directory = os.fspath(directory)
    with atomic_folder(directory, overwrite=overwrite, replaceable=lambda name: name.endswith(".dcm")) as tmp:
        names = []
        for k in range(stored.shape[0]):
            ds = new_dataset(sop_class_uid)
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
            ds.AccessionNumber = ""
            ds.Modality = modality
            ds.Manufacturer = "recon"
            ds.ReferringPhysicianName = ""
            ds.SeriesDescription = series_description
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            ds.SliceThickness = ds_string(slice_thickness_mm if slice_thickness_mm is not None else dz)
            ds.SpacingBetweenSlices = ds_string(dz)
            ds.PatientPosition = "HFS"
            ds.Laterality = ""
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = int(series_number)
            ds.InstanceNumber = k + 1
            pos = origin + normal * (k * dz)
            ds.ImagePositionPatient = [ds_string(float(p)) for p in pos]
            ds.ImageOrientationPatient = [ds_string(float(c)) for c in np.r_[d[:, 0], d[:, 1]]]
            ds.FrameOfReferenceUID = for_uid
            ds.PositionReferenceIndicator = ""
            ds.SliceLocation = ds_string(float(pos @ normal))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
            ds.PixelSpacing = [ds_string(dy), ds_string(dx)]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if signed else 0
            fill(ds, k)
            ds.PixelData = np.ascontiguousarray(stored[k], dtype="<i2" if signed else "<u2").tobytes()
            name = f"{prefix}_{k:04d}.dcm"
            ds.save_as(os.path.join(tmp, name), enforce_file_format=True)
            names.append(name)
    return [os.path.join(directory, n) for n in names]


def write_dicom_series(directory, volume, voxel_size_mm, *, direction=None, origin_mm=None,
                       series_description: str = "recon", series_number: int = 1, patient_name: str = "Anonymous^Patient",
                       patient_id: str = "recon", study_uid: str | None = None, frame_of_reference_uid: str | None = None,
                       slice_thickness_mm: float | None = None, field_strength_t: float | None = None,
                       repetition_time_ms: float | None = None, echo_time_ms: float | None = None,
                       acquisition_type: str = "2D", prefix: str = "slice", overwrite: bool = True) -> list[str]:
    """Write ``volume`` ``(z, y, x)`` (or ``(y, x)``) as an MR Image Storage series in ``directory``.

    ``voxel_size_mm`` = (dz, dy, dx): dz is the slice spacing; ``slice_thickness_mm`` defaults to it.
    Returns the file paths in slice order (``{prefix}_{k:04d}.dcm``). The series is written into a
    temporary folder renamed onto ``directory`` when complete (``recon.io.atomic``); an existing
    ``directory`` is replaced (``overwrite``) only when it holds nothing but ``.dcm`` files.
    """
    series = dict(locals())  # the options every series takes (_SERIES_OPTIONS)
    v = _check_volume(volume)
    if acquisition_type not in ("2D", "3D"):
        raise ValueError(f"acquisition_type must be '2D' or '3D', got {acquisition_type!r}")
    v = np.abs(v) if np.iscomplexobj(v) else v.astype(np.float64)
    stored, slope, intercept = uint16_rescale(v)
    lo, hi = np.percentile(v, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(v.min()), float(v.max()) if v.max() > v.min() else float(v.min()) + 1.0

    def fill(ds, k):
        ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "RM"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = acquisition_type
        ds.RepetitionTime = ds_string(repetition_time_ms) if repetition_time_ms is not None else ""
        ds.EchoTime = ds_string(echo_time_ms) if echo_time_ms is not None else ""
        ds.EchoTrainLength = ""
        if field_strength_t is not None:
            ds.MagneticFieldStrength = ds_string(field_strength_t)
        ds.WindowCenter = ds_string((lo + hi) / 2)
        ds.WindowWidth = ds_string(max(hi - lo, 1e-6))
        ds.RescaleIntercept = ds_string(intercept)
        ds.RescaleSlope = ds_string(slope)
        ds.RescaleType = "US"

    return _write_series(directory, stored, voxel_size_mm, sop_class_uid=MR_IMAGE_STORAGE, modality="MR", fill=fill,
                         **{k: series[k] for k in _SERIES_OPTIONS})


def write_ct_series(directory, hu, voxel_size_mm, *, direction=None, origin_mm=None, kvp: float | None = None,
                    series_description: str = "recon", series_number: int = 1,
                    patient_name: str = "Anonymous^Patient", patient_id: str = "recon", study_uid: str | None = None,
                    frame_of_reference_uid: str | None = None, slice_thickness_mm: float | None = None,
                    convolution_kernel: str = "", prefix: str = "slice", overwrite: bool = True) -> list[str]:
    """Write ``hu`` ``(z, y, x)`` (or ``(y, x)``), Hounsfield units, as a CT Image Storage series in
    ``directory`` (int16, slope 1, intercept 0, window presets :data:`CT_WINDOWS`; module docstring).

    ``voxel_size_mm`` (dz, dy, dx); ``direction``/``origin_mm`` place the volume in LPS
    (``recon.io.geometry``; recon's CT grids: :func:`recon.io.geometry.centred_origin`); ``kvp`` the
    tube voltage when known (empty otherwise). Returns the file paths in slice order; atomic and
    ``overwrite`` rules as :func:`write_dicom_series`.
    """
    series = dict(locals())  # the options every series takes (_SERIES_OPTIONS)
    v = _check_volume(hu)
    if np.iscomplexobj(v) or v.dtype.kind not in "fiu":
        raise ValueError(f"hu must be real numbers (Hounsfield units), got dtype {v.dtype}")
    stored = np.clip(np.rint(v.astype(np.float64)), -32768, 32767).astype(np.int16)
    names = list(CT_WINDOWS)

    def fill(ds, k):
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.KVP = ds_string(kvp) if kvp is not None else ""
        ds.AcquisitionNumber = 1
        ds.ConvolutionKernel = convolution_kernel
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = [ds_string(CT_WINDOWS[n][0]) for n in names]
        ds.WindowWidth = [ds_string(CT_WINDOWS[n][1]) for n in names]
        ds.WindowCenterWidthExplanation = [n.upper().replace("-", " ") for n in names]

    return _write_series(directory, stored, voxel_size_mm, sop_class_uid=CT_IMAGE_STORAGE, modality="CT", fill=fill,
                         **{k: series[k] for k in _SERIES_OPTIONS})


def read_dicom_series(directory_or_files, *, max_bytes: int | None = None):
    """Read a single-frame series: ``(volume (z, y, x) float64 after rescale, voxel_size_mm, direction, origin_mm)``.

    Slices are sorted along the normal of ImageOrientationPatient; dz is the spacing of their
    ImagePositionPatient (SliceThickness for one slice). Only regular files are read; a file that
    is not DICOM, lacks the geometry or pixel attributes, disagrees with the first slice's size,
    or declares more pixels than the read limit (``recon.io.limits``) raises ValueError (one line).
    """
    import pydicom

    if isinstance(directory_or_files, (str, os.PathLike)) and os.path.isdir(directory_or_files):
        files = sorted(os.path.join(directory_or_files, f) for f in os.listdir(directory_or_files))
    else:
        files = [os.fspath(f) for f in directory_or_files]
    dss = []
    for f in files:
        check_input_file(f)
        try:
            dss.append(pydicom.dcmread(f))
        except Exception as exc:  # pydicom raises many types on damaged files
            raise ValueError(f"{f}: not a readable DICOM file: {first_line(exc)}") from None
    if not dss:
        raise ValueError(f"no DICOM files in {directory_or_files}")
    try:
        iop = np.asarray(dss[0].ImageOrientationPatient, dtype=np.float64)
        if iop.shape != (6,) or not np.all(np.isfinite(iop)):
            raise ValueError(f"ImageOrientationPatient must be 6 finite numbers, got {iop.tolist()}")
        row, col = iop[:3], iop[3:]
        normal = np.cross(row, col)
        pos = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for ds in dss])
        if pos.shape != (len(dss), 3) or not np.all(np.isfinite(pos)):
            raise ValueError("ImagePositionPatient must be 3 finite numbers in every file")
        shape = (int(dss[0].Rows), int(dss[0].Columns))
        check_read_size(nbytes_of((len(dss),) + shape, 16), f"{files[0]}: a series of {len(dss)} x {shape} pixels",
                        max_bytes=max_bytes)
        order = np.argsort(pos @ normal, kind="stable")
        dss, pos = [dss[i] for i in order], pos[order]
        slices = []
        for ds in dss:
            if (int(ds.Rows), int(ds.Columns)) != shape or int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
                raise ValueError(f"every file must hold one {shape[0]} x {shape[1]} frame")
            slope, intercept = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
            if not (np.isfinite(slope) and np.isfinite(intercept)):
                raise ValueError(f"RescaleSlope/RescaleIntercept must be finite, got {slope}, {intercept}")
            slices.append(ds.pixel_array * slope + intercept)
        vol = np.stack(slices)
        dy, dx = (float(s) for s in dss[0].PixelSpacing)
        dz = float(np.median(np.diff(pos @ normal))) if len(dss) > 1 else float(dss[0].SliceThickness)
        if not np.all(np.isfinite(vol)) or not all(np.isfinite(v) for v in (dz, dy, dx)):
            raise ValueError("pixel values or spacings are not finite")
    except Exception as exc:  # missing attributes, malformed values, undecodable pixel data
        if isinstance(exc, ValueError) and str(exc).startswith(files[0]):
            raise
        raise ValueError(f"{files[0]}: not a usable DICOM series: {first_line(exc)}") from None
    return vol, np.array([dz, dy, dx]), np.stack([row, col, normal], axis=1), pos[0]
