"""SENSE forward models composed from parts: coil sensitivities, then Fourier sampling.

``CartesianSense(maps, mask)``: ``y_c = M F (S_c x)`` with ``F`` the centred orthonormal FFT of
:mod:`recon.conventions` and ``M`` the sampling mask (or real non-negative weights).

``NonCartesianSense(maps, coord, weights=...)``: ``y_c = sqrt(w) N (S_c x)`` with ``N`` the NUFFT
(the square root of ``weights``, as SigPy's ``Sense``: the normal operator then carries ``w`` once,
``A^H A = sum_c S_c^H N^H W N S_c``, evaluated by the NUFFT's Toeplitz embedding). Use weights for
density-compensated (preconditioned) least squares; the data term ``||A x - sqrt(w) y||^2`` then
needs the data multiplied by ``sqrt(w)`` too.

Shapes (``d`` = 2 or 3 image axes, ``C`` coils):

- maps ``(*batch, C, *im)``: one set of maps per batch item (a batch of slices with their own maps);
  with ``sets=True`` maps ``(*batch, m, C, *im)`` hold ``m`` sets (soft SENSE, ESPIRiT with several
  eigenvalues) and images ``(..., *batch, m, *im)``, summed into one k-space.
- images ``(..., *batch, *im)`` -> k-space ``(..., *batch, C, *im)`` (Cartesian) or
  ``(..., *batch, C, *sample_shape)`` (non-Cartesian); leading axes beyond the batch pass through.
- Cartesian masks: ``(*im)`` or any shape that broadcasts to it (``(1, x)`` for fastMRI column masks)
  shared by the batch; ``(*batch, *im)`` one mask per item (the coil axis is inserted); or
  ``(*batch, C|1, *im)`` in full.
- Non-Cartesian trajectories: ``(*sample, d)`` shared; ``(*batch, *sample, d)`` one per item
  (``coord_batched=True``); or a list of per-frame trajectories with different sample counts
  (respiratory bins): images ``(..., F, *im)`` -> k-space ``(..., C, M_total)``, frame ``f`` in
  ``Nufft.frame_offsets[f]:frame_offsets[f+1]`` of the last axis.

Maps, masks and weights may be numpy arrays or torch tensors; the operator applies them in the
backend and on the device of its input, and a tensor that requires grad (maps from a sensitivity
network) receives gradients (the coil and sampling parts are torch operations; only the NUFFT runs
native kernels, through the autograd Function of :mod:`recon.ops.base`).
"""

from __future__ import annotations

import numpy as np

from .. import _array
from .backend import param_like
from .base import Operator
from .linear import FFT, Multiply, cast_param, weight_dtype


def _sense_dtype(maps, dtype):
    if dtype is None:
        dt = np.dtype(_array.dtype_name(maps))
        dtype = dt if dt.kind == "c" and dt in (np.complex64, np.complex128) else np.complex64
    dtype = np.dtype(dtype)
    if dtype not in (np.complex64, np.complex128):
        raise TypeError(f"dtype must be complex64 or complex128, got {dtype}")
    return dtype


def _as_param(a, name: str, dtype, check: bool, *, nonneg: bool = False):
    """A numpy array or torch tensor in the operator's precision (complex values in ``dtype``, real
    ones real), validated when ``check``: finite, and real non-negative if ``nonneg``."""
    if _array.is_torch(a):
        if a.dtype == __import__("torch").bool:
            a = a.float()
    else:
        a = np.asarray(a)
        if a.dtype == bool:
            a = a.astype(np.float32)
        if a.dtype.kind not in "fciu":
            raise TypeError(f"{name}: expected numeric values, got dtype {a.dtype}")
    if nonneg and _array.is_complex(a):
        raise ValueError(f"{name}: expected real, finite, non-negative weights (or a boolean mask), got complex values")
    a = cast_param(a, weight_dtype(_array.dtype_name(a), dtype))
    if check:
        if not _array.all_finite(a):
            raise ValueError(f"{name}: contains NaN or Inf")
        if nonneg and bool((a < 0).any()):
            raise ValueError(f"{name}: expected real, finite, non-negative weights (or a boolean mask)")
    return a


