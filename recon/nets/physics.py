"""The forward models the networks unroll, built per batch from the operator parameters.

A model is called as ``model(data, params, prior=None)`` (ARCHITECTURE.md). ``params`` is a dict:

MRI (``data``: k-space ``(B, C, y, x)`` Cartesian with zeros where not sampled, or
``(B, C, *sample)`` non-Cartesian; complex64):

- ``maps``: coil sensitivities ``(B, C, y, x)`` complex (required by MoDL; VarNet estimates them
  from the calibration region when absent);
- Cartesian: ``mask`` ``(B, y, x)``, ``(B, 1, x)`` (fastMRI columns) or ``(y, x)``/``(1, x)`` shared;
- non-Cartesian: ``coord`` ``(B, *sample, 2)`` in cycles/FOV (one trajectory per item) and
  optionally ``weights`` ``(B, *sample)`` (density compensation: weighted least squares, data
  multiplied by ``sqrt(weights)``), and ``im_shape`` ``(y, x)`` when ``maps`` are absent.

CT (``data``: post-log sinogram ``(B, *sino_shape)`` float32):

- ``projector``: a :class:`recon.ops.Projector` (one geometry shared by the batch);
- ``weights``: statistical weights ``(B, *sino_shape)`` (1 / variance; :func:`recon.ct.pwls_weights`),
  required by the unrolled PWLS model, ignored by learned primal-dual.

Everything here is torch on the data's device; the operators are recon's (``CartesianSense``,
``NonCartesianSense`` with Toeplitz normal, ``Projector``), so gradients reach tensor parameters.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ..ops.sense import CartesianSense, NonCartesianSense

CARTESIAN, NONCARTESIAN = "cartesian", "noncartesian"
TRAJECTORIES = (CARTESIAN, NONCARTESIAN)


def _tensor(a, name: str, device, dtype=None) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"params[{name!r}]: expected a torch tensor or numpy array, got {type(a).__name__}")
    return a.to(device=device, dtype=dtype) if dtype is not None else a.to(device=device)


def check_params(params, required=(), where: str = "model"):
    if not isinstance(params, dict):
        raise TypeError(f"{where}: params must be a dict of operator parameters, got {type(params).__name__}")
    missing = [k for k in required if params.get(k) is None]
    if missing:
        raise ValueError(f"{where}: params lack {missing} (have {sorted(params)})")


def trajectory_of(params) -> str:
    """'cartesian' when ``params`` hold a ``mask``, 'noncartesian' when they hold a ``coord``."""
    has_mask, has_coord = params.get("mask") is not None, params.get("coord") is not None
    if has_mask == has_coord:
        raise ValueError("params must hold exactly one of 'mask' (Cartesian) or 'coord' (non-Cartesian)")
    return CARTESIAN if has_mask else NONCARTESIAN


def check_kspace(data, batch_ndim: int = 1) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data: expected a torch tensor (k-space), got {type(data).__name__}")
    if data.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"data: expected complex64 k-space, got {data.dtype}")
    if data.ndim < batch_ndim + 2:
        raise ValueError(f"data: expected k-space (B, C, ...), got shape {tuple(data.shape)}")
    return data


class MriPhysics:
    """SENSE for one batch: ``A`` with ``forward``/``adjoint``/``normal`` on ``(B, y, x)`` images,
    and ``adjoint_data(y)`` = ``A^H`` of the (density-weighted) data."""

    def __init__(self, params, data: torch.Tensor, maps: torch.Tensor, *, trajectory: str,
                 nufft_tol: float = 1e-3):
        got = trajectory_of(params)
        if got != trajectory:
            raise ValueError(f"this model was built for {trajectory} data, but params describe {got} sampling "
                             f"({'mask' if got == CARTESIAN else 'coord'} given)")
        B, C = int(data.shape[0]), int(data.shape[1])
        if maps.ndim != 4 or tuple(maps.shape[:2]) != (B, C):
            raise ValueError(f"maps: expected (B, C, y, x) = ({B}, {C}, y, x) to match the data, got {tuple(maps.shape)}")
        self.maps = maps
        self.im_shape = tuple(int(n) for n in maps.shape[-2:])
        self.sqrt_w = None
        if trajectory == CARTESIAN:
            if tuple(data.shape[2:]) != self.im_shape:
                raise ValueError(f"data {tuple(data.shape)} and maps {tuple(maps.shape)} differ in image shape")
            mask = _tensor(params["mask"], "mask", data.device, data.real.dtype)
            self.op = CartesianSense(maps, mask, check=False)
        else:
            coord = params["coord"]
            cshape = tuple(coord.shape)
            if len(cshape) < 3 or cshape[0] != B or cshape[-1] != 2 or cshape[1:-1] != tuple(data.shape[2:]):
                raise ValueError(f"coord: expected (B, *sample, 2) = ({B}, {', '.join(map(str, data.shape[2:]))}, 2) "
                                 f"to match the data, got {cshape}")
            if isinstance(coord, torch.Tensor):
                coord = coord.detach().cpu().numpy()
            w = params.get("weights")
            if w is not None:
                w = _tensor(w, "weights", data.device, data.real.dtype)
                if tuple(w.shape) != (B,) + tuple(data.shape[2:]):
                    raise ValueError(f"weights: expected (B, *sample) = {(B,) + tuple(data.shape[2:])}, "
                                     f"got {tuple(w.shape)}")
                self.sqrt_w = w.sqrt()[:, None]
            # plans and Toeplitz kernels from the plan cache: the same trajectories come back every call
            self.op = NonCartesianSense(maps, np.asarray(coord, dtype=np.float32), tol=nufft_tol, weights=w,
                                        coord_batched=True, check=False, cached=True)

    def forward(self, x):
        return self.op.forward(x)

    def adjoint(self, y):
        return self.op.adjoint(y)

    def normal(self, x):
        return self.op.normal(x)

    def weighted_data(self, data):
        """The data as the operator's range sees it: ``sqrt(w) y`` with density weights, else ``y``
        (Cartesian data are masked)."""
        if self.sqrt_w is not None:
            return data * self.sqrt_w
        if getattr(self.op, "mask", None) is not None:
            return data * self.op.mask
        return data

    def adjoint_data(self, data):
        return self.adjoint(self.weighted_data(data))


# ---- CT --------------------------------------------------------------------------------------------

_NORMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def projector_norm(projector, n_iter: int = 20) -> float:
    """``||A||`` of a CT projector by power iteration (cached per projector object), so that the
    networks work with ``A / ||A||`` and data of order one."""
    if projector not in _NORMS:
        from ..solvers import power_iteration

        lam = power_iteration(projector.normal, np.zeros(projector.ishape, dtype=np.float32), n_iter)
        _NORMS[projector] = float(np.sqrt(lam))
    return _NORMS[projector]


def check_ct(data, params, where: str, need_weights: bool = False):
    from ..ops import Operator

    check_params(params, ("projector",) + (("weights",) if need_weights else ()), where)
    P = params["projector"]
    if not isinstance(P, Operator) or not hasattr(P, "geometry"):
        raise TypeError(f"{where}: params['projector'] must be a recon.ops.Projector, got {type(P).__name__}")
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{where}: data must be a torch tensor (sinogram), got {type(data).__name__}")
    if data.dtype != torch.float32:
        raise TypeError(f"{where}: data must be a float32 sinogram, got {data.dtype}")
    if data.ndim != 1 + len(P.oshape) or tuple(data.shape[1:]) != tuple(P.oshape):
        raise ValueError(f"{where}: data must be (B, {', '.join(map(str, P.oshape))}), got {tuple(data.shape)}")
    if need_weights:
        w = params["weights"]
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(data.shape):
            raise ValueError(f"{where}: params['weights'] must be a tensor shaped like the data {tuple(data.shape)}")
    return P


def fbp_init(data: torch.Tensor, projector) -> torch.Tensor:
    """Hann-filtered FBP of the batch (on the host; the initial image of the CT models, not
    differentiated: it depends on the data only)."""
    from ..ct import fbp

    g = data.detach().cpu().numpy()
    x = fbp(g, projector.geometry, filter="hann")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(data.device)
