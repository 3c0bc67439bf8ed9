"""``SliceDataset``: one item per (file, slice) of fastMRI files, as fastMRI's ``SliceDataset``.

An item is ``(kspace, mask, target, attrs, fname, slice_index)`` (numpy; ``mask`` and ``target``
may be None) or, with ``transform``, ``transform(kspace, mask, target, attrs, fname, slice_index)``.
``attrs`` holds the file's HDF5 attributes plus ``padding_left``, ``padding_right``,
``encoding_size`` and ``recon_size`` from the ISMRMRD header. It subclasses
``torch.utils.data.Dataset`` when torch is installed (plain ``object`` otherwise) and opens files per
item, so it works with multi-worker DataLoaders.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import TARGET_KEYS, FastMRIFile, FastMRIFormatError

try:  # torch is optional; this module is imported only when SliceDataset is first used
    from torch.utils.data import Dataset as _Base
except ImportError:  # pragma: no cover - depends on the environment
    _Base = object


def _files(root_or_files):
    if isinstance(root_or_files, (str, os.PathLike)):
        p = Path(root_or_files)
        if p.is_dir():
            return sorted(p.glob("*.h5"))
        if p.is_file():
            return [p]
        raise FileNotFoundError(f"no such file or directory: {p}")
    return [Path(f) for f in root_or_files]


class SliceDataset(_Base):
    """fastMRI slices from a directory of ``*.h5`` files, one file, or a list of files."""

    def __init__(self, root_or_files, challenge: str = "multicoil", transform=None):
        if challenge not in TARGET_KEYS:
            raise ValueError(f"challenge must be 'singlecoil' or 'multicoil', got {challenge!r}")
        self.challenge = challenge
        self.transform = transform
        self.recons_key = TARGET_KEYS[challenge]
        self.files = []
        self.samples = []  # (file index, slice)
        for f in _files(root_or_files):
            ff = FastMRIFile(f)
            if ff.challenge != challenge:
                raise FastMRIFormatError(f"{f}: a {ff.challenge} file in a {challenge} dataset")
            left, right = ff.header.padding if "kspace_encoding_step_1" in ff.header.limits else (0, ff.kspace_shape[-1])
            meta = {"padding_left": left, "padding_right": right, "encoding_size": ff.header.encoded_matrix,
                    "recon_size": ff.header.recon_matrix}
            self.files.append((ff, meta))
            self.samples.extend((len(self.files) - 1, s) for s in range(ff.num_slices))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} slices")
        fi, s = self.samples[i]
        ff, meta = self.files[fi]
        kspace = ff.kspace_slice(s)
        mask = ff.mask()
        target = ff.target_slice(s) if ff.target_key == self.recons_key else None
        attrs = dict(ff.attrs)
        attrs.update(meta)
        fname = Path(ff.path).name
        if self.transform is None:
            return kspace, mask, target, attrs, fname, s
        return self.transform(kspace, mask, target, attrs, fname, s)
