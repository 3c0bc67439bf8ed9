"""Small real data sets bundled with recon (each with its license next to it).

``recon.data.path(name)`` gives the file of a bundled sample by its short name (``SAMPLES``) or by
its path relative to this package (``'mri/cardiac_radial_12coil_25spokes.h5'``); it works from a
source checkout and from an installed wheel alike. ``recon mri --sample NAME`` uses the same names.
"""

from __future__ import annotations

import os
from importlib import resources

#: short name -> (relative path, one-line description)
SAMPLES = {
    "cardiac-radial": ("mri/cardiac_radial_12coil_25spokes.h5",
                       "in-vivo cardiac short axis, 12-coil radial, 25 spokes x 256 samples "
                       "(ISMRMRD; gpuNUFFT demo data, MIT, Knoll et al. ISMRM 2014)"),
    "brain-poisson": ("mri/brain_8coil_poisson.h5",
                      "in-vivo brain, 8-coil Cartesian, Poisson-disc undersampled (12.4 % of k-space) "
                      "(fastMRI-format HDF5; SigPy MRI tutorial data, BSD-3-Clause)"),
    "abdomen-4d-sos": ("mri/abdomen_4d_sos.h5",
                       "SIMULATED free-breathing abdomen, 4-coil golden-angle stack of stars 12x64x64, 128 angles, "
                       "38 s with a deep breath, bellows and true motion trace (ISMRMRD; made by "
                       "recon.mri.dynamic.simulate, BSD-3-Clause)"),
}


def path(name: str) -> str:
    """Filesystem path of a bundled sample (short name from :data:`SAMPLES` or a relative path).
    Raises ValueError for an unknown name, FileNotFoundError if the file is missing from the install."""
    rel = SAMPLES[name][0] if name in SAMPLES else name
    if name not in SAMPLES and (os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/")):
        raise ValueError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    p = resources.files(__name__).joinpath(*rel.split("/"))
    if not p.is_file():
        if name not in SAMPLES:
            raise ValueError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
        raise FileNotFoundError(f"bundled sample {name!r} is missing ({rel}); reinstall recon")
    return os.fspath(p)


def list_samples() -> list[str]:
    """Lines 'name: description' for the bundled samples."""
    return [f"{k}: {v[1]}" for k, v in SAMPLES.items()]
