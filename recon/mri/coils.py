"""Coil sensitivity estimation (ESPIRiT, low-resolution, Walsh) and SVD coil compression.

Data layout: multicoil k-space ``(c, *im_shape)`` (2D ``(c, y, x)`` or 3D ``(c, z, y, x)``) on the
centred orthonormal FFT grid of :mod:`recon.conventions`; entries that were not acquired are exactly
zero. Maps have the same shape, are complex64, and are normalised so that ``sum_c |S_c|^2 = 1`` where
they are non-zero (ESPIRiT, Walsh) or where the coil images have signal (low resolution). Their phase
is made smooth by referring it to a "virtual body coil" (the dominant principal component of the
calibration data), not to one physical coil.

ESPIRiT (Uecker et al., MRM 2014): the calibration region's patches span a subspace; the projection
onto it, averaged over all patch positions, is a convolution in k-space and hence a c x c matrix
``G(r)`` at every pixel in image space; the sensitivities are the eigenvectors with eigenvalue ~1.
Here ``G`` is formed exactly from the kernel subspace: its Fourier coefficients live on a
``(2k-1)^d`` support, so it is evaluated by small separable DFTs, chunked over the first image axis,
followed by one batched Hermitian eigen-decomposition per chunk.

Backends: every function takes numpy arrays or torch tensors (CPU or CUDA) and returns the kind of
its k-space input, on its device, computed there (``torch.fft``, batched ``torch.linalg.eigh``).
Host-side, once per call, are only plan-time facts: the boolean sampling pattern that picks the
calibration box, the signal-subspace size, small DFT and spline-interpolation matrices (functions of
the shapes alone) and non-Cartesian trajectories. numpy results are those of the numpy code as it
was; torch results equal them to float32 rounding.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from .. import _array
from ..ops.backend import param_like
from ..ops.linear import cast_param

# ---- helpers ------------------------------------------------------------------------------------


def _as_kspace(kspace, name="kspace", min_ndim=3):
    """``kspace`` checked (numpy array or torch tensor, complex, finite, ``min_ndim`` or one more axes)."""
    if not (isinstance(kspace, np.ndarray) or _array.is_torch(kspace)):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(kspace).__name__}")
    if kspace.ndim not in (min_ndim, min_ndim + 1):
        raise ValueError(f"{name}: expected shape (coils, y, x) or (coils, z, y, x), got {tuple(kspace.shape)}")
    if not _array.is_complex(kspace):
        raise TypeError(f"{name}: expected complex data, got {_array.dtype_name(kspace)}")
    if not all_finite(kspace):
        raise ValueError(f"{name}: contains NaN or Inf")
    return kspace


def all_finite(x) -> bool:
    """No NaN/Inf in ``x``: numpy's own test for numpy arrays (as the numpy code always did), one
    device read for tensors."""
    return bool(np.isfinite(x).all()) if isinstance(x, np.ndarray) else _array.all_finite(x)


def _complex64(x):
    """``x`` as complex64 in its own backend (no copy when it already is)."""
    return cast_param(x, np.complex64)


def host(a, dtype=None) -> np.ndarray:
    """A plan-time parameter (a trajectory, a boolean sampling pattern, weights) as a numpy array on
    the host: a torch tensor is copied from its device (once per call; never used for data)."""
    if _array.is_torch(a):
        a = a.detach().cpu().resolve_conj().numpy()
    return np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)


def rss(x, axis: int = 0):
    """Root sum of squares over ``axis`` (the coil axis): ``sqrt(sum |x|^2)``, hypot-style: the
    magnitudes are divided by their largest value along ``axis`` before squaring and the result is
    multiplied back, so it neither underflows (``|x|`` ~ 1e-30 in float32) nor overflows (~1e30)
    wherever the result itself is representable."""
    if _array.is_torch(x):
        a = x.abs()
        m = a.amax(dim=axis, keepdim=True)
        m = m.where(m > 0, m.new_ones(()))  # an all-zero line stays zero
        return (a / m).pow(2).sum(dim=axis).sqrt() * m.squeeze(axis)
    a = np.abs(x)
    if a.size == 0:
        return np.sum(a, axis=axis)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(m > 0, m, np.ones((), a.dtype))
    return np.sqrt(np.sum((a / m) ** 2, axis=axis)) * np.squeeze(m, axis=axis)


def sampling_mask(kspace, coil_axis: int = 0):
    """Boolean mask of acquired k-space points: non-zero in any coil (numpy or torch, like ``kspace``)."""
    if _array.is_torch(kspace):
        return (kspace != 0).any(dim=coil_axis)
    return np.any(np.asarray(kspace) != 0, axis=coil_axis)


def calibration_region(mask: np.ndarray, max_width: int | Sequence[int] = 24) -> tuple[slice, ...]:
    """Largest centred box, at most ``max_width`` per axis, in which ``mask`` is fully sampled.

    The box grows one line at a time on each axis in turn while it stays fully sampled; axes of a 1D
    (fastMRI-style) mask stay long along the fully sampled readout. Returns index slices.
    Raises ValueError when not even the k-space centre is sampled. A torch mask is read on the host
    (one boolean image: the box is a plan-time choice).
    """
    mask = host(mask, bool)
    shape = mask.shape
    d = mask.ndim
    mw = (int(max_width),) * d if np.isscalar(max_width) else tuple(int(m) for m in max_width)
    if len(mw) != d:
        raise ValueError(f"max_width must have {d} entries, got {mw}")
    centre = tuple(n // 2 for n in shape)
    if not mask[centre]:
        raise ValueError("the k-space centre is not sampled: no calibration region (is this image-space "
                         "data, or is the centre of k-space off the middle of the array?)")
    lo = list(centre)
    hi = [c + 1 for c in centre]

    def full(lo_, hi_):
        return bool(mask[tuple(slice(a, b) for a, b in zip(lo_, hi_))].all())

    grew = True
    while grew:
        grew = False
        for a in range(d):
            if hi[a] - lo[a] >= min(mw[a], shape[a]):
                continue
            # alternate growing below / above the centre to stay centred (even widths lean low like fftshift)
            cand_lo, cand_hi = list(lo), list(hi)
            if (hi[a] - lo[a]) % 2 == 1 and lo[a] > 0:
                cand_lo[a] -= 1
            elif hi[a] < shape[a]:
                cand_hi[a] += 1
            else:
                cand_lo[a] -= 1 if lo[a] > 0 else 0
            if (cand_lo, cand_hi) != (lo, hi) and full(cand_lo, cand_hi):
                lo, hi = cand_lo, cand_hi
                grew = True
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _window(shape: Sequence[int]) -> np.ndarray:
    """Separable Hann window (non-zero at every sample) over ``shape``."""
    w = np.ones((), dtype=np.float64)
    for n in shape:
        w = np.multiply.outer(w, np.hanning(n + 2)[1:-1])
    return w


def centered_fft(x, axes, inverse=False):
    """Centred orthonormal FFT (or inverse) over ``axes`` (:mod:`recon.conventions`), numpy or torch."""
    if _array.is_torch(x):
        import torch

        f = torch.fft.ifftn if inverse else torch.fft.fftn
        return torch.fft.fftshift(f(torch.fft.ifftshift(x, dim=axes), dim=axes, norm="ortho"), dim=axes)
    import scipy.fft

    f = scipy.fft.ifftn if inverse else scipy.fft.fftn
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho", workers=-1), axes=axes)


def _zero_pad_centred(calib, im_shape: Sequence[int]):
    shape = (calib.shape[0],) + tuple(im_shape)
    if _array.is_torch(calib):
        import torch

        out = torch.zeros(shape, dtype=torch.complex64, device=calib.device)
    else:
        out = np.zeros(shape, dtype=np.complex64)
    sl = tuple(slice(n // 2 - m // 2, n // 2 - m // 2 + m) for n, m in zip(im_shape, calib.shape[1:]))
    out[(slice(None),) + sl] = calib
    return out


def _eigh(a):
    """Hermitian eigen-decomposition (ascending), batched over leading axes, numpy or torch."""
    if _array.is_torch(a):
        import torch

        return torch.linalg.eigh(a)
    return np.linalg.eigh(a)


def _gram(a):
    """``a a^H`` in complex128 for ``a`` (c, n): the coil covariance of the samples."""
    if _array.is_torch(a):
        import torch

        a = a.to(torch.complex128)
        return a @ a.mH
    a = a.astype(np.complex128)
    return a @ a.conj().T


def _virtual_body_coil(calib):
    """Unit coil-combination vector (c,) of maximal energy in the calibration data (complex128), its
    free phase fixed by :func:`_canonical_phase` (so that numpy, torch and GPUs agree)."""
    c = calib.shape[0]
    v = _eigh(_gram(calib.reshape(c, -1)))[1]
    return _canonical_phase(v[:, -1:])[:, 0]


def _fix_phase(maps, ref_vec):
    """Rotate each pixel's coil vector so that its projection on ``ref_vec`` is real and positive."""
    if _array.is_torch(maps):
        import torch

        ref = torch.tensordot(ref_vec.conj(), maps.to(ref_vec.dtype), dims=([0], [0]))
        mag = ref.abs()
        ph = torch.where(mag > 0, ref.conj() / torch.where(mag > 0, mag, 1.0), 1.0)
        return (maps * ph[None]).to(maps.dtype)
    ref = np.tensordot(ref_vec.conj(), maps, axes=(0, 0))
    mag = np.abs(ref)
    ph = np.where(mag > 0, np.conj(ref) / np.where(mag > 0, mag, 1), 1)
    return (maps * ph[None]).astype(maps.dtype, copy=False)


