"""File formats in and out (see docs/io.md).

Raw data in: ``read_raw(path)`` gives a ``RawData`` for a fastMRI or ISMRMRD file (format detected
from the content): every acquisition with its full header, noise scans, waveforms and the parsed
XML header, plus views that group acquisitions for reconstruction (``recon.io.raw``). A socket
stream feeds the same ``AcquisitionDecoder`` as the file reader (MRD v1 layout: ``recon.io.mrd``).
Also ``read_fastmri`` / ``FastMRIFile`` (fastMRI HDF5), ``read_ismrmrd`` / ``write_ismrmrd``
(ISMRMRD v1 HDF5) and the ISMRMRD XML header (``parse_ismrmrd_header``, ``build_ismrmrd_header``).

CT raw data in: plain sinogram files with a geometry file (``read_sinogram``, ``recon.io.sinogram``)
and DICOM-CT-PD projection series (``read_dicom_ct_pd`` / ``write_dicom_ct_pd``, ``recon.io.dicom_ct_pd``).

Images out: fastMRI reconstruction HDF5, NIfTI, DICOM MR and CT series, PNG previews; every writer is
atomic (``recon.io.atomic``). Patient geometry: ``recon.io.geometry``. Reading rules (regular files
only, nothing from outside an HDF5 file, bounded allocations): ``recon.io.files``,
``recon.io.hdf5``, ``recon.io.limits``.
"""

from .atomic import OutputSet, atomic_file, atomic_folder  # noqa: F401
from .dicom import CT_WINDOWS, read_dicom_series, write_ct_series, write_dicom_series  # noqa: F401
from .dicom_ct_pd import (  # noqa: F401
    CylindricalDetector,
    DicomCtPdWarning,
    HelicalScan,
    read_dicom_ct_pd,
    write_dicom_ct_pd,
)
from .fastmri import (  # noqa: F401
    TARGET_KEYS,
    FastMRIFile,
    FastMRIFormatError,
    FastMRIVolume,
    read_fastmri,
    read_fastmri_reconstruction,
    write_fastmri_reconstruction,
)
from .files import check_input_file, check_outputs  # noqa: F401
from .geometry import geometry_from_ismrmrd, nifti_affine  # noqa: F401
from .ismrmrd import IsmrmrdData, read_ismrmrd, write_ismrmrd, write_ismrmrd_raw  # noqa: F401
from .ismrmrd_header import HeaderError, IsmrmrdHeader, Limit, build_ismrmrd_header, parse_ismrmrd_header  # noqa: F401
from .limits import max_read_bytes  # noqa: F401
from .mrd import IsmrmrdFormatError  # noqa: F401
from .nifti import read_nifti, write_nifti  # noqa: F401
from .png import montage, window, write_montage_png, write_png  # noqa: F401
from .sinogram import (  # noqa: F401
    SinogramFile,
    SinogramFileError,
    read_array,
    read_geometry_file,
    read_sinogram,
    write_geometry_file,
)
from .raw import (  # noqa: F401
    GROUP_DIMS,
    KSPACE_DIMS,
    AcquisitionDecoder,
    Acquisitions,
    RawData,
    RawSlice,
    Waveforms,
    detect_format,
    read_raw,
)

__all__ = [
    "RawData", "RawSlice", "Acquisitions", "Waveforms", "AcquisitionDecoder", "read_raw", "detect_format",
    "GROUP_DIMS", "KSPACE_DIMS",
    "FastMRIFile", "FastMRIFormatError", "FastMRIVolume", "read_fastmri", "TARGET_KEYS",
    "IsmrmrdData", "IsmrmrdFormatError", "read_ismrmrd", "write_ismrmrd", "write_ismrmrd_raw",
    "HeaderError", "IsmrmrdHeader", "Limit", "build_ismrmrd_header", "parse_ismrmrd_header",
    "write_fastmri_reconstruction", "read_fastmri_reconstruction",
    "write_nifti", "read_nifti", "write_dicom_series", "read_dicom_series", "write_ct_series", "CT_WINDOWS",
    "HelicalScan", "CylindricalDetector", "DicomCtPdWarning", "read_dicom_ct_pd", "write_dicom_ct_pd",
    "SinogramFile", "SinogramFileError", "read_array", "read_geometry_file", "read_sinogram", "write_geometry_file",
    "write_png", "write_montage_png", "montage", "window",
    "geometry_from_ismrmrd", "nifti_affine",
    "OutputSet", "atomic_file", "atomic_folder", "check_input_file", "check_outputs", "max_read_bytes",
]