class SenseMaps(Operator):
    """Coil sensitivities as an operator: image ``(..., *core)`` -> coil images ``(..., C, *core)``,
    ``y_c = S_c x`` (``core`` = ``(*batch, *im)`` of the maps without the coil axis; maps of shape
    ``(*batch, C, *im)``), adjoint ``sum_c conj(S_c) y_c``. With ``sets=True`` the maps are
    ``(*batch, m, C, *im)``, images ``(..., *batch, m, *im)`` and the sets are summed (soft SENSE).
    ``core_shape`` overrides the image core when the maps broadcast over it (size-1 axes)."""

    torch_native = True

    def __init__(self, maps, ndim: int, *, sets: bool = False, core_shape=None, dtype=None):
        self.ndim_im, self.sets = int(ndim), bool(sets)
        lead = tuple(maps.shape[: maps.ndim - ndim - 1 - self.sets])
        self.n_coils = int(maps.shape[-ndim - 1])
        if core_shape is None:
            core_shape = lead + ((int(maps.shape[-ndim - 2]),) if self.sets else ()) + tuple(maps.shape[-ndim:])
        core_shape = tuple(int(n) for n in core_shape)
        self.im_shape = core_shape[len(core_shape) - ndim:]
        oshape = core_shape[: len(core_shape) - ndim - self.sets] + (self.n_coils,) + self.im_shape
        super().__init__(core_shape, oshape, dtype or _sense_dtype(maps, None))
        self.maps = maps
        self._cache = {}

    def _S(self, ref):
        return param_like(self.maps, ref, self._cache)

    def _forward(self, x):
        S = self._S(x)
        d = self.ndim_im
        xe = x.reshape(tuple(x.shape[: x.ndim - d]) + (1,) + self.im_shape)   # (..., [m,] 1, *im)
        if self.sets:
            return _sum(xe * S, -(d + 2))
        return xe * S

    def _adjoint(self, y):
        S = self._S(y)
        d = self.ndim_im
        if self.sets:
            ye = y.reshape(tuple(y.shape[: y.ndim - d - 1]) + (1, self.n_coils) + self.im_shape)
            return _sum(ye * S.conj(), -(d + 1))
        return _sum(y * S.conj(), -(d + 1))

    def _normal(self, x):
        S = self._S(x)
        d = self.ndim_im
        if self.sets:
            return self._adjoint(self._forward(x))
        s2 = _sum(S.real * S.real + S.imag * S.imag, -(d + 1))
        return x * s2


def _sum(a, axis):
    return a.sum(dim=axis) if _array.is_torch(a) else a.sum(axis=axis)


def _check_maps(maps, ndim: int, sets: bool, dtype, check: bool):
    if maps is None:
        raise ValueError("maps: coil sensitivity maps are required")
    if not _array.is_torch(maps):
        maps = np.asarray(maps)
    need = ndim + 1 + (1 if sets else 0)
    if maps.ndim < need:
        what = "(*batch, sets, coils, *im)" if sets else "(*batch, coils, *im)"
        raise ValueError(f"maps: expected shape {what} with {ndim} image axes, got {tuple(maps.shape)}")
    dtype = _sense_dtype(maps, dtype)
    if not _array.is_complex(maps) and np.dtype(_array.dtype_name(maps)).kind not in "fiu":
        raise TypeError(f"maps: expected complex values, got dtype {_array.dtype_name(maps)}")
    if check and not _array.all_finite(maps):
        raise ValueError("maps: contains NaN or Inf")
    maps = cast_param(maps, dtype)
    if isinstance(maps, np.ndarray):
        maps = np.ascontiguousarray(maps)
    return maps, dtype


class _SenseBase(Operator):
    torch_native = True

    def _setup_maps(self, maps, ndim: int, sets: bool):
        self.coils = SenseMaps(maps, ndim, sets=sets, dtype=self.dtype)
        self.maps = maps
        self.sets = bool(sets)
        self.multi = self.sets
        self.n_sets = int(maps.shape[-ndim - 2]) if sets else 1
        self.n_coils = self.coils.n_coils
        self.im_shape = self.coils.im_shape
        self.batch_shape = tuple(int(n) for n in maps.shape[: maps.ndim - ndim - 1 - self.sets])
        self._cache = {}

    def _arr(self, a, ref, key=None):
        """Parameter ``a`` in the backend of ``ref`` (cached per torch device)."""
        return param_like(a, ref, self._cache)


