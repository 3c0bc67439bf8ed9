"""fastMRI-format data tools: reading files, sampling masks, metrics, a slice dataset and a small
sample-file generator. Needs numpy, scipy and h5py only; torch only for ``SliceDataset`` as a
``torch.utils.data.Dataset`` (imported lazily, on first use of ``SliceDataset``).
"""

from .header import HeaderError, IsmrmrdHeader, Limit, build_ismrmrd_header, parse_ismrmrd_header  # noqa: F401
from .io import FastMRIFile, FastMRIFormatError, FastMRIVolume, read_fastmri  # noqa: F401
from .synthetic import (  # noqa: F401
    center_crop,
    fft2c,
    generate_sample,
    ifft2c,
    phantom,
    rss,
    simulate_coil_maps,
    write_fastmri_multicoil,
)

__all__ = [
    "FastMRIFile", "FastMRIFormatError", "FastMRIVolume", "HeaderError", "IsmrmrdHeader", "Limit",
    "build_ismrmrd_header", "parse_ismrmrd_header", "read_fastmri",
    "center_crop", "fft2c", "ifft2c", "rss", "phantom", "simulate_coil_maps", "write_fastmri_multicoil",
    "generate_sample",
]
