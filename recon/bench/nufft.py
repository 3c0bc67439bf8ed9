"""Shared pieces of the NUFFT benchmarks (``recon bench``, benchmarks/run_nufft.py, the pytest-benchmark
suite and ab_compare.py through ``benchmarks/nufft_peers.py``): seeded trajectories, exact references on
subsets, and one adapter per library that maps recon's convention onto the peer's.

recon's convention (recon/conventions.py): coordinates ``k`` in cycles per FOV, shape ``(M, d)``,
range ``[-N/2, N/2]``, last axis ordered like the image axes; image positions ``x = n - N//2``;

    type 2 (forward):  y_j = (1/sqrt(prod N)) sum_n f[n] exp(-2 pi i sum_a k_ja x_a / N_a)
    type 1 (adjoint):  its conjugate transpose.

How each peer is mapped (every adapter returns recon-convention outputs, so one error measure fits all):

* FINUFFT (``finufft.Plan``): points in radians ``2 pi k / N`` per axis, the first coordinate array
  belongs to the first array axis; ``isign=-1`` for type 2, ``+1`` for type 1; ``modeord=0`` orders the
  modes ``-floor(N/2) .. ceil(N/2)-1``, which is recon's ``n - N//2`` for odd and even N. Output times
  ``1/sqrt(prod N)``.
* ducc0 (``ducc0.nufft.plan``): ``periodicity=N`` per axis so coordinates stay in cycles/FOV;
  ``forward=True`` is the ``-i`` exponent; ``fft_order=False`` starts the grid at the most negative
  node (``-N//2``). Output times ``1/sqrt(prod N)``.
* SigPy (``sigpy.nufft`` / ``sigpy.nufft_adjoint``): recon's convention (no conversion). No plan.
* torchkbnufft (``KbNufft`` / ``KbNufftAdjoint``, ``norm='ortho'``): ``omega = 2 pi k / N`` of
  shape ``(d, M)``; images ``(batch, coil, *N)``. Its scaling differs from recon's by a constant
  (it normalises over the oversampled grid), so its output is multiplied by one least-squares scalar
  fitted against recon's convention on a tiny problem at plan time (reported as ``scale``).

All timings use ``nthreads`` threads (finufft/ducc0/recon arguments, torch.set_num_threads, and
OMP/NUMBA/MKL environment variables set by the runner). SigPy's CPU NUFFT is single-threaded numba
code apart from numpy's FFT.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .report import importable

#: 2D golden angle for full-diameter spokes: pi * (sqrt(5) - 1) / 2 = 111.246 deg.
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0
# Golden means for 3D radial (Chan et al., MRM 2009): the two smallest roots' fractional parts.
GOLDEN_MEANS = (0.4656, 0.6823)


# ---- trajectories (cycles per FOV) ----------------------------------------------------------------

def golden_angle_radial_2d(n_spokes: int, n_samples: int, N: int) -> np.ndarray:
    """Full-diameter spokes at golden-angle increments (111.25 deg); samples ``(s - n/2) * N/n``, so
    coordinates lie in ``[-N/2, N/2)`` along each spoke. Returns ``(n_spokes, n_samples, 2)``."""
    ang = np.arange(n_spokes) * GOLDEN_ANGLE
    r = (np.arange(n_samples) - n_samples / 2) * (N / n_samples)
    return np.stack([np.outer(np.cos(ang), r), np.outer(np.sin(ang), r)], axis=-1)


def golden_means_radial_3d(n_spokes: int, n_samples: int, N: int) -> np.ndarray:
    """3D koosh-ball: full-diameter spokes whose directions follow the 2D golden means
    (cos(polar) = frac(m * 0.4656), azimuth = 2 pi frac(m * 0.6823)). Returns ``(n_spokes, n_samples, 3)``
    with axes ordered (z, y, x) like the image; radius ``(s - n/2) * N/n``."""
    m = np.arange(n_spokes)
    cz = np.mod(m * GOLDEN_MEANS[0], 1.0)
    az = 2 * np.pi * np.mod(m * GOLDEN_MEANS[1], 1.0)
    sz = np.sqrt(1.0 - cz**2)
    d = np.stack([cz, sz * np.sin(az), sz * np.cos(az)], axis=-1)  # (z, y, x)
    r = (np.arange(n_samples) - n_samples / 2) * (N / n_samples)
    return r[None, :, None] * d[:, None, :]


# ---- exact references on subsets (float64 direct sums) ----------------------------------------------

def _centred(n):
    return np.arange(n) - n // 2


def nudft_type2_subset(f: np.ndarray, coord: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Exact type 2 for the samples ``idx``: ``f`` (batch, *N), ``coord`` (M, d). Returns (batch, len(idx)).
    Separable along the image axes, so memory stays O(len(idx) * N^(d-1))."""
    N = f.shape[1:]
    d = len(N)
    k = coord[idx].astype(np.float64)
    e = [np.exp(-2j * np.pi * np.outer(k[:, a], _centred(N[a])) / N[a]) for a in range(d)]  # (J, N_a)
    out = np.empty((f.shape[0], len(idx)), dtype=np.complex128)
    for b in range(f.shape[0]):
        g = f[b].astype(np.complex128)
        if d == 2:
            out[b] = np.einsum("ja,ja->j", e[0], e[1] @ g.T)   # sum_a e0[j,a] sum_b e1[j,b] g[a,b]
        else:
            J = len(idx)
            t = g.reshape(-1, N[2]) @ e[2].T                   # (N0*N1, J)
            t = t.reshape(N[0], N[1], J)
            t = np.einsum("abj,jb->ja", t, e[1])               # (J, N0)
            out[b] = np.einsum("ja,ja->j", t, e[0])
    return out / math.sqrt(float(np.prod(N)))


