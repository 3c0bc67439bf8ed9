"""Training images: where they come from, how they are augmented, and how priors differ from them.

Sources (magnitude images, 2D, float32, about [0, 1]); each has a train and a validation split
that share no image:

- ``mni``: slices of nilearn's MNI152 2009 template (shipped inside nilearn: no download), axial
  and coronal; the T1 template itself and random mixes of its grey/white-matter maps and a CSF map
  (brain mask minus grey and white matter) for other contrasts (T2-, PD-, FLAIR-like weightings).
  Split: slices in blocks of 8 positions; every 5th block (and a 2-slice gap around it) is validation.
- ``ellipses``: random ellipses (:func:`recon.ct.random_ellipses`) with smooth texture and, for
  half of them, a bright shell (skull-like); validation from a disjoint seed range.
- ``shepp``: recon's Shepp-Logan head (:func:`fastmri_data.phantom`, slices of its 3D variant).
- ``folder``: a user's own images: every ``.npy`` (2D, or 3D as slices along the first axis),
  ``.dcm`` and ``.nii``/``.nii.gz`` file (slices along the last axis) in a folder; DICOM values
  rescaled (slope/intercept); images in Hounsfield units (minimum below -500) become attenuation
  relative to water, ``max(0, 1 + HU/1000)``, others magnitudes; slices sorted by file and index,
  every 5th slice is validation.
- ``raw``: fully sampled multi-coil raw data (fastMRI, ISMRMRD) in a folder: not an image source
  but real k-space, see :mod:`recon.nets.rawdata` (MRI only).

Augmentations (:func:`augment`): flips, rotation, zoom, gamma, a smooth multiplicative bias field,
random crop/pad to the training size. MRI adds a random smooth phase (in the simulator).

Priors (:func:`prior_pair`): a target and a prior that differ the way a previous scan differs: a
lesion present in only one of them (added or removed), a small smooth deformation and a shift of
the prior, a slight global intensity change; the mask of the changed region comes with them
(``varied=True``, used in training: 1-3 lesions, subtle ones too, larger deformations, a smooth
intensity difference).

CT-like contrast (:func:`ct_like`): any source image mapped to CT's histogram (soft tissue near
water with small contrast, bone, air) for the CT models.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

SOURCES = ("mni", "ellipses", "shepp", "folder", "raw")
FOLDER_SUFFIXES = (".npy", ".dcm", ".nii", ".nii.gz")


# ---- MNI152 ----------------------------------------------------------------------------------------

MNI_FILES = ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
             "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")


def _mni_paths() -> list[str]:
    """The template files inside the installed nilearn package (found without importing nilearn,
    whose import takes seconds)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'mni' training source needs nilearn (pip install nilearn)")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    paths = [os.path.join(folder, f) for f in MNI_FILES]
    if not all(os.path.isfile(p) for p in paths):  # another nilearn layout: ask nilearn itself
        from nilearn import datasets

        paths = [datasets.MNI152_FILE_PATH, datasets.GM_MNI152_FILE_PATH, datasets.WM_MNI152_FILE_PATH]
    return paths


@functools.lru_cache(maxsize=1)
def _mni_volumes():
    """(t1, gm, wm, csf) float32 volumes in [0, 1], axes (x, y, z) as stored by nilearn."""
    import nibabel as nib

    vols = [np.asarray(nib.load(p).get_fdata(), dtype=np.float32) for p in _mni_paths()]
    t1, gm, wm = (v / max(float(v.max()), 1e-6) for v in vols)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing((gm + wm) > 0.2, iterations=3))
    brain = ndimage.binary_dilation(brain, iterations=2)
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0, 1)
    return t1, gm, wm, csf


def _split_positions(n: int, lo: int, hi: int, split: str) -> list[int]:
    """Slice positions in ``[lo, hi)`` of a split: blocks of 8, every 5th block validation, 2-slice
    gaps next to validation blocks are in neither split (neighbouring slices look alike)."""
    pos = np.arange(lo, hi)
    block = (pos - lo) // 8
    val = block % 5 == 2
    near = np.zeros_like(val)
    for d in (1, 2):
        near |= np.roll(val, d) | np.roll(val, -d)
    if split == "val":
        return [int(p) for p in pos[val]]
    return [int(p) for p in pos[~val & ~near]]


@functools.lru_cache(maxsize=4)
def mni_slices(split: str = "train") -> list[tuple[str, int]]:
    """(plane, index) of the MNI slices of a split (axial z and coronal y slices with brain)."""
    t1 = _mni_volumes()[0]
    out = []
    _, ny, nz = t1.shape
    out += [("axial", z) for z in _split_positions(nz, int(0.18 * nz), int(0.80 * nz), split)]
    out += [("coronal", y) for y in _split_positions(ny, int(0.22 * ny), int(0.78 * ny), split)]
    return out


