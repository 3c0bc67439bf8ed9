"""Small, valid fastMRI-format multicoil files from images (for tests and demos).

``simulate_coil_maps`` makes smooth complex receive sensitivities of a "birdcage" of Gaussian coils
on a circle (2D) or cylinder (3D) around the object. ``write_fastmri_multicoil`` turns a stack of
2D slices into coil k-space with fastMRI's layout and conventions (see ``fastmri_data.io``):
``kspace[s, c] = fft2c(pad_readout(image[s]) * S[c])`` with the centred orthonormal FFT, the
ISMRMRD header, ``reconstruction_rss`` (RSS of the noiseless coil images, centre-cropped to the
recon size) and the ``max``/``norm``/``acquisition``/``patient_id`` attributes.
"""

from __future__ import annotations

import os

import numpy as np

from .header import build_ismrmrd_header


def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (fastMRI/recon convention)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def ifft2c(k: np.ndarray) -> np.ndarray:
    """Inverse of ``fft2c``."""
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def center_crop(x: np.ndarray, shape) -> np.ndarray:
    """Centre crop of the last ``len(shape)`` axes (fastMRI's offsets: ``(n - m) // 2``)."""
    sl = [slice(None)] * (x.ndim - len(shape))
    for n, m in zip(x.shape[-len(shape):], shape):
        if m > n:
            raise ValueError(f"crop size {tuple(shape)} larger than array {x.shape}")
        sl.append(slice((n - m) // 2, (n - m) // 2 + m))
    return x[tuple(sl)]


def rss(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Root sum of squares over ``axis``."""
    return np.sqrt(np.sum(np.abs(x) ** 2, axis=axis))


def simulate_coil_maps(shape, num_coils: int = 8, *, radius: float = 0.7, width: float = 0.55,
                       phase_cycles: float = 0.5, normalize: bool = True, dtype=np.complex64) -> np.ndarray:
    """Smooth complex coil sensitivities, shape ``(num_coils, *shape)``; ``shape`` is (y, x) or (z, y, x).

    Coil ``c`` sits at angle ``2 pi c / num_coils`` on a circle of ``radius`` (in units of the half
    field of view) around the centre, in the (y, x) plane; in 3D the coils alternate between two
    rings at z = +-radius/2 (half FOV units). Magnitude is a Gaussian of the distance to the coil
    (``width`` half-FOV units), phase grows linearly with that distance (``phase_cycles`` cycles per
    half FOV) plus the coil's angle. ``normalize=True`` scales the maps so that
    ``sum_c |S_c|^2 = 1`` at every voxel, so the RSS of the coil images equals ``|image|``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (y, x) or (z, y, x) with positive sizes, got {shape}")
    if int(num_coils) < 1:
        raise ValueError(f"num_coils must be >= 1, got {num_coils}")
    axes = [np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    maps = np.empty((int(num_coils),) + shape, dtype=np.complex128)
    for c in range(int(num_coils)):
        ang = 2 * np.pi * c / num_coils
        cy, cx = radius * np.sin(ang), radius * np.cos(ang)
        d2 = (grids[-2] - cy) ** 2 + (grids[-1] - cx) ** 2
        if len(shape) == 3:
            cz = radius / 2 * (1 if c % 2 == 0 else -1)
            d2 = d2 + (grids[0] - cz) ** 2
        d = np.sqrt(d2)
        maps[c] = np.exp(-d2 / (2 * width**2)) * np.exp(1j * (2 * np.pi * phase_cycles * d + ang))
    if normalize:
        maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return maps.astype(dtype)


# (intensity, semi-axis a, semi-axis b, centre x, centre y, angle deg): a modified Shepp-Logan head.
_ELLIPSES = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0),
)


def phantom(num_slices: int = 4, ny: int = 64, nx: int = 64) -> np.ndarray:
    """A (num_slices, ny, nx) float32 Shepp-Logan-like head; ellipses shrink away from the centre slice."""
    if min(num_slices, ny, nx) < 1:
        raise ValueError("phantom sizes must be positive")
    y, x = np.meshgrid(np.linspace(1, -1, ny), np.linspace(-1, 1, nx), indexing="ij")
    out = np.zeros((num_slices, ny, nx), dtype=np.float32)
    for s in range(num_slices):
        zf = 0.0 if num_slices == 1 else (2 * s / (num_slices - 1) - 1)
        scale = np.sqrt(max(1 - 0.6 * zf**2, 0.1))
        for val, a, b, x0, y0, deg in _ELLIPSES:
            t = np.deg2rad(deg)
            xr = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
            yr = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
            out[s][(xr / (a * scale)) ** 2 + (yr / (b * scale)) ** 2 <= 1] += val
    return out


def write_fastmri_multicoil(path, image, sens_maps=None, num_coils: int = 8, noise_std: float = 0.0,
                            seed: int | None = 0, *, readout_oversampling: int = 1, pe_padding=(0, 0),
                            fov_mm=(200.0, 200.0, 5.0), acquisition: str = "SYNTH_MULTICOIL",
                            patient_id: str = "synthetic", kspace_scale: float = 1.0) -> str:
    """Write a fastMRI multicoil file from ``image`` (slices, H, W) (real or complex).

    Axes follow fastMRI: H (-2) is the readout, W (-1) the phase-encode direction.
    ``sens_maps`` (coils, H_k, W) (or (coils, slices, H_k, W)) with ``H_k = H * readout_oversampling``
    defaults to ``simulate_coil_maps((H_k, W), num_coils)``. ``readout_oversampling`` (1 or 2, as real
    fastMRI data) zero-pads the image along the readout before the FFT; the targets are cropped back
    to (H, W). ``pe_padding=(left, right)`` zeroes that many phase-encode columns at each edge and
    writes encodingLimits so that fastMRI's padding reads ``(left, W - right)``. Complex Gaussian
    noise of standard deviation ``noise_std`` (per real/imag part) is added to the acquired samples
    (``seed`` makes it reproducible). ``fov_mm`` is (readout, phase, slice thickness) of the
    un-oversampled image. Returns ``path``.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3 or min(img.shape) < 1:
        raise ValueError(f"image must be (slices, H, W) or (H, W), got shape {np.shape(image)}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or Inf")
    if readout_oversampling not in (1, 2):
        raise ValueError(f"readout_oversampling must be 1 or 2, got {readout_oversampling}")
    ns, h, w = img.shape
    hk = h * readout_oversampling
    if sens_maps is None:
        sens = simulate_coil_maps((hk, w), num_coils)[:, None]
    else:
        sens = np.asarray(sens_maps)
        if sens.ndim == 3:
            sens = sens[:, None]
        if sens.ndim != 4 or sens.shape[-2:] != (hk, w) or sens.shape[1] not in (1, ns):
            raise ValueError(f"sens_maps must be (coils, {hk}, {w}) or (coils, {ns}, {hk}, {w}), got {np.shape(sens_maps)}")
    nc = sens.shape[0]
    left, right = (int(v) for v in pe_padding)
    if left < 0 or right < 0 or left + right >= w:
        raise ValueError(f"pe_padding {pe_padding} leaves no phase-encode lines of {w}")
    pad = (hk - h) // 2
    full = np.zeros((ns, hk, w), dtype=np.complex128)
    full[:, pad:pad + h] = img
    coil_img = sens.transpose(1, 0, 2, 3) * full[:, None]  # (slices, coils, hk, w)
    ksp = fft2c(coil_img) * kspace_scale
    rng = np.random.default_rng(seed)
    if noise_std > 0:
        ksp = ksp + noise_std * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape))
    ksp[..., :left] = 0
    ksp[..., w - right:] = 0
    target = center_crop(rss(ifft2c(fft2c(coil_img) * kspace_scale), axis=1), (h, w)).astype(np.float32)
    # encodingLimits such that padding_left = w//2 - center = left, padding_right = left + max + 1 = w - right
    n_acq = w - right - left
    limits = {
        "kspace_encoding_step_1": (0, n_acq - 1, w // 2 - left),
        "kspace_encoding_step_2": (0, 0, 0),
        "slice": (0, ns - 1, ns // 2),
    }
    fx, fy, fz = (float(v) for v in fov_mm)
    xml = build_ismrmrd_header(
        (hk, w, 1), (fx * readout_oversampling, fy, fz), (h, w, 1), (fx, fy, fz),
        limits=limits, receiver_channels=nc, patient_id=patient_id,
    )
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=ksp.astype(np.complex64))
        hf.create_dataset("reconstruction_rss", data=target)
        hf.create_dataset("ismrmrd_header", data=np.bytes_(xml.encode("utf-8")))
        hf.attrs["acquisition"] = acquisition
        hf.attrs["max"] = float(target.max())
        hf.attrs["norm"] = float(np.linalg.norm(target))
        hf.attrs["patient_id"] = patient_id
    return path


def generate_sample(path, num_slices: int = 4, shape=(64, 64), num_coils: int = 8, noise_std: float = 0.0,
                    seed: int = 0, **kwargs) -> str:
    """Write a small synthetic fastMRI multicoil file of a Shepp-Logan-like phantom; returns ``path``.

    ``shape`` is (H, W) = (readout, phase encode); ``kwargs`` go to ``write_fastmri_multicoil``.
    """
    img = phantom(num_slices, *shape)
    return write_fastmri_multicoil(path, img, num_coils=num_coils, noise_std=noise_std, seed=seed, **kwargs)