def _check_calib(calib, im_shape):
    calib = _as_kspace(calib, "calib")
    im_shape = tuple(int(n) for n in im_shape)
    if len(im_shape) != calib.ndim - 1:
        raise ValueError(f"im_shape {im_shape} does not match calibration data of shape {calib.shape}")
    if any(m > n for m, n in zip(calib.shape[1:], im_shape)):
        raise ValueError(f"calibration region {calib.shape[1:]} is larger than the image {im_shape}")
    return calib, im_shape


# ---- ESPIRiT ------------------------------------------------------------------------------------


def _kernel_shape(kernel_width, calib_shape) -> tuple[int, ...]:
    """Per-axis kernel widths: ``kernel_width`` (int or tuple), reduced on narrow axes of the
    calibration region so that at least half of its lines remain patch positions."""
    d = len(calib_shape)
    kw = (int(kernel_width),) * d if np.isscalar(kernel_width) else tuple(int(k) for k in kernel_width)
    if len(kw) != d or min(kw) < 1:
        raise ValueError(f"kernel_width must be a positive int or {d} positive ints, got {kernel_width}")
    return tuple(max(1, min(k, (n + 1) // 2)) for k, n in zip(kw, calib_shape))


def _patch_matrix(calib, ks, mask):
    """The calibration matrix: one row per ``ks`` patch position in ``calib`` (c, *calib_shape),
    columns ``(c, *ks)``; rows touching an unacquired point (``mask`` False) dropped."""
    c, d = calib.shape[0], calib.ndim - 1
    if _array.is_torch(calib):
        win, mwin = calib, None if mask is None else param_like(mask, calib) != 0
        for a, k in enumerate(ks):  # (c, *positions, *kernel), as sliding_window_view
            win = win.unfold(1 + a, k, 1)
            mwin = None if mwin is None else mwin.unfold(a, k, 1)
    else:
        win = np.lib.stride_tricks.sliding_window_view(calib, ks, axis=tuple(range(1, d + 1)))
        mwin = None if mask is None else np.lib.stride_tricks.sliding_window_view(np.asarray(mask, bool), ks)
    n_pos = int(np.prod(win.shape[1:1 + d]))
    A = _array.moveaxis(win, 0, d).reshape(n_pos, c * int(np.prod(ks)))
    return A if mwin is None else A[mwin.reshape(n_pos, -1).all(1)]


def espirit_kernels(calib, kernel_width=6, thresh: float = 0.02, mask=None):
    """Signal-subspace kernels of the calibration matrix: the right singular vectors whose singular
    value is at least ``thresh`` times the largest. Returns ``(n, c, *kernel_shape)`` (complex128).

    The calibration (Hankel-structured) matrix has one row per patch position inside the calibration
    region; rows touching an unacquired point (``mask`` False) are dropped. ``kernel_width`` (int or
    one per axis) is the patch size.
    """
    c = calib.shape[0]
    d = calib.ndim - 1
    ks = (int(kernel_width),) * d if np.isscalar(kernel_width) else tuple(int(k) for k in kernel_width)
    if len(ks) != d or any(k < 1 or k > n for k, n in zip(ks, calib.shape[1:])):
        raise ValueError(f"kernel_width {kernel_width} must lie in [1, n] per axis of the calibration region "
                         f"{tuple(calib.shape[1:])}")
    if not 0 <= thresh < 1:
        raise ValueError(f"thresh must lie in [0, 1), got {thresh}")
    A = _patch_matrix(calib, ks, mask)
    if A.shape[0] == 0:
        raise ValueError("no fully sampled kernel patch in the calibration region")
    A = cast_param(A, np.complex128)
    # SVD through the small Gram matrix (c k^d square): eigenvalues are squared singular values.
    w, v = _eigh(A.conj().T @ A)
    if _array.is_torch(w):
        w, v = w.flip(0), v.flip(1)
        s = w.clamp(min=0).sqrt()
    else:
        w, v = w[::-1], v[:, ::-1]
        s = np.sqrt(np.maximum(w, 0))
    if float(s[0]) == 0:
        raise ValueError("the calibration data are all zero")
    n = int((s >= thresh * s[0]).sum())
    return v[:, :n].T.reshape((n, c) + ks)


def _espirit_convolution(kernels):
    """Fourier coefficients ``h[i, j, d]`` (offsets ``d`` in ``[-(k-1), k-1]^D``) of the averaged
    projection ``(1/k^D) sum_r R_r^H V V^H R_r`` (a convolution)."""
    n, c = kernels.shape[:2]
    kshape = tuple(kernels.shape[2:])
    # Rows of the calibration matrix are patches a^T with A V_perp = 0, so conj(a) lies in span(V) and a
    # in span(conj V): the projector onto the patch subspace is conj(V) V^T.
    V = kernels.reshape(n, -1)  # (n, c k^D): the kernels (right singular vectors) as rows
    M = (V.conj().T @ V).reshape((c,) + kshape + (c,) + kshape)  # projector P[(i,p),(j,p')]
    h = _array.zeros(M, (c, c) + tuple(2 * k - 1 for k in kshape))
    for p in np.ndindex(*kshape):
        sl = tuple(slice(k - 1 - pa, 2 * k - 1 - pa) for pa, k in zip(p, kshape))
        h[(slice(None), slice(None)) + sl] += M[(slice(None),) + p]
    return h / float(np.prod(kshape))


def _dft_matrix_at(pos: np.ndarray, N: int, k: int) -> np.ndarray:
    """``E[i, t] = exp(-2 pi i (t - (k-1)) (pos_i - N//2) / N)`` at (fractional) pixel indices ``pos``."""
    dd = np.arange(2 * k - 1) - (k - 1)
    return np.exp(-2j * math.pi * np.outer(np.asarray(pos, dtype=np.float64) - N // 2, dd) / N)


def _eig_positions(n: int, grid: int | None) -> np.ndarray:
    """Pixel indices at which the ESPIRiT matrices are decomposed along an axis of ``n`` pixels:
    all of them, or ``grid`` equally spaced ones spanning ``[0, n-1]`` when ``grid < n``."""
    if not grid or grid >= n:
        return np.arange(n, dtype=np.float64)
    return np.linspace(0.0, n - 1.0, int(grid))


def _spline_coords(n: int, p: np.ndarray) -> np.ndarray:
    """Positions of the ``n`` integer pixels in units of the coarse samples ``p``."""
    return np.interp(np.arange(n), p, np.arange(p.size))


def _interp_to_grid(a, pos: list, im_shape):
    """Cubic-spline interpolation (``scipy.ndimage.map_coordinates``, order 3, mode 'nearest') of
    ``a`` (..., *coarse) sampled at ``pos`` (per axis, increasing, spanning [0, n-1]) onto the integer
    grid ``im_shape``. Real arrays only; float32 result. torch: the same spline as one (n, g) matrix
    per axis (the interpolation is separable and linear), applied in float64 on ``a``'s device."""
    D = len(im_shape)
    if _array.is_torch(a):
        import torch

        lead = a.ndim - D
        out = a.to(torch.float64)
        for ax, (n, p) in enumerate(zip(im_shape, pos)):
            M = torch.tensor(_spline_matrix(n, p.size), device=a.device)  # a copy: the cache stays intact
            out = torch.moveaxis(torch.tensordot(out, M, dims=([lead + ax], [1])), -1, lead + ax)
        return out.to(torch.float32)
    from scipy.ndimage import map_coordinates

    coords = [_spline_coords(n, p) for n, p in zip(im_shape, pos)]
    mesh = np.meshgrid(*coords, indexing="ij")
    lead = a.shape[:-D]
    flat = a.reshape((-1,) + a.shape[-D:])
    out = np.empty((flat.shape[0],) + tuple(im_shape), dtype=np.float32)
    for i in range(flat.shape[0]):
        out[i] = map_coordinates(flat[i], mesh, order=3, mode="nearest")
    return out.reshape(lead + tuple(im_shape))


@functools.lru_cache(maxsize=32)
def _spline_matrix(n: int, grid: int) -> np.ndarray:
    """(n, grid) float64: :func:`_interp_to_grid` along one axis of ``n`` pixels from ``grid``
    samples (column j: the spline through the j-th unit vector)."""
    from scipy.ndimage import map_coordinates

    c = _spline_coords(n, _eig_positions(n, grid))
    eye = np.eye(grid)
    M = np.stack([map_coordinates(eye[j], [c], order=3, mode="nearest") for j in range(grid)], axis=1)
    M.flags.writeable = False
    return M


def _tensordot(a, b, axes):
    if _array.is_torch(a):
        import torch

        return torch.tensordot(a, b, dims=axes)
    return np.tensordot(a, b, axes=axes)


def espirit_from_calib(calib, im_shape: Sequence[int], *, kernel_width=6, thresh: float = 0.02,
                       crop: float = 0.95, n_maps: int = 1, mask=None, return_eigenvalues: bool = False,
                       eig_grid: int | None = 64, chunk_elems: int = 1 << 23, progress: bool = False):
    """ESPIRiT maps from calibration k-space ``calib`` (c, *calib_shape), evaluated on ``im_shape``.

    ``crop``: pixels whose eigenvalue is below it get zero maps (0 keeps all). ``n_maps > 1`` returns
    ``(n_maps, c, *im_shape)`` (soft-SENSE style extra sets), else ``(c, *im_shape)``. With
    ``return_eigenvalues`` also returns the eigenvalues ``(n_maps, *im_shape)`` (or ``im_shape``).

    ``eig_grid``: the per-pixel matrices ``G(r)`` are trigonometric polynomials of degree ``k - 1``
    (smooth across the image), so their eigen-decomposition is computed on at most ``eig_grid``
    equally spaced positions per axis and the phase-aligned eigenvectors and eigenvalues are
    interpolated (cubic splines) to every pixel, then renormalised to unit norm. This is ~10-100x
    faster than decomposing every pixel; ``eig_grid=None`` decomposes every pixel.
    """
    calib, im_shape = _check_calib(calib, im_shape)
    if not 0 <= crop < 1.0 + 1e-9:
        raise ValueError(f"crop must lie in [0, 1], got {crop}")
    c = calib.shape[0]
    if not 1 <= n_maps <= c:
        raise ValueError(f"n_maps must lie in [1, {c}], got {n_maps}")
    if eig_grid is not None and int(eig_grid) < 8:
        raise ValueError(f"eig_grid must be >= 8 or None, got {eig_grid}")
    ks = _kernel_shape(kernel_width, calib.shape[1:])
    if any(2 * k - 1 > n for k, n in zip(ks, im_shape)):
        raise ValueError(f"kernel_width {kernel_width} is too large for the image {im_shape}")
    kernels = espirit_kernels(calib, ks, thresh, mask)
    h = _espirit_convolution(kernels)  # (c, c, *(2k-1))
    D = len(im_shape)
    pos = [_eig_positions(n, eig_grid) for n in im_shape]
    gshape = tuple(p.size for p in pos)
    # DFT over all axes but the first, fully; the first axis in chunks.
    for a in range(1, D):
        E = param_like(_dft_matrix_at(pos[a], im_shape[a], ks[a]), h)
        h = _array.moveaxis(_tensordot(h, E, ([2 + a], [1])), -1, 2 + a)
    h = _complex64(h)
    E0 = _complex64(param_like(_dft_matrix_at(pos[0], im_shape[0], ks[0]), h))
    rest = int(np.prod(gshape[1:]))
    hflat = h.reshape(c * c, 2 * ks[0] - 1, rest)
    rows = max(1, int(chunk_elems // max(c * c * rest, 1)))
    ref_vec = _virtual_body_coil(calib)
    maps = _array.zeros(h, (n_maps, c) + gshape)
    eig = _array.zeros(h, (n_maps,) + gshape, real=True)
    it = range(0, gshape[0], rows)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="ESPIRiT", leave=False)
    for r0 in it:
        r1 = min(r0 + rows, gshape[0])
        if _array.is_torch(h):
            import torch

            G = torch.einsum("nt,ptr->nrp", E0[r0:r1], hflat).reshape(r1 - r0, rest, c, c)
            G = 0.5 * (G + G.mH)  # Hermitian up to rounding
        else:
            G = np.einsum("nt,ptr->nrp", E0[r0:r1], hflat, optimize=True).reshape(r1 - r0, rest, c, c)
            G = 0.5 * (G + np.conj(np.swapaxes(G, -1, -2)))
        w, v = _eigh(G)
        for m in range(n_maps):
            maps[m, :, r0:r1] = _array.moveaxis(v[..., -1 - m], -1, 0).reshape((c, r1 - r0) + gshape[1:])
            eig[m, r0:r1] = w[..., -1 - m].reshape((r1 - r0,) + gshape[1:])
    for m in range(n_maps):
        maps[m] = _fix_phase(maps[m], ref_vec)
    if gshape != im_shape:
        re = _interp_to_grid(_array.concatenate([maps.real, maps.imag], 1), pos, im_shape)
        eig = _interp_to_grid(eig, pos, im_shape)
        if _array.is_torch(re):
            import torch

            maps = torch.complex(re[:, :c], re[:, c:])
            maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt().clamp(min=1e-12)
        else:
            maps = (re[:, :c] + 1j * re[:, c:]).astype(np.complex64)
            maps /= np.maximum(np.sqrt(np.sum(np.abs(maps) ** 2, axis=1, keepdims=True)), 1e-12)
    if crop > 0:
        maps *= (eig >= crop)[:, None]
    if n_maps == 1:
        maps, eig = maps[0], eig[0]
    return (maps, eig) if return_eigenvalues else maps


def espirit_maps(kspace, calib_width: int | Sequence[int] = 24, kernel_width: int = 6, thresh: float = 0.02,
                 crop: float = 0.95, n_maps: int = 1, return_eigenvalues: bool = False,
                 progress: bool = False, **kw):
    """ESPIRiT sensitivity maps from Cartesian multicoil k-space ``(c, *im_shape)`` (zeros = not
    acquired). The calibration region is the largest fully sampled centred box up to ``calib_width``
    (:func:`calibration_region`). Defaults as SigPy's ``EspiritCalib`` (calib 24, kernel 6,
    thresh 0.02, crop 0.95)."""
    kspace = _as_kspace(kspace)
    mask = sampling_mask(kspace)
    region = calibration_region(mask, calib_width)
    calib = kspace[(slice(None),) + region]
    if min(calib.shape[1:]) < 3:
        raise ValueError(f"the fully sampled calibration region {calib.shape[1:]} is too small for ESPIRiT; "
                         "use method='lowres' or a mask with a larger centre")
    return espirit_from_calib(calib, kspace.shape[1:], kernel_width=kernel_width, thresh=thresh, crop=crop,
                              n_maps=n_maps, return_eigenvalues=return_eigenvalues, progress=progress, **kw)


# ---- low resolution and Walsh -------------------------------------------------------------------


def lowres_images(calib, im_shape: Sequence[int]):
    """Coil images from the Hann-windowed calibration region zero-padded to ``im_shape``."""
    calib, im_shape = _check_calib(calib, im_shape)
    win = param_like(_window(calib.shape[1:]), calib)
    padded = _zero_pad_centred(calib * win[None], im_shape)
    return _complex64(centered_fft(padded, tuple(range(1, padded.ndim)), inverse=True))


def lowres_from_calib(calib, im_shape: Sequence[int], *, threshold: float = 0.0):
    """Sensitivities as low-resolution coil images divided by their root sum of squares.

    ``threshold``: pixels whose RSS is below ``threshold * max(RSS)`` get zero maps (0 keeps all)."""
    imgs = lowres_images(calib, im_shape)
    r = rss(imgs)
    ok = r > max(threshold, 1e-6) * r.max()
    maps = _array.where(ok[None], imgs / _array.where(ok, r, 1.0)[None], 0.0)
    return _fix_phase(_complex64(maps), _virtual_body_coil(calib))


def _box_mean(x, window: int, axes):
    """``scipy.ndimage.uniform_filter(x, window, mode='nearest')`` over ``axes`` of a real tensor."""
    import torch

    lo = window // 2
    for ax in axes:
        n = x.shape[ax]
        idx = torch.arange(-lo, n + window - 1 - lo, device=x.device).clamp(0, n - 1)
        xp = x.index_select(ax, idx)  # edge-replicated
        acc = xp.narrow(ax, 0, n).clone()
        for j in range(1, window):
            acc += xp.narrow(ax, j, n)
        x = acc / window
    return x


def walsh_from_calib(calib, im_shape: Sequence[int], *, window: int = 7, threshold: float = 0.0):
    """Walsh et al. (MRM 2000): the dominant eigenvector of the coil covariance of the low-resolution
    coil images averaged over a ``window``-wide box around each pixel."""
    imgs = lowres_images(calib, im_shape)
    d = imgs.ndim - 1
    if _array.is_torch(imgs):
        import torch

        R = torch.einsum("i...,j...->...ij", imgs, imgs.conj())
        R = torch.complex(_box_mean(R.real, int(window), range(d)), _box_mean(R.imag, int(window), range(d)))
    else:
        from scipy.ndimage import uniform_filter

        R = np.einsum("i...,j...->...ij", imgs, imgs.conj())
        size = (int(window),) * d + (1, 1)
        R = uniform_filter(R.real, size=size, mode="nearest") + 1j * uniform_filter(R.imag, size=size, mode="nearest")
    w, v = _eigh(R)
    maps = _complex64(_array.moveaxis(v[..., -1], -1, 0))
    if threshold > 0:
        r = rss(imgs)
        maps *= (r > threshold * r.max())[None]
    return _fix_phase(maps, _virtual_body_coil(calib))


# ---- dispatch -----------------------------------------------------------------------------------

MAP_METHODS = ("espirit", "lowres", "walsh")


def maps_from_calib(calib, im_shape, method: str = "espirit", **kw) -> np.ndarray:
    """Maps from fully sampled calibration k-space by ``method`` in :data:`MAP_METHODS`."""
    if method == "espirit":
        return espirit_from_calib(calib, im_shape, **kw)
    if method == "lowres":
        return lowres_from_calib(calib, im_shape, **kw)
    if method == "walsh":
        return walsh_from_calib(calib, im_shape, **kw)
    raise ValueError(f"coil map method must be one of {MAP_METHODS}, got {method!r}")


def estimate_maps(kspace, method: str = "espirit", calib_width: int = 24, **kw) -> np.ndarray:
    """Sensitivity maps from Cartesian multicoil k-space ``(c, *im_shape)`` (zeros = not acquired)."""
    kspace = _as_kspace(kspace)
    region = calibration_region(sampling_mask(kspace), calib_width)
    calib = kspace[(slice(None),) + region]
    if method == "espirit" and min(calib.shape[1:]) < 3:
        raise ValueError(f"the fully sampled calibration region {calib.shape[1:]} is too small for ESPIRiT; "
                         "use method 'lowres' or a mask with a larger centre")
    return maps_from_calib(calib, kspace.shape[1:], method, **kw)


def calib_from_noncartesian(kspace, coord, im_shape: Sequence[int], calib_width: int = 24, *,
                            dcf=None, tol: float = 1e-4):
    """Cartesian calibration k-space ``(c, *calib_shape)`` from non-Cartesian data.

    Samples with ``|k| < calib_width`` are gridded with density compensation (adjoint NUFFT with
    Pipe-Menon weights unless ``dcf`` is given) and transformed back to k-space; the centred
    ``calib_width`` box is returned. Accurate where the centre is Nyquist-sampled (radial: out to
    ``|k| ~ n_spokes / pi``), so choose ``calib_width`` at most about ``2 n_spokes / pi``. The
    trajectory and weights are used on the host (plan-time); the data stay in their backend.
    """
    from ..ops.nufft import Nufft
    from .dcf import pipe_menon_dcf

    if not _array.is_torch(kspace):
        kspace = np.asarray(kspace)
    coord = host(coord, np.float32)
    im_shape = tuple(int(n) for n in im_shape)
    d = len(im_shape)
    if coord.shape[-1] != d or tuple(kspace.shape[1:]) != coord.shape[:-1]:
        raise ValueError(f"kspace {tuple(kspace.shape)} and coord {coord.shape} do not match (expected kspace "
                         f"(coils, {', '.join(map(str, coord.shape[:-1]))}))")
    cw = tuple(min(int(calib_width), n) for n in im_shape)
    if dcf is None:
        dcf = pipe_menon_dcf(coord, im_shape)
    dcf = np.broadcast_to(host(dcf, np.float32), coord.shape[:-1])
    # samples out to twice the box's half-width (beyond its corners): a hard cut any closer rings
    # into the box (measured: 21 % error at the half-width, 1.4 % at twice it, Nyquist-sampled radial)
    inner = np.linalg.norm(coord / np.asarray(cw, dtype=np.float32), axis=-1) < 1.0
    if not inner.any():
        raise ValueError("no samples inside the calibration region")
    op = Nufft(coord[inner], im_shape, tol=tol)
    if _array.is_torch(kspace):
        import torch

        idx = torch.from_numpy(np.flatnonzero(inner)).to(kspace.device)
        samples = kspace.reshape(kspace.shape[0], -1).index_select(1, idx) * param_like(dcf[inner], kspace)
    else:
        samples = kspace[:, inner] * dcf[inner]
    imgs = op.adjoint(_complex64(samples))
    ksp = centered_fft(imgs, tuple(range(1, d + 1)))
    sl = tuple(slice(n // 2 - m // 2, n // 2 - m // 2 + m) for n, m in zip(im_shape, cw))
    calib = ksp[(slice(None),) + sl]
    return _complex64(calib.contiguous() if _array.is_torch(calib) else np.ascontiguousarray(calib))


# ---- coil compression ---------------------------------------------------------------------------


def _canonical_phase(v):
    """Eigenvectors ``v`` (c, n) (columns, numpy or torch) with their free phase fixed: entry 0 real
    and positive, or the largest entry where entry 0 is below 1e-3 of it. LAPACKs return entry 0
    real with either sign (OpenBLAS and MKL differ), GPUs any phase: this makes them agree."""
    a = abs(v)
    if _array.is_torch(v):
        amax, jmax = a.max(0)
        j = _array.where(a[0] >= 1e-3 * amax, 0, jmax)
        ref = v.gather(0, j[None])[0]
    else:
        j = np.where(a[0] >= 1e-3 * a.max(0), 0, a.argmax(0))
        ref = np.take_along_axis(v, j[None], 0)[0]
    return v * (ref.conj() / abs(ref))


def coil_compression_matrix(kspace, n_virtual: int | None = None, *, energy: float | None = None,
                            coil_axis: int = 0):
    """SVD (PCA) coil compression matrix ``U`` of shape ``(n_virtual, c)``: virtual coils are
    ``U @ coils``, ordered by decreasing energy, each row's phase fixed (:func:`_canonical_phase`).
    Give ``n_virtual``, or ``energy`` (a fraction in (0, 1]) to keep the fewest virtual coils holding
    at least that fraction of the signal energy. Returns ``(U, kept_energy_fraction)``; ``U`` complex64
    like ``kspace`` (numpy or torch on its device). Uses all non-zero (acquired) samples."""
    k = _array.moveaxis(kspace if _array.is_torch(kspace) else np.asarray(kspace), coil_axis, 0)
    c = k.shape[0]
    A = k.reshape(c, -1)
    A = A[:, (A != 0).any(0)]
    if A.shape[1] == 0:
        raise ValueError("coil compression: the k-space is all zero")
    w, v = _eigh(_gram(A))
    if _array.is_torch(w):
        w, v = w.flip(0).clamp(min=0), v.flip(1)
        frac = w.cumsum(0) / w.sum()
    else:
        w, v = np.maximum(w[::-1], 0), v[:, ::-1]
        frac = np.cumsum(w) / w.sum()
    frac = host(frac)  # c numbers: the choice of n_virtual is made on the host
    if n_virtual is None:
        if energy is None or not 0 < energy <= 1:
            raise ValueError("give n_virtual, or energy in (0, 1]")
        n_virtual = int(np.searchsorted(frac, energy - 1e-12) + 1)
    if isinstance(n_virtual, bool) or not 1 <= int(n_virtual) <= c:
        raise ValueError(f"n_virtual must lie in [1, {c}] (the number of coils), got {n_virtual}")
    n_virtual = int(n_virtual)
    U = _canonical_phase(v[:, :n_virtual]).conj().T
    return _complex64(U.resolve_conj() if _array.is_torch(U) else U), float(frac[n_virtual - 1])


def coil_compress(kspace, n_virtual: int | None = None, *, energy: float | None = None, coil_axis: int = 0,
                  matrix=None):
    """Compress ``kspace`` to virtual coils (see :func:`coil_compression_matrix`).
    Returns ``(compressed, U, kept_energy_fraction)``; pass ``matrix=U`` to reuse a matrix (e.g. the
    one of a noise-whitened reference scan) and get ``(compressed, U, None)``. ``compressed`` is
    like ``kspace`` (numpy or torch, its device; complex64 unless ``kspace`` is complex128)."""
    k = _array.moveaxis(kspace if _array.is_torch(kspace) else np.asarray(kspace), coil_axis, 0)
    if matrix is None:
        U, frac = coil_compression_matrix(k, n_virtual, energy=energy)
    else:
        U, frac = (matrix if _array.is_torch(matrix) else np.asarray(matrix)), None
        if U.ndim != 2 or U.shape[1] != k.shape[0]:
            raise ValueError(f"matrix must have shape (n_virtual, {k.shape[0]}), got {tuple(U.shape)}")
    if _array.is_torch(k):
        import torch

        dt = torch.promote_types(k.dtype, torch.complex64)
        out = torch.tensordot(param_like(U, k).to(dt), k.to(dt), dims=([1], [0]))
    else:
        out = np.tensordot(param_like(U, k), k, axes=(1, 0)).astype(np.result_type(k.dtype, np.complex64))
    return _array.moveaxis(out, 0, coil_axis), U, frac