class CartesianSense(_SenseBase):
    """Cartesian SENSE ``y_c = M F (S_c x)`` (see the module docstring for shapes).

    Parameters
    ----------
    maps : ``(*batch, C, *im)`` complex coil sensitivities (``(*batch, m, C, *im)`` with ``sets``).
    mask : sampling mask or real non-negative weights: ``(*im)`` (or broadcastable to it, e.g.
        ``(1, x)``), ``(*batch, *im)`` or ``(*batch, C|1, *im)``; None means fully sampled.
    ndim : image dimensions, 2 (default) or 3.
    sets : maps hold several sets (soft SENSE).
    dtype : complex64 (default, or the maps' complex dtype) or complex128.
    check : validate maps and mask values (finite, mask non-negative): one pass over them.
    """

    def __init__(self, maps, mask=None, dtype=None, *, ndim: int = 2, sets: bool = False,
                 workers: int | None = None, check: bool = True):
        ndim = int(ndim)
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        maps, dtype = _check_maps(maps, ndim, sets, dtype, check)
        self.dtype = np.dtype(dtype)
        self._setup_maps(maps, ndim, sets)
        oshape = self.batch_shape + (self.n_coils,) + self.im_shape
        self.workers = workers or -1
        self.fft = FFT(self.im_shape, dtype, workers=self.workers)
        self.mask = self.mask2 = None
        self.sampling = None
        if mask is not None:
            mask = _as_param(mask, "mask", dtype, check, nonneg=True)
            mask = self._mask_shape(mask)
            try:
                np.broadcast_shapes(tuple(mask.shape), oshape)
            except ValueError:
                raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to (*batch, coils, *im) = "
                                 f"{oshape}") from None
            self.mask = mask
            self.mask2 = mask * mask
            self.sampling = Multiply(oshape, mask, dtype=dtype)
        super().__init__(self.coils.ishape, oshape, dtype)

    def _mask_shape(self, mask):
        """The mask with a coil axis where it has one per batch item (module docstring)."""
        d, nb = len(self.im_shape), len(self.batch_shape)
        if mask.ndim <= d or (nb == 0 and mask.ndim == d + 1):
            return mask
        if mask.ndim == nb + d:
            return mask.reshape(tuple(mask.shape[:nb]) + (1,) + tuple(mask.shape[nb:]))
        if mask.ndim == nb + 1 + d:
            return mask
        raise ValueError(f"mask of shape {tuple(mask.shape)} fits neither (*im) = {self.im_shape}, (*batch, *im) nor "
                         f"(*batch, coils, *im) with batch {self.batch_shape}")

    def _forward(self, x):
        y = self.fft._dispatch(self.coils._dispatch(x, "forward"), "forward")
        return y if self.sampling is None else self.sampling._dispatch(y, "forward")

    def _adjoint(self, y):
        if self.sampling is not None:
            y = self.sampling._dispatch(y, "adjoint")
        return self.coils._dispatch(self.fft._dispatch(y, "adjoint"), "adjoint")

    def _normal(self, x):
        if isinstance(x, np.ndarray):
            return self._normal_numpy(x)
        z = self.fft._dispatch(self.coils._dispatch(x, "forward"), "forward")
        if self.sampling is not None:
            z = self.sampling._dispatch(z, "normal")
        return self.coils._dispatch(self.fft._dispatch(z, "adjoint"), "adjoint")

    def _normal_numpy(self, x):
        """``S^H F^H M^2 F S x`` with the centring shifts folded into pre-shifted maps and mask:
        ``F^H D F = fftshift o ifft o D' o fft o ifftshift`` with ``D' = ifftshift(D)`` (any size), so
        only the image is shifted, not the coil arrays."""
        import scipy.fft

        d = len(self.im_shape)
        axes = tuple(range(-d, 0))
        if "shifted" not in self._cache:
            maps = self.coils._S(x)
            Sp = np.ascontiguousarray(np.fft.ifftshift(maps, axes=axes))
            Mp = None
            if self.mask2 is not None:
                m2 = param_like(self.mask2, x)
                m = np.broadcast_to(m2, np.broadcast_shapes(m2.shape, (1,) * d))
                Mp = np.ascontiguousarray(np.fft.ifftshift(m, axes=axes))
            self._cache["shifted"] = (Sp, Mp)
        Sp, Mp = self._cache["shifted"]
        xs = np.fft.ifftshift(x, axes=axes)
        lead = xs.shape[: xs.ndim - d - (1 if self.sets else 0)]
        if self.sets:
            z = (xs.reshape(lead + (self.n_sets, 1) + self.im_shape) * Sp).sum(-(d + 2))
        else:
            z = xs.reshape(lead + (1,) + self.im_shape) * Sp
        z = scipy.fft.fftn(z, axes=axes, norm="ortho", workers=self.workers, overwrite_x=True)
        if Mp is not None:
            z *= Mp
        z = scipy.fft.ifftn(z, axes=axes, norm="ortho", workers=self.workers, overwrite_x=True)
        if self.sets:
            w = (z.reshape(lead + (1, self.n_coils) + self.im_shape) * Sp.conj()).sum(-(d + 1))
        else:
            w = (z * Sp.conj()).sum(-(d + 1))
        return np.fft.fftshift(w, axes=axes).astype(self.dtype, copy=False)


