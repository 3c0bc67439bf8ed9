"""File formats in and out (see docs/io.md).

Raw data in: fastMRI HDF5 (``read_fastmri``, from ``fastmri_data``) and ISMRMRD v1 HDF5
(``read_ismrmrd``; ``write_ismrmrd`` for round trips and conversions). Images out: fastMRI
reconstruction HDF5, NIfTI, a DICOM MR series, PNG previews. Patient geometry: ``recon.io.geometry``.
"""

from fastmri_data.io import FastMRIFile, FastMRIFormatError, FastMRIVolume, read_fastmri  # noqa: F401

from .dicom import read_dicom_series, write_dicom_series  # noqa: F401
from .fastmri import read_fastmri_reconstruction, write_fastmri_reconstruction  # noqa: F401
from .geometry import geometry_from_ismrmrd, nifti_affine  # noqa: F401
from .ismrmrd import KSPACE_DIMS, IsmrmrdData, IsmrmrdFormatError, read_ismrmrd, write_ismrmrd  # noqa: F401
from .nifti import read_nifti, write_nifti  # noqa: F401
from .png import montage, window, write_montage_png, write_png  # noqa: F401

__all__ = [
    "FastMRIFile", "FastMRIFormatError", "FastMRIVolume", "read_fastmri",
    "IsmrmrdData", "IsmrmrdFormatError", "KSPACE_DIMS", "read_ismrmrd", "write_ismrmrd",
    "write_fastmri_reconstruction", "read_fastmri_reconstruction",
    "write_nifti", "read_nifti", "write_dicom_series", "read_dicom_series",
    "write_png", "write_montage_png", "montage", "window",
    "geometry_from_ismrmrd", "nifti_affine",
]
