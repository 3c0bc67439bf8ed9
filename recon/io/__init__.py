"""File formats in and out (see docs/io.md).

Raw data in: fastMRI HDF5 (``read_fastmri``) and ISMRMRD v1 HDF5
(``read_ismrmrd``; ``write_ismrmrd`` for round trips and conversions). Images out: fastMRI
reconstruction HDF5, NIfTI, a DICOM MR series, PNG previews. Patient geometry: ``recon.io.geometry``.
"""

from .atomic import OutputSet, atomic_file, atomic_folder  # noqa: F401
from .dicom import read_dicom_series, write_dicom_series  # noqa: F401
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
from .ismrmrd import KSPACE_DIMS, IsmrmrdData, IsmrmrdFormatError, read_ismrmrd, write_ismrmrd  # noqa: F401
from .ismrmrd_header import HeaderError, IsmrmrdHeader, Limit, build_ismrmrd_header, parse_ismrmrd_header  # noqa: F401
from .limits import max_read_bytes  # noqa: F401
from .nifti import read_nifti, write_nifti  # noqa: F401
from .png import montage, window, write_montage_png, write_png  # noqa: F401

__all__ = [
    "FastMRIFile", "FastMRIFormatError", "FastMRIVolume", "read_fastmri", "TARGET_KEYS",
    "HeaderError", "IsmrmrdHeader", "Limit", "build_ismrmrd_header", "parse_ismrmrd_header",
    "OutputSet", "atomic_file", "atomic_folder", "check_input_file", "check_outputs", "max_read_bytes",
    "IsmrmrdData", "IsmrmrdFormatError", "KSPACE_DIMS", "read_ismrmrd", "write_ismrmrd",
    "write_fastmri_reconstruction", "read_fastmri_reconstruction",
    "write_nifti", "read_nifti", "write_dicom_series", "read_dicom_series",
    "write_png", "write_montage_png", "montage", "window",
    "geometry_from_ismrmrd", "nifti_affine",
]
