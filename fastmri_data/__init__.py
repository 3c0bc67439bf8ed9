"""fastMRI-format data tools: reading files, sampling masks, metrics, a slice dataset and a small
sample-file generator. Needs numpy, scipy and h5py only; torch only for ``SliceDataset`` as a
``torch.utils.data.Dataset`` (imported lazily, on first use of ``SliceDataset``).
"""

from .header import HeaderError, IsmrmrdHeader, Limit, build_ismrmrd_header, parse_ismrmrd_header  # noqa: F401
from .io import FastMRIFile, FastMRIFormatError, FastMRIVolume, read_fastmri  # noqa: F401
from .masks import (  # noqa: F401
    EquispacedMaskFractionFunc,
    EquispacedMaskFunc,
    MaskFunc,
    RandomMaskFunc,
    apply_mask,
    create_mask_for_mask_type,
)
from .metrics import METRIC_FUNCS, mse, nmse, psnr, ssim  # noqa: F401
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
    "MaskFunc", "RandomMaskFunc", "EquispacedMaskFunc", "EquispacedMaskFractionFunc", "apply_mask",
    "create_mask_for_mask_type",
    "METRIC_FUNCS", "mse", "nmse", "psnr", "ssim",
    "SliceDataset",
    "center_crop", "fft2c", "ifft2c", "rss", "phantom", "simulate_coil_maps", "write_fastmri_multicoil",
    "generate_sample",
]


def __getattr__(name):
    # SliceDataset subclasses torch.utils.data.Dataset when torch is installed: import it lazily.
    if name == "SliceDataset":
        from .dataset import SliceDataset

        return SliceDataset
    raise AttributeError(f"module 'fastmri_data' has no attribute {name!r}")