def mni_t1(plane: str, index: int) -> np.ndarray:
    """The MNI152 T1 template's slice (``'axial'`` z or ``'coronal'`` y ``index``), anterior up, max 1."""
    t1 = _mni_volumes()[0]
    img = t1[:, :, index] if plane == "axial" else t1[:, index, :]
    return np.rot90(img).astype(np.float32)


def _mni_image(plane: str, index: int, rng) -> np.ndarray:
    t1, gm, wm, csf = _mni_volumes()
    take = (lambda v: v[:, :, index]) if plane == "axial" else (lambda v: v[:, index, :])
    if rng.uniform() < 0.4:
        img = take(t1)
    else:  # a random contrast: weights of grey, white matter and CSF
        w = rng.uniform(0.05, 1.0, 3)
        img = w[0] * take(gm) + w[1] * take(wm) + w[2] * take(csf)
    return np.rot90(img).astype(np.float32)  # anterior up


# ---- synthetic ---------------------------------------------------------------------------------------

def _smooth_noise(rng, shape, sigma):
    t = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return t / max(float(t.std()), 1e-12)


def _ellipse_image(rng, n: int) -> np.ndarray:
    from ..ct.phantom import Ellipse, random_ellipses, rasterize

    r = n / 2 * 0.9
    ells = [Ellipse(rng.uniform(0.3, 0.7), (r * rng.uniform(0.7, 0.95), r * rng.uniform(0.6, 0.95)), (0.0, 0.0),
                    rng.uniform(0, np.pi))]
    shell = rng.uniform() < 0.5
    if shell:  # bright outer shell, darker inside
        a, b = ells[0].axes
        ells.append(Ellipse(-0.25 - 0.2 * rng.uniform(), (0.9 * a, 0.9 * b), (0.0, 0.0), ells[0].angle))
    ells += random_ellipses(rng, int(rng.integers(4, 14)), 2, 0.75 * r, value_range=(-0.25, 0.35), min_axis=0.04)
    img = rasterize(ells, (n, n), 1.0, supersample=2).astype(np.float32)
    img = np.clip(img, 0, None)
    img *= 1 + 0.12 * _smooth_noise(rng, img.shape, rng.uniform(0.8, 3.0))
    return np.clip(img, 0, None).astype(np.float32)


def _shepp_image(rng, n: int) -> np.ndarray:
    from fastmri_data import phantom

    s = int(rng.integers(0, 9))
    img = phantom(9, n, n)[s]
    return (img * (1 + 0.1 * _smooth_noise(rng, img.shape, 2.0))).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _read_volume(path: str) -> np.ndarray:
    """A file of the ``folder`` source as slices ``(S, y, x)`` float32 magnitudes."""
    try:
        if path.endswith(".npy"):
            a = np.load(path, allow_pickle=False)
            a = a[None] if a.ndim == 2 else a
        elif path.endswith(".dcm"):
            import pydicom

            d = pydicom.dcmread(path)
            slope, intercept = getattr(d, "RescaleSlope", 1) or 1, getattr(d, "RescaleIntercept", 0) or 0
            a = d.pixel_array * float(slope) + float(intercept)
            a = a[None] if a.ndim == 2 else a
        else:
            import nibabel as nib

            a = np.asarray(nib.load(path).get_fdata())
            a = np.moveaxis(a[..., None] if a.ndim == 2 else a, -1, 0)
    except Exception as exc:  # noqa: BLE001 - numpy, pydicom and nibabel raise many types for bad files
        raise ValueError(f"{path}: not a readable image file ({type(exc).__name__}: {exc})") from None
    if a.ndim != 3 or min(a.shape[1:]) < 8:
        raise ValueError(f"{path}: expected 2D images or a stack of them (at least 8x8), got shape {a.shape}")
    a = np.asarray(a)
    if not np.isrealobj(a):
        a = np.abs(a)
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: contains NaN or Inf")
    if a.min() < -500:  # Hounsfield units: attenuation relative to water
        return np.clip(1 + a / 1000, 0, None).astype(np.float32)
    return np.abs(a).astype(np.float32)


@functools.lru_cache(maxsize=8)
def folder_slices(folder: str, split: str) -> list[tuple[str, int]]:
    """(file, slice) of the ``folder`` source in a split (every 5th slice is validation)."""
    import os

    if not os.path.isdir(folder):
        raise ValueError(f"training folder {folder!r} does not exist")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(FOLDER_SUFFIXES))
    all_slices = [(f, i) for f in files for i in range(_read_volume(f).shape[0])]
    if len(all_slices) < 2:
        raise ValueError(f"training folder {folder!r} holds {len(all_slices)} image slices "
                         f"({', '.join(FOLDER_SUFFIXES)}); need at least 2")
    return [sl for k, sl in enumerate(all_slices) if (k % 5 == 2) == (split == "val")]