class NonCartesianSense(_SenseBase):
    """Non-Cartesian SENSE ``y_c = sqrt(w) * NUFFT(S_c x)`` on :class:`recon.ops.Nufft` (module
    docstring for shapes).

    Parameters
    ----------
    maps : ``(*batch, C, *im)`` (``(*batch, m, C, *im)`` with ``sets``); with a list of per-frame
        trajectories: ``(C, *im)`` shared by the frames or ``(F, C, *im)`` one set per frame.
    coord : ``(*sample_shape, d)`` trajectory in cycles/FOV (see :mod:`recon.conventions`);
        ``(*batch, *sample_shape, d)`` with ``coord_batched=True``; or a list of F per-frame
        trajectories (frames with different sample counts).
    tol : NUFFT accuracy.
    weights : real non-negative k-space weights broadcastable to the samples (``sample_shape``;
        ``(*batch, *sample_shape)`` with per-item trajectories; ``(M_total,)`` for frames), e.g. a
        density compensation, or None. The operator applies their square root.
    coord_batched : the trajectory has the maps' batch axes in front (one per batch item).
    toeplitz : evaluate the normal operator by Toeplitz embedding (default) or as adjoint(forward).
    check : validate maps and weights (finite, weights non-negative) at construction.
    check_finite : the NUFFT scans every input for NaN/Inf (and rescales extreme magnitudes); turn it
        off inside solvers whose data were checked once (on a GPU the scan waits for the device).
    cached : take the NUFFT from the process-wide plan cache (:meth:`recon.ops.Nufft.cached`): an
        operator rebuilt per call with the same trajectory (and weights) inside a network reuses the
        plans and the Toeplitz kernels instead of computing them again.
    """

    def __init__(self, maps, coord, tol: float = 1e-4, weights=None, dtype=None, *, sets: bool = False,
                 coord_batched: bool = False, toeplitz: bool = True, nthreads: int | None = None,
                 check: bool = True, check_finite: bool = True, cached: bool = False):
        from .nufft import Nufft, is_frame_list

        make_nufft = Nufft.cached if cached else Nufft

        frames = is_frame_list(coord)
        if not frames and isinstance(coord, (list, tuple)):
            coord = np.asarray(coord)  # nested lists of numbers: one trajectory
        first = coord[0] if frames and len(coord) else coord
        if first is None or (frames and len(coord) == 0):
            raise ValueError("coord: expected a trajectory (..., M, d) or a non-empty list of them")
        d = int(np.shape(first)[-1]) if np.ndim(first) >= 1 else 0
        if d not in (2, 3):
            raise ValueError(f"coord: expected shape (..., M, 2) or (..., M, 3), got {tuple(np.shape(first))}")
        maps, dtype = _check_maps(maps, d, sets, dtype, check)
        self.dtype = np.dtype(dtype)
        self.frames = frames
        rdt = np.float64 if self.dtype == np.complex128 else np.float32

        def host(c):
            c = _array.to_numpy(c) if _array.is_torch(c) else np.asarray(c)
            return c.astype(np.float64 if c.dtype == np.float64 else rdt, copy=False)

        if frames:
            if sets:
                raise ValueError("sets (soft SENSE) with per-frame trajectories is not supported")
            n_frames = len(coord)
            if maps.ndim == d + 2 and maps.shape[0] not in (1, n_frames):
                raise ValueError(f"maps {tuple(maps.shape)}: expected (coils, *im) or ({n_frames}, coils, *im) for "
                                 f"{n_frames} frames")
            # coil images of frames lie as (..., C, F, *im): the ragged NUFFT's frame axis precedes the image
            coil_maps = maps[:, None] if maps.ndim == d + 1 else _swap_frames_coils(maps)
            self.coils = SenseMaps(coil_maps, d + 1, dtype=self.dtype,
                                   core_shape=(n_frames,) + tuple(maps.shape[-d:]))
            self.maps, self.sets, self.multi, self.n_sets = maps, False, False, 1
            self.n_coils, self.im_shape = int(maps.shape[-d - 1]), tuple(int(n) for n in maps.shape[-d:])
            self.batch_shape = (n_frames,)
            self._cache = {}
            self.nufft = make_nufft([host(c) for c in coord], self.im_shape, tol=tol, dtype=self.dtype,
                                    nthreads=nthreads, check_finite=check_finite)
            self.sample_shape = tuple(self.nufft.oshape)  # (M_total,)
            ishape, oshape = (n_frames,) + self.im_shape, (self.n_coils,) + self.sample_shape
        else:
            self._setup_maps(maps, d, sets)
            c = host(coord)
            nb = len(self.batch_shape)
            if coord_batched:
                if tuple(c.shape[:nb]) != self.batch_shape or c.ndim < nb + 2:
                    raise ValueError(f"coord {c.shape}: expected (*batch, *sample_shape, {d}) with batch "
                                     f"{self.batch_shape} (coord_batched=True)")
                sample_shape = tuple(c.shape[nb:-1])
                # frames (*batch, 1): one trajectory per item, broadcast over the coil axis
                c = c.reshape(self.batch_shape + (1,) + sample_shape + (d,))
                self.nufft = make_nufft(c, self.im_shape, tol=tol, dtype=self.dtype, frame_ndim=nb + 1,
                                        nthreads=nthreads, check_finite=check_finite)
            else:
                if c.ndim < 2:
                    raise ValueError(f"coord: expected shape (..., M, d), got {c.shape}")
                self.nufft = make_nufft(c, self.im_shape, tol=tol, dtype=self.dtype, nthreads=nthreads,
                                        check_finite=check_finite)
            self.sample_shape = self.nufft.sample_shape
            ishape = self.coils.ishape
            oshape = self.batch_shape + (self.n_coils,) + self.sample_shape
        self.coord_batched = bool(coord_batched) and not frames
        self.weights = self.sqrt_weights = None
        self.weighting = None
        if weights is not None:
            w = _as_param(weights, "weights", self.dtype, check, nonneg=True)
            wshape = self._weights_shape()
            try:
                w_full = np.broadcast_shapes(tuple(w.shape), wshape)
            except ValueError:
                w_full = None
            if w_full != wshape:
                raise ValueError(f"weights of shape {tuple(w.shape)} do not broadcast to the samples {wshape}")
            self.weights = w
            self.sqrt_weights = w ** 0.5
            # per-item weights (*batch, *sample) broadcast over the coil axis
            sw = self.sqrt_weights
            if self.coord_batched and sw.ndim > len(self.sample_shape):
                nb = len(self.batch_shape)
                sw = sw.reshape(tuple(sw.shape[:nb]) + (1,) + tuple(sw.shape[nb:]))
            self.weighting = Multiply(oshape, sw, dtype=self.dtype)
        self.use_toeplitz = bool(toeplitz)
        self._toep = None
        super().__init__(ishape, oshape, self.dtype)

    def _weights_shape(self):
        if self.coord_batched:
            return self.batch_shape + self.sample_shape
        return self.sample_shape

    def _forward(self, x):
        y = self.nufft._dispatch(self.coils._dispatch(x, "forward"), "forward")
        return y if self.weighting is None else self.weighting._dispatch(y, "forward")

    def _adjoint(self, y):
        if self.weighting is not None:
            y = self.weighting._dispatch(y, "adjoint")
        return self.coils._dispatch(self.nufft._dispatch(y, "adjoint"), "adjoint")

    def toeplitz_normal(self):
        """The NUFFT's Toeplitz normal ``N^H W N`` (built once)."""
        if self._toep is None:
            w = self.weights
            if w is not None:
                w = _array.to_numpy(w) if _array.is_torch(w) else w
                if self.coord_batched and w.ndim > len(self.sample_shape):
                    nb = len(self.batch_shape)
                    w = w.reshape(tuple(w.shape[:nb]) + (1,) + tuple(w.shape[nb:]))
            self._toep = self.nufft.toeplitz(w)
        return self._toep

    def _normal(self, x):
        if not self.use_toeplitz:
            return self._adjoint(self._forward(x))
        if self.weights is not None and _array.is_torch(self.weights) and self.weights.requires_grad:
            return self._adjoint(self._forward(x))  # the Toeplitz kernel would freeze the weights
        T = self.toeplitz_normal()
        return self.coils._dispatch(T._dispatch(self.coils._dispatch(x, "forward"), "forward"), "adjoint")


def _swap_frames_coils(maps):
    """Per-frame maps ``(F, C, *im)`` -> ``(C, F, *im)``."""
    if _array.is_torch(maps):
        return maps.transpose(0, 1)
    return np.ascontiguousarray(np.swapaxes(maps, 0, 1))
