"""File formats in and out: fastMRI HDF5 and ISMRMRD raw data; fastMRI-reconstruction HDF5, NIfTI,
DICOM and PNG images. See docs/io.md."""

from fastmri_data.io import FastMRIFile, FastMRIFormatError, FastMRIVolume, read_fastmri  # noqa: F401

from .ismrmrd import IsmrmrdData, IsmrmrdFormatError, KSPACE_DIMS, read_ismrmrd, write_ismrmrd  # noqa: F401