def base_image(source: str, split: str, index: int, rng, n: int, folder: str | None = None) -> np.ndarray:
    """A raw image of ``source`` (before augmentation), roughly ``n`` pixels across."""
    if source == "folder":
        if folder is None:
            raise ValueError("the 'folder' training source needs DataConfig.folder")
        sl = folder_slices(folder, split)
        f, i = sl[index % len(sl)]
        img = _read_volume(f)[i]
        return img / max(float(img.max()), 1e-12)
    if source == "mni":
        sl = mni_slices(split)
        plane, pos = sl[index % len(sl)]
        return _mni_image(plane, pos, rng)
    if source == "ellipses":
        return _ellipse_image(rng, n)
    if source == "shepp":
        return _shepp_image(rng, n)
    raise ValueError(f"unknown training source {source!r}; known: {SOURCES}")


def source_size(source: str, split: str, folder: str | None = None) -> int | None:
    """Number of distinct images of a split (None: generated, unlimited)."""
    if source == "raw":
        from .rawdata import raw_slices

        return len(raw_slices(folder, split))
    if source == "folder":
        return len(folder_slices(folder, split))
    return len(mni_slices(split)) if source == "mni" else None


# ---- augmentation ---------------------------------------------------------------------------------

def fit_square(x: np.ndarray, n: int, rng=None) -> np.ndarray:
    """The last two axes cropped or zero-padded to ``(n, n)``: padding centred; cropping centred, or at
    a random offset drawn from ``rng`` (one draw per cropped axis, in axis order)."""
    out = np.zeros(x.shape[:-2] + (n, n), dtype=x.dtype)
    src, dst = [], []
    for m in x.shape[-2:]:
        if m >= n:
            o = (m - n) // 2 if rng is None else int(rng.integers(0, m - n + 1)) if m > n else 0
            src.append(slice(o, o + n))
            dst.append(slice(0, n))
        else:
            o = (n - m) // 2
            src.append(slice(0, m))
            dst.append(slice(o, o + m))
    out[(Ellipsis,) + tuple(dst)] = x[(Ellipsis,) + tuple(src)]
    return out


def augment(img: np.ndarray, rng, n: int) -> np.ndarray:
    """Flips, rotation (any angle), zoom (0.8-1.25 relative to fitting the image into ``n``),
    gamma (0.7-1.4), smooth bias field (+-20 %), crop/pad to ``(n, n)``; normalised to max 1."""
    if rng.uniform() < 0.5:
        img = img[:, ::-1]
    if rng.uniform() < 0.3:
        img = img[::-1, :]
    img = ndimage.rotate(img, rng.uniform(0, 360), reshape=False, order=1, mode="constant")
    fit = n / max(img.shape)
    img = ndimage.zoom(img, fit * rng.uniform(0.85, 1.3), order=1)
    img = fit_square(np.clip(img, 0, None).astype(np.float32), n, rng)
    m = float(img.max())
    if m <= 0:
        return img
    img = (img / m) ** rng.uniform(0.7, 1.4)
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    c = rng.normal(0, 0.12, 6)
    bias = np.exp(c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx ** 2 + c[4] * yy ** 2 + c[5])
    img = img * bias
    return (img / max(float(img.max()), 1e-12)).astype(np.float32)


# ---- priors -------------------------------------------------------------------------------------------

def _lesion(rng, shape, support: np.ndarray):
    """A smooth blob (Gaussian ellipse of 3-8 px radius) at a random point of ``support``, and its
    region mask."""
    n = shape[0]
    pts = np.argwhere(support)
    cy, cx = pts[rng.integers(len(pts))] if len(pts) else (n // 2, n // 2)
    ry, rx = rng.uniform(3, 8, 2) * n / 128
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    blob = np.exp(-0.5 * d2 * 2.5).astype(np.float32)
    return blob, d2 <= 1.5


def _warp(img: np.ndarray, rng, max_disp: float, max_shift: float) -> np.ndarray:
    n = img.shape[0]
    sigma = n / 8
    dy = _smooth_noise(rng, img.shape, sigma) * max_disp / 3 + rng.uniform(-max_shift, max_shift)
    dx = _smooth_noise(rng, img.shape, sigma) * max_disp / 3 + rng.uniform(-max_shift, max_shift)
    yy, xx = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(img.shape[1], dtype=np.float32), indexing="ij")
    return ndimage.map_coordinates(img, [yy + dy, xx + dx], order=1, mode="constant").astype(np.float32)