def nudft_type1_subset(y: np.ndarray, coord: np.ndarray, N, pix: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Exact type 1 at the flat pixel indices ``pix``: ``y`` (batch, M). Returns (batch, len(pix))."""
    N = tuple(N)
    pos = np.stack(np.unravel_index(pix, N), axis=-1) - np.asarray(N) // 2  # (P, d) centred positions
    out = np.zeros((y.shape[0], len(pix)), dtype=np.complex128)
    scaled = pos / np.asarray(N, dtype=np.float64)  # (P, d)
    for s in range(0, coord.shape[0], chunk):
        k = coord[s : s + chunk].astype(np.float64)
        E = np.exp(2j * np.pi * (k @ scaled.T))  # (chunk, P)
        out += y[:, s : s + chunk].astype(np.complex128) @ E
    return out / math.sqrt(float(np.prod(N)))


def rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm((got - ref).ravel()) / np.linalg.norm(ref.ravel()))


@dataclass
class Problem:
    """One benchmark input: trajectory, image shape, number of coils, type (1 or 2), and the exact
    reference on a subset (``ref_idx`` into samples for type 2, flat pixel indices for type 1)."""

    name: str
    coord: np.ndarray      # (M, d) float64, cycles/FOV
    im_shape: tuple
    ncoils: int
    kind: int              # 2: image -> samples, 1: samples -> image
    data: np.ndarray       # complex64 input: (ncoils, *N) for type 2, (ncoils, M) for type 1
    ref_idx: np.ndarray
    ref: np.ndarray        # (ncoils, len(ref_idx)) complex128
    extra: dict = field(default_factory=dict)

    def subset(self, out: np.ndarray) -> np.ndarray:
        out = out.reshape(self.ncoils, -1)
        return out[:, self.ref_idx]


def make_problem(name, coord, im_shape, ncoils, kind, seed, n_ref=200) -> Problem:
    rng = np.random.default_rng(seed)
    coord = np.ascontiguousarray(coord.reshape(-1, len(im_shape)), dtype=np.float64)
    M = coord.shape[0]
    if kind == 2:
        data = (rng.standard_normal((ncoils,) + tuple(im_shape)) + 1j * rng.standard_normal((ncoils,) + tuple(im_shape)))
        data = data.astype(np.complex64)
        idx = np.sort(rng.choice(M, size=min(n_ref, M), replace=False))
        ref = nudft_type2_subset(data, coord, idx)
    else:
        data = (rng.standard_normal((ncoils, M)) + 1j * rng.standard_normal((ncoils, M))).astype(np.complex64)
        npix = int(np.prod(im_shape))
        idx = np.sort(rng.choice(npix, size=min(n_ref, npix), replace=False))
        ref = nudft_type1_subset(data, coord, im_shape, idx)
    return Problem(name, coord, tuple(im_shape), ncoils, kind, data, idx, ref)


# ---- adapters -----------------------------------------------------------------------------------

class Adapter:
    """``plan(problem, param) -> handle`` (timed as setup) and ``run(handle, data) -> out`` (timed),
    ``out`` in recon's convention with shape (ncoils, M) or (ncoils, *N).

    ``params`` lists candidate settings from cheapest to most accurate; the runner picks, per
    target error, the first whose measured error on a small proxy problem is below the target."""

    name = "?"
    #: the Python package behind the adapter (what must import, and whose ``__version__`` is reported)
    package = "?"
    params: list = []

    def __init__(self, nthreads: int):
        self.nthreads = nthreads

    @classmethod
    def available(cls) -> bool:
        return importable(cls.package)

    def version(self) -> str:
        return importlib.import_module(self.package).__version__

    def describe(self, param) -> str:
        return str(param)

    def plan(self, p: Problem, param):
        raise NotImplementedError

    def run(self, h, data):
        raise NotImplementedError


class Recon(Adapter):
    name = "recon"
    package = "recon"
    # recon is calibrated like every peer (equal MEASURED accuracy): its tol is a guarantee, met with
    # a margin (measured errors are typically 5-10x below tol), so at a given target the cheapest tol
    # whose measured error is below the target is larger than the target. Default input checks stay on.
    params = [("complex64", e) for e in (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)]


    def describe(self, param):
        return f"tol={param[1]:g} {param[0]}"

    def plan(self, p, param):
        from recon.ops import Nufft

        dt, tol = param
        op = Nufft(p.coord, p.im_shape, tol, dtype=dt, nthreads=self.nthreads)
        return op, np.dtype(dt)

    def run(self, h, data):
        op, dt = h
        data = data.astype(dt, copy=False)
        return op.forward(data) if data.shape[1:] == op.im_shape else op.adjoint(data)


class Finufft(Adapter):
    name = "finufft"
    package = "finufft"
    params = [("complex64", e) for e in (1e-2, 3e-3, 1e-3, 3e-4)] + \
             [("complex64", e) for e in (1e-4, 3e-5, 1e-5, 3e-6, 1e-6)] + \
             [("complex128", e) for e in (1e-6, 3e-7, 1e-7)]

    def describe(self, param):
        return f"eps={param[1]:g} {param[0]}"

    def plan(self, p, param):
        import finufft

        dt, eps = param
        N = p.im_shape
        fdt = np.float32 if dt == "complex64" else np.float64
        pts = [np.ascontiguousarray(2 * np.pi * p.coord[:, a] / N[a], dtype=fdt) for a in range(len(N))]
        plan = finufft.Plan(p.kind, N, n_trans=p.ncoils, eps=eps, isign=-1 if p.kind == 2 else 1, dtype=dt,
                            nthreads=self.nthreads, modeord=0)
        plan.setpts(*pts)
        return plan, np.dtype(dt), 1.0 / math.sqrt(float(np.prod(N))), pts

    def run(self, h, data):
        plan, dt, scale, _ = h
        out = plan.execute(np.ascontiguousarray(data, dtype=dt))
        out *= scale
        return out


class Ducc(Adapter):
    name = "ducc0"
    package = "ducc0"
    params = [("complex64", e) for e in (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1.01e-6)] + \
             [("complex128", e) for e in (1e-6, 3e-7, 1e-7)]

    def describe(self, param):
        return f"epsilon={param[1]:g} {param[0]}"

    def plan(self, p, param):
        import ducc0.nufft

        dt, eps = param
        fdt = np.float32 if dt == "complex64" else np.float64
        N = p.im_shape
        plan = ducc0.nufft.plan(nu2u=p.kind == 1, coord=p.coord.astype(fdt), grid_shape=N, epsilon=eps,
                                nthreads=self.nthreads, periodicity=[float(n) for n in N], fft_order=False)
        return plan, np.dtype(dt), 1.0 / math.sqrt(float(np.prod(N))), p.kind, N

    def run(self, h, data):
        plan, dt, scale, kind, N = h
        data = np.ascontiguousarray(data, dtype=dt)
        if kind == 2:
            out = plan.u2nu(grid=data if data.shape[0] > 1 else data[0], forward=True)
        else:
            out = plan.nu2u(points=data if data.shape[0] > 1 else data[0], forward=False)
        out = out.reshape((data.shape[0],) + out.shape[(1 if data.shape[0] > 1 else 0):])
        out *= scale
        return out


class Sigpy(Adapter):
    name = "sigpy"
    package = "sigpy"
    # (dtype, oversamp, width): sigpy's default is (1.25, 4)
    params = [("complex64", 1.25, 4), ("complex64", 2.0, 3), ("complex64", 2.0, 4), ("complex64", 2.0, 5),
              ("complex64", 2.0, 6), ("complex64", 2.0, 7), ("complex64", 2.0, 8),
              ("complex128", 2.0, 8), ("complex128", 2.0, 10)]

    def describe(self, param):
        return f"oversamp={param[1]:g} width={param[2]} {param[0]}"

    def plan(self, p, param):
        dt = np.dtype(param[0])
        return p.coord.astype(np.float32 if dt == np.complex64 else np.float64), param, p.kind, p.im_shape

    def run(self, h, data):
        import sigpy

        coord, (dt, os_, w), kind, N = h
        data = data.astype(dt, copy=False)
        if kind == 2:
            return sigpy.nufft(data, coord, oversamp=os_, width=w)
        return sigpy.nufft_adjoint(data, coord, oshape=(data.shape[0],) + tuple(N), oversamp=os_, width=w)


class TorchKbNufft(Adapter):
    name = "torchkbnufft"
    package = "torchkbnufft"
    # (dtype, numpoints, table_oversamp), grid 2N; default (complex64, 6, 2**10)
    params = [("complex64", 4, 2**10), ("complex64", 5, 2**10), ("complex64", 6, 2**10),
              ("complex64", 7, 2**12), ("complex64", 8, 2**14), ("complex64", 8, 2**16),
              ("complex128", 8, 2**16), ("complex128", 10, 2**18)]

    def describe(self, param):
        return f"numpoints={param[1]} table_oversamp=2^{int(math.log2(param[2]))} {param[0]}"

    def _ops(self, N, param):
        import torch
        import torchkbnufft as tkbn

        dt, npts, tos = param
        tdt = getattr(torch, dt)
        return tkbn.KbNufft(im_size=N, numpoints=npts, table_oversamp=tos, dtype=tdt), \
            tkbn.KbNufftAdjoint(im_size=N, numpoints=npts, table_oversamp=tos, dtype=tdt)

    def _scale(self, N, param):
        """The constant between torchkbnufft (norm='ortho') and recon, fitted on a tiny problem."""
        import torch

        rng = np.random.default_rng(0)
        small = tuple(min(n, 16) for n in N)
        coord = (rng.random((64, len(N))) - 0.5) * np.asarray(small)
        x = (rng.standard_normal((1,) + small) + 1j * rng.standard_normal((1,) + small))
        ref = nudft_type2_subset(x, coord, np.arange(64))[0]
        fwd, _ = self._ops(small, param)
        om = torch.from_numpy(np.ascontiguousarray((2 * np.pi * coord / np.asarray(small)).T))
        om = om.to(torch.float32 if param[0] == "complex64" else torch.float64)
        got = fwd(torch.from_numpy(x.astype(param[0]))[None], om, norm="ortho")[0, 0].numpy().astype(np.complex128)
        return complex(np.vdot(got, ref) / np.vdot(got, got))

    def plan(self, p, param):
        import torch

        fwd, adj = self._ops(p.im_shape, param)
        om = torch.from_numpy(np.ascontiguousarray((2 * np.pi * p.coord / np.asarray(p.im_shape)).T))
        om = om.to(torch.float32 if param[0] == "complex64" else torch.float64)
        s = self._scale(p.im_shape, param)
        self.last_scale = s
        return (fwd if p.kind == 2 else adj), om, s, p.kind, p.im_shape, np.dtype(param[0])

    def run(self, h, data):
        import torch

        op, om, s, kind, N, dt = h
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(data, dtype=dt))[None]  # (1, coils, ...)
            out = op(t, om, norm="ortho")[0].numpy()
        # the fitted scale is for type 2; type 1 is its adjoint: conj(s)
        out *= (s if kind == 2 else s.conjugate())
        return out


ADAPTERS = {a.name: a for a in (Recon, Finufft, Ducc, Sigpy, TorchKbNufft)}


# ---- geometries, cases and calibration ---------------------------------------------------------------

#: name -> (trajectory factory, image shape); the benchmark cases of recon issue 2.
GEOMETRIES = {
    "2d": (lambda: golden_angle_radial_2d(402, 512, 256), (256, 256)),     # 205,824 samples
    "3d": (lambda: golden_means_radial_3d(4096, 256, 128), (128, 128, 128)),  # 1,048,576 samples
}
#: small problems of the same kind on which each peer's accuracy parameter is calibrated
PROXIES = {
    "2d": (lambda: golden_angle_radial_2d(101, 128, 64), (64, 64)),
    "3d": (lambda: golden_means_radial_3d(384, 64, 32), (32, 32, 32)),
}
COILS = {"2d": (1, 8), "3d": (1,)}
TARGETS = (1e-3, 1e-6)


def case_names(geometries=("2d", "3d")):
    """(name, geometry, ncoils, kind) of every benchmark problem; targets multiply these."""
    out = []
    for g in geometries:
        for nc in COILS[g]:
            for kind in (2, 1):
                out.append((f"{g}-{nc}coil-type{kind}", g, nc, kind))
    return out


def build_problem(geometry: str, ncoils: int, kind: int, seed: int = 0, n_ref: int = 200) -> Problem:
    traj, N = GEOMETRIES[geometry]
    return make_problem(f"{geometry}-{ncoils}coil-type{kind}", traj(), N, ncoils, kind, seed=seed, n_ref=n_ref)


_CALIBRATION: dict = {}


def calibrate(adapter: Adapter, geometry: str, target: float):
    """The first (cheapest) of ``adapter.params`` whose error on the proxy problem is <= target.

    Returns ``(param, proxy_error, reached, proxy_seconds)``; when no setting reaches the target, the
    most accurate one is returned with ``reached=False``. ``proxy_seconds`` is the execute time of
    the returned setting on the proxy (used to estimate the cost on the real case). recon is
    calibrated the same way.
    """
    key = (adapter.name, geometry, target)
    if key in _CALIBRATION:
        return _CALIBRATION[key]
    traj, N = PROXIES[geometry]
    proxy = make_problem(f"proxy-{geometry}", traj(), N, 1, 2, seed=1, n_ref=200)
    fixed = getattr(adapter, "fixed", None)
    candidates = [fixed[target]] if fixed else adapter.params
    best = None
    result = None
    for param in candidates:
        h = adapter.plan(proxy, param)
        err = rel_error(proxy.subset(adapter.run(h, proxy.data)), proxy.ref)
        if best is None or err < best[1]:
            best = (param, err)
        if err <= target or fixed:
            result = (param, err, err <= target)
            break
    if result is None:
        result = (best[0], best[1], False)
    # time the chosen setting on the proxy again: the first call may include JIT compilation
    h = adapter.plan(proxy, result[0])
    t0 = time.perf_counter()
    adapter.run(h, proxy.data)
    result = result + (time.perf_counter() - t0,)
    _CALIBRATION[key] = result
    return result


def settle(adapter: Adapter, problem: Problem, geometry: str, target: float, context=None):
    """Plan and run ``problem`` at the proxy-calibrated setting; while the error measured on the
    problem itself is above ``target``, move on to the next more accurate setting (float rounding
    grows with problem size, so a proxy can be optimistic).

    Returns a dict with the accepted ``param``, the plan handle ``h``, ``error``, ``plan_s``,
    ``first_s`` (first execute), ``tried`` (rejected settings) and ``ctx`` (the ``context()`` object
    that wrapped the accepted attempt, e.g. a peak-memory probe).
    """
    import contextlib

    context = context or contextlib.nullcontext
    param0, _, reached, _ = calibrate(adapter, geometry, target)
    fixed = getattr(adapter, "fixed", None)
    if fixed:
        candidates = [fixed[target]]
    elif reached:
        candidates = adapter.params[adapter.params.index(param0):]
    else:  # nothing reached the target on the proxy: its most accurate setting only
        candidates = [param0]
    tried = []
    for i, param in enumerate(candidates):
        with context() as ctx:
            t0 = time.perf_counter()
            h = adapter.plan(problem, param)
            plan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = adapter.run(h, problem.data)
            first_s = time.perf_counter() - t0
            err = rel_error(problem.subset(out), problem.ref)
            del out
            last = i == len(candidates) - 1
            if err <= target or last:
                return dict(param=param, h=h, error=err, plan_s=plan_s, first_s=first_s, tried=tried, ctx=ctx,
                            reached=err <= target)
            del h
        tried.append(adapter.describe(param))
    raise AssertionError("unreachable")


def estimated_seconds(proxy_seconds: float, geometry: str, problem: Problem) -> float:
    """Execute time on ``problem`` extrapolated from the proxy: linear in samples x coils, or in
    image size x coils, whichever grows more (a rough, usually pessimistic figure)."""
    traj, N = PROXIES[geometry]
    m_proxy = traj().reshape(-1, len(N)).shape[0]
    grow = max(problem.coord.shape[0] / m_proxy, float(np.prod(problem.im_shape)) / float(np.prod(N)))
    return proxy_seconds * grow * problem.ncoils


# ---- recon bench: the NUFFT part ---------------------------------------------------------------------------

def sweep_problem(N: int, kind: int, ncoils: int = 1, seed: int = 0) -> Problem:
    """The 2D case at matrix ``N``: golden-angle radial with the 256^2 case's proportions
    (``round(402 N / 256)`` spokes x ``2N`` samples, about ``3.1 N^2`` samples), exact references on
    200 samples or pixels."""
    traj = golden_angle_radial_2d(int(round(402 * N / 256)), 2 * N, N)
    return make_problem(f"2d-{N}-type{kind}", traj, (N, N), ncoils, kind, seed=seed, n_ref=200)


def _median_exec(adapter: Adapter, h, data, reps: int, first: float) -> float:
    times = [first]
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        adapter.run(h, data)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:] if len(times) > 1 else times))


def bench(ctx):
    """``recon bench``'s NUFFT part: recon and every installed peer at equal measured accuracy (each at
    its cheapest setting whose error is below the target, :func:`calibrate`/:func:`settle`) on 2D radial
    type 2 and type 1 problems of growing size; and each library's settings swept on one size (error
    against time). On ``cuda``: recon against cuFINUFFT and torchkbnufft (:mod:`recon.bench.nufft_gpu`)."""
    from . import Section
    from .report import table

    if ctx.device == "cuda":
        return _bench_gpu(ctx)
    sizes = ctx.pick((32, 64), (64, 128), (64, 128, 256, 512))
    targets = ctx.pick((1e-3,), (1e-3,), (1e-3, 1e-6))
    reps = ctx.pick(2, 3, 7)
    max_call = ctx.pick(2.0, 5.0, 60.0)
    sweep_n = ctx.pick(64, 128, 256)
    installed = {n: cls for n, cls in ADAPTERS.items() if ctx.wants(n) and cls.available()}
    if "torchkbnufft" in installed:
        import torch

        torch.set_num_threads(ctx.threads)
    adapters = {n: cls(ctx.threads) for n, cls in installed.items()}
    sec = Section("nufft", "NUFFT", size_label="matrix size N (N x N image, ~3.1 N^2 radial samples)")
    rows, lines = [], []
    for N in sizes:
        for kind in (2, 1):
            p = sweep_problem(N, kind)
            for target in targets:
                base = None
                for name, ad in adapters.items():
                    param0, _, _, proxy_s = calibrate(ad, "2d", target)
                    est = estimated_seconds(proxy_s, "2d", p)
                    case = f"2D {N}x{N} type {kind}"
                    if est > max_call:
                        lines.append((case, f"{target:g}", name, ad.describe(param0), "-", "-",
                                      f"skipped: ~{est:.1f} s per call (est.)", "-"))
                        continue
                    res = settle(ad, p, "2d", target)
                    exec_s = _median_exec(ad, res["h"], p.data, reps, res["first_s"])
                    base = exec_s if name == "recon" else base
                    row = dict(library=name, case=case, size=N, kind=kind, target=target,
                               setting=ad.describe(res["param"]), error=res["error"], reached=bool(res["reached"]),
                               plan_s=res["plan_s"], time_s=exec_s, ratio=exec_s / base if base else float("nan"))
                    rows.append(row)
                    sec.sizes.setdefault(f"{name} type {kind}" + (f" {target:g}" if len(targets) > 1 else ""),
                                         []).append((N, exec_s))
                    lines.append((case, f"{target:g}", name + ("" if row["reached"] else " !"), row["setting"],
                                  f"{row['error']:.1e}", f"{1e3 * row['plan_s']:.1f}", f"{1e3 * exec_s:.2f}",
                                  f"{row['ratio']:.2f}" if base else "-"))
                    ctx.log(f"   {case} {target:g} {name}: {1e3 * exec_s:.2f} ms, error {row['error']:.1e}")
    # accuracy against time: every setting of every library on one problem (type 1, the adjoint)
    p = sweep_problem(sweep_n, 1)
    for name, ad in adapters.items():
        params = ad.params if ctx.scale == "full" else ad.params[:: max(1, len(ad.params) // 4)]
        for param in params:
            t0 = time.perf_counter()
            h = ad.plan(p, param)
            plan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = ad.run(h, p.data)
            first = time.perf_counter() - t0
            if first > max_call:
                break  # more accurate settings only cost more
            err = rel_error(p.subset(out), p.ref)
            exec_s = _median_exec(ad, h, p.data, reps if first * reps <= max_call else 1, first)
            sec.accuracy.setdefault(name, []).append((exec_s, err))
            rows.append(dict(library=name, case=f"2D {sweep_n}x{sweep_n} type 1 sweep", size=sweep_n, kind=1,
                             setting=ad.describe(param), error=err, plan_s=plan_s, time_s=exec_s, sweep=True))
    missing = sorted(n for n in ADAPTERS if ctx.wants(n) and n not in installed)
    sec.rows = rows
    sec.text = ("Equal measured accuracy: every library at its cheapest setting whose error is below the target "
                "(calibrated on a small proxy, moved up when the error measured on the case is above it); *error* "
                "= relative l2 error against a float64 direct sum on 200 samples (type 2) / pixels (type 1); "
                f"*exec* = median of {reps} runs after the first; *ratio* = library / recon (> 1: recon faster); "
                f"`!`: the target is not reached at the library's most accurate setting. Threads: {ctx.threads} for "
                "every library." + (f" Not installed: {', '.join(missing)}." if missing else "") + "\n\n"
                + table(("case", "target", "library", "setting", "error", "plan ms", "exec ms", "ratio"), lines)
                + f"\nAccuracy against time: every setting of each library on the {sweep_n}x{sweep_n} type 1 problem "
                  f"(the plot; settings slower than {max_call:g} s a call are left out, those slower than "
                  f"{max_call / reps:.2g} s timed once).\n")
    return sec


def _bench_gpu(ctx):
    """The NUFFT part on the GPU: :func:`recon.bench.nufft_gpu.bench_case` over growing 2D sizes."""
    from . import Section
    from . import nufft_gpu as G
    from .report import table

    lib = G.Lib("torch")
    sizes = ctx.pick((32, 64), (128, 256), (128, 256, 512))
    targets = ctx.pick((1e-3,), (1e-3, 1e-6), (1e-3, 1e-6))
    rng = np.random.default_rng(0)
    sec = Section("nufft", "NUFFT", size_label="matrix size N (N x N image, ~3.1 N^2 radial samples)",
                  accuracy_label="relative error")
    raw = []
    for N in sizes:
        case = dict(coord=G.radial_2d(int(round(402 * N / 256)), 2 * N, N), N=(N, N), coils=1, reps=ctx.pick(2, 5, 10))
        for target in targets:
            for kind in (2, 1):
                before = len(raw)
                G.bench_case(lib, case, f"2D {N}x{N}", kind, target, [n for n in G.LIBS if ctx.wants(n)], rng, raw)
                for r in raw[before:]:
                    r["size"] = N
    lines, rows = [], []
    for r in raw:
        ok = np.isfinite(r["exec"])
        rows.append(dict(library=r["lib"], case=r["case"], size=r["size"], target=r["target"], setting=r["setting"],
                         error=r["error"], plan_s=r["plan"], time_s=r["exec"], ratio=r["ratio"], peak_mib=r["peak"],
                         note=r["note"]))
        if ok:
            sec.sizes.setdefault(f"{r['lib']} {r['case'].split()[-1]} {r['target']:g}", []).append((r["size"], r["exec"]))
            sec.accuracy.setdefault(r["lib"], []).append((r["exec"], r["error"]))
        lines.append((r["case"], f"{r['target']:g}", r["lib"], r["setting"], f"{r['error']:.1e}", f"{1e3 * r['plan']:.1f}",
                      f"{1e3 * r['exec']:.3f}", f"{r['ratio']:.2f}", f"{r['peak']:.0f}", r["note"]))
    sec.rows = [r for r in rows if np.isfinite(r["time_s"])]
    sec.text = (f"GPU ({G.device_name(lib)}): recon's CUDA NUFFT against cuFINUFFT and torchkbnufft where installed, "
                "each at its setting for the target; error against a float64 direct sum (on the GPU); times "
                "synchronised, median after a warm-up; peak = torch allocator MiB.\n\n"
                + table(("case", "target", "library", "setting", "error", "plan ms", "exec ms", "ratio", "peak MiB", "note"),
                        lines))
    return sec
