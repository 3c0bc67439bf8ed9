"""DICOM MR Image Storage series output (one file per slice) through pydicom, and reading it back.

Geometry follows ``recon.io.geometry``. Pixel values: magnitude (complex input takes ``abs``) is
stored as uint16 with ``RescaleSlope``/``RescaleIntercept``: ``intercept = min(0, vmin)``,
``slope = (vmax - intercept) / 65535`` over the whole volume (one scaling for the series, so the
slices compare), ``stored = round((value - intercept) / slope)``; a reader recovers
``value = stored * slope + intercept`` to within ``slope / 2``. Window centre/width are set from the
0.5 and 99.5 percentiles. The files use Explicit VR Little Endian and fresh UIDs (study, series,
frame of reference and one SOP instance per slice; pass ``study_uid``/``frame_of_reference_uid`` to
put several series in one study/frame).
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from .atomic import atomic_folder
from .files import check_input_file, first_line
from .limits import check_read_size, nbytes_of
from .geometry import check_direction, check_voxel_size, default_origin

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _ds(x: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    s = f"{x:.10g}"
    if len(s) > 16:
        s = f"{x:.6e}"
    return s


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
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    v = np.asarray(volume)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or min(v.shape) < 1:
        raise ValueError(f"volume must be (z, y, x) or (y, x), got shape {np.shape(volume)}")
    if not np.all(np.isfinite(v)):
        raise ValueError("volume contains NaN or Inf")
    if acquisition_type not in ("2D", "3D"):
        raise ValueError(f"acquisition_type must be '2D' or '3D', got {acquisition_type!r}")
    v = np.abs(v) if np.iscomplexobj(v) else v.astype(np.float64)
    vs = check_voxel_size(voxel_size_mm)
    d = check_direction(direction)
    origin = default_origin(v.shape, vs, d) if origin_mm is None else np.asarray(origin_mm, dtype=np.float64)
    dz, dy, dx = vs
    vmin, vmax = float(v.min()), float(v.max())
    intercept = min(0.0, vmin)
    slope = (vmax - intercept) / 65535.0 if vmax > intercept else 1.0
    stored = np.clip(np.rint((v - intercept) / slope), 0, 65535).astype(np.uint16)
    lo, hi = np.percentile(v, [0.5, 99.5])
    if hi <= lo:
        lo, hi = vmin, vmax if vmax > vmin else vmin + 1.0
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    for_uid = frame_of_reference_uid or generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    normal = d[:, 2]
    directory = os.fspath(directory)
    with atomic_folder(directory, overwrite=overwrite, replaceable=lambda name: name.endswith(".dcm")) as tmp:
        paths = []
        for k in range(v.shape[0]):
            sop_uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
            ds.AccessionNumber = ""
            ds.Modality = "MR"
            ds.Manufacturer = "recon"
            ds.ReferringPhysicianName = ""
            ds.SeriesDescription = series_description
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            ds.ScanningSequence = "RM"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = acquisition_type
            ds.SliceThickness = _ds(slice_thickness_mm if slice_thickness_mm is not None else dz)
            ds.RepetitionTime = _ds(repetition_time_ms) if repetition_time_ms is not None else ""
            ds.EchoTime = _ds(echo_time_ms) if echo_time_ms is not None else ""
            ds.EchoTrainLength = ""
            if field_strength_t is not None:
                ds.MagneticFieldStrength = _ds(field_strength_t)
            ds.SpacingBetweenSlices = _ds(dz)
            ds.PatientPosition = "HFS"
            ds.Laterality = ""
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = int(series_number)
            ds.InstanceNumber = k + 1
            pos = origin + normal * (k * dz)
            ds.ImagePositionPatient = [_ds(float(p)) for p in pos]
            ds.ImageOrientationPatient = [_ds(float(c)) for c in np.r_[d[:, 0], d[:, 1]]]
            ds.FrameOfReferenceUID = for_uid
            ds.PositionReferenceIndicator = ""
            ds.SliceLocation = _ds(float(pos @ normal))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(v.shape[1]), int(v.shape[2])
            ds.PixelSpacing = [_ds(dy), _ds(dx)]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.WindowCenter = _ds((lo + hi) / 2)
            ds.WindowWidth = _ds(max(hi - lo, 1e-6))
            ds.RescaleIntercept = _ds(intercept)
            ds.RescaleSlope = _ds(slope)
            ds.RescaleType = "US"
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            name = f"{prefix}_{k:04d}.dcm"
            ds.save_as(os.path.join(tmp, name), enforce_file_format=True)
            paths.append(name)
    return [os.path.join(directory, n) for n in paths]


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
