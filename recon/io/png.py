"""PNG previews: magnitude images with percentile windowing, and montages of volumes (Pillow)."""

from __future__ import annotations

import math
import os

import numpy as np

from .atomic import atomic_file


def window(image, percentiles=(0.5, 99.5), vmin=None, vmax=None) -> np.ndarray:
    """Magnitude of ``image`` mapped to uint8: ``vmin``/``vmax`` default to the given percentiles."""
    a = np.asarray(image)
    a = np.abs(a) if np.iscomplexobj(a) else a.astype(np.float64)
    if a.size == 0:
        raise ValueError("window: empty image")
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise ValueError("window: image has no finite values")
    lo = float(np.percentile(finite, percentiles[0])) if vmin is None else float(vmin)
    hi = float(np.percentile(finite, percentiles[1])) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.rint(out * 255).astype(np.uint8)


def montage(volume, ncols: int | None = None, pad: int = 1, fill=0.0) -> np.ndarray:
    """Tile the slices of ``volume`` (n, H, W) into one 2D array (row-major, ``ncols`` default ceil(sqrt(n)))."""
    v = np.asarray(volume)
    if v.ndim == 2:
        return v
    if v.ndim != 3 or v.shape[0] < 1:
        raise ValueError(f"montage: volume must be (n, H, W), got shape {v.shape}")
    n, h, w = v.shape
    ncols = int(ncols) if ncols else math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), fill, dtype=v.dtype)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = v[i]
    return out


def write_png(path, image, *, percentiles=(0.5, 99.5), vmin=None, vmax=None, ncols: int | None = None,
              overwrite: bool = True) -> str:
    """Write a grayscale PNG of ``image`` (2D, or a volume (n, H, W) as a montage), atomically
    (``recon.io.atomic``). Returns ``path``.

    Windowing uses the magnitude; the window is computed over the whole image/volume.
    """
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 3:
        a = np.abs(a) if np.iscomplexobj(a) else a
        lo = np.percentile(a, percentiles[0]) if vmin is None else vmin
        hi = np.percentile(a, percentiles[1]) if vmax is None else vmax
        a = montage(a, ncols=ncols, fill=lo)
        vmin, vmax = lo, hi
    if a.ndim != 2:
        raise ValueError(f"write_png: image must be 2D or (n, H, W), got shape {np.shape(image)}")
    im = Image.fromarray(window(a, percentiles, vmin, vmax), mode="L")
    with atomic_file(path, overwrite=overwrite) as tmp:
        im.save(tmp, format="PNG")
    return os.fspath(path)


def write_montage_png(path, volume, **kwargs) -> str:
    """``write_png`` of a volume (n, H, W) as a montage."""
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"write_montage_png: volume must be (n, H, W), got shape {v.shape}")
    return write_png(path, v, **kwargs)