def _add_lesion(img: np.ndarray, rng, support: np.ndarray, amp_range=(0.25, 0.6)):
    """``(img with a lesion, its region)``: a smooth blob of contrast +-``amp_range`` of the image maximum."""
    blob, region = _lesion(rng, img.shape, support)
    amp = rng.choice([-1, 1]) * rng.uniform(*amp_range)
    return np.clip(img + amp * blob * float(img.max()), 0, None).astype(np.float32), region


LESION_KINDS = ("new", "removed", "both")


def prior_pair(img: np.ndarray, rng, *, max_disp: float = 1.5, max_shift: float = 2.0, kind: str | None = None,
               varied: bool = False):
    """``(target, prior, changed)`` from an augmented image: a lesion (contrast +-0.25 to 0.6 of
    the image maximum) only in the target (new), only in the prior (removed) or in both (unchanged
    anatomy), the prior deformed (smooth displacement up to ``max_disp`` px) and shifted (up to
    ``max_shift`` px) and its intensity scaled by 0.9-1.1; ``changed`` marks the lesion region
    that differs (all False when the lesion is in both). ``kind`` forces 'new', 'removed' or 'both'.

    ``varied`` (training): 1 to 3 lesions, each new, removed or in both (new ones more often, and
    subtle ones too: contrast 0.1-0.6), a displacement up to ``2 max_disp`` and a smooth intensity
    difference between prior and target (+-10 %): priors that differ from the target where it matters."""
    support = img > 0.2 * float(img.max())
    if kind is not None and kind not in LESION_KINDS:
        raise ValueError(f"kind must be one of {LESION_KINDS}, got {kind!r}")
    if not varied or kind is not None:
        lesioned, region = _add_lesion(img, rng, support)
        if kind is None:
            kind = LESION_KINDS[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
        target = lesioned if kind in ("new", "both") else img
        prior = lesioned if kind in ("removed", "both") else img
        prior = _warp(prior, rng, max_disp, max_shift) * rng.uniform(0.9, 1.1)
        changed = region if kind != "both" else np.zeros_like(region)
        return target.astype(np.float32), prior.astype(np.float32), changed
    target, prior = img.copy(), img.copy()
    changed = np.zeros(img.shape, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        k = LESION_KINDS[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        blob, region = _lesion(rng, img.shape, support)
        amp = rng.choice([-1, 1]) * rng.uniform(0.1, 0.6) * float(img.max())
        if k in ("new", "both"):
            target = np.clip(target + amp * blob, 0, None)
        if k in ("removed", "both"):
            prior = np.clip(prior + amp * blob, 0, None)
        if k != "both":
            changed |= region
    prior = _warp(prior, rng, rng.uniform(0, 2 * max_disp), max_shift)
    n = img.shape[0]
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, img.shape[1]), indexing="ij")
    c = rng.normal(0, 0.05, 3)
    prior = prior * rng.uniform(0.9, 1.1) * np.exp(c[0] * xx + c[1] * yy + c[2] * xx * yy)
    return target.astype(np.float32), prior.astype(np.float32), changed


# ---- CT-like contrast ------------------------------------------------------------------------------

def ct_like(img: np.ndarray, rng) -> np.ndarray:
    """An image with CT's histogram from any source image (max 1 in, max 1 out): most of the body
    near one soft-tissue level (water), its structure as small contrast around it (+-5 to 25 %),
    the brightest few per cent as bone (1.3-2.2 x water), optional air pockets inside the body,
    air outside. Real CT slices look like this; the MRI-like sources have far more contrast."""
    support = ndimage.binary_fill_holes(img > rng.uniform(0.05, 0.2) * float(img.max()))
    out = np.zeros_like(img, dtype=np.float32)
    if not support.any():
        return out
    v = img[support]
    med = float(np.median(v))
    spread = max(float(np.percentile(v, 95) - np.percentile(v, 5)), 1e-6)
    soft = 1.0 + rng.uniform(0.05, 0.25) * (img - med) / spread
    bone_thr = np.percentile(v, 100 - rng.uniform(2, 10))
    bone = support & (img >= bone_thr)
    soft = np.where(bone, rng.uniform(1.3, 2.2) * (0.85 + 0.15 * img / max(float(v.max()), 1e-6)), soft)
    if rng.uniform() < 0.3:  # air pockets (bowel gas, airways): the darkest part of the body
        air = support & (img <= np.percentile(v, rng.uniform(1, 8)))
        soft = np.where(ndimage.binary_opening(air), rng.uniform(0.0, 0.3), soft)
    out[support] = np.clip(soft[support], 0, None)
    out = ndimage.gaussian_filter(out, rng.uniform(0.3, 0.8))
    return (out / max(float(out.max()), 1e-12)).astype(np.float32)
