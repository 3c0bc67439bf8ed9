"""Reading fastMRI HDF5 files: re-exported from ``recon.io.fastmri``, their home (see that module for
the layout, the lazy per-slice reads and the limits every read checks)."""

from recon.io.fastmri import (  # noqa: F401
    TARGET_KEYS,
    FastMRIFile,
    FastMRIFormatError,
    FastMRIVolume,
    read_fastmri,
)
