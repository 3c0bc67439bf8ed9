"""pytest-benchmark suite for the NUFFT: the cases of benchmarks/run_nufft.py, one benchmark per
(library, case, accuracy target).

    pytest benchmarks/test_bench_nufft.py                        # all installed libraries
    pytest benchmarks/test_bench_nufft.py -k "recon and 2d"      # a subset
    pytest benchmarks/ --benchmark-compare                       # against a saved run

Each benchmark stores in ``extra_info``: the setting used (see nufft_peers.calibrate), the measured
relative error on the case against the exact subset reference, the plan time, and the target.
Only recon's measured error is asserted (<= target); peers' errors are recorded.

Environment: ``RECON_BENCH_THREADS`` (threads, default all cores), ``RECON_BENCH_ROUNDS`` (timed
rounds for recon/FINUFFT/ducc0, default 5; SigPy/torchkbnufft: 1), ``RECON_BENCH_MAX_CALL_S``
(skip a slow library where its execute time, extrapolated from the proxy problem, exceeds this;
default 60).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import nufft_peers as P

pytest.importorskip("pytest_benchmark")

THREADS = int(os.environ.get("RECON_BENCH_THREADS", os.cpu_count() or 1))  # also set up in conftest.py
ROUNDS = int(os.environ.get("RECON_BENCH_ROUNDS", "5"))
MAX_CALL_S = float(os.environ.get("RECON_BENCH_MAX_CALL_S", "60"))
SLOW = {"sigpy", "torchkbnufft"}
CASES = P.case_names()

_PROBLEMS: dict = {}


def _problem(name, geometry, ncoils, kind):
    if name not in _PROBLEMS:
        _PROBLEMS[name] = P.build_problem(geometry, ncoils, kind)
    return _PROBLEMS[name]


def test_exact_subset_references_are_exact():
    """The subset references used for every error figure equal a dense direct sum (tiny 2D/3D)."""
    rng = np.random.default_rng(0)
    for N in ((6, 5), (4, 3, 5)):
        coord = (rng.random((30, len(N))) - 0.5) * np.asarray(N)
        pos = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in N], indexing="ij"), -1).reshape(-1, len(N))
        E = np.exp(-2j * np.pi * (coord / np.asarray(N)) @ pos.T) / math.sqrt(np.prod(N))
        x = rng.standard_normal((2,) + N) + 1j * rng.standard_normal((2,) + N)
        y = rng.standard_normal((2, 30)) + 1j * rng.standard_normal((2, 30))
        idx = np.array([0, 7, 29])
        got2 = P.nudft_type2_subset(x, coord, idx)
        assert np.abs(got2 - (x.reshape(2, -1) @ E.T)[:, idx]).max() < 1e-12
        pix = np.array([0, 5, int(np.prod(N)) - 1])
        got1 = P.nudft_type1_subset(y, coord, N, pix, chunk=7)
        assert np.abs(got1 - (y @ E.conj())[:, pix]).max() < 1e-12


def test_trajectories_are_in_range():
    for g, (traj, N) in P.GEOMETRIES.items():
        c = traj()
        assert (np.abs(c) <= np.asarray(N) / 2).all(), g
    assert P.GEOMETRIES["2d"][0]().reshape(-1, 2).shape[0] == 402 * 512
    assert P.GEOMETRIES["3d"][0]().reshape(-1, 3).shape[0] == 4096 * 256


@pytest.mark.parametrize("target", P.TARGETS, ids=lambda t: f"{t:g}")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("lib", list(P.ADAPTERS))
def test_nufft(benchmark, lib, case, target):
    A = P.ADAPTERS[lib]
    if not A.available():
        pytest.skip(f"{lib} is not installed (pip install .[bench])")
    if lib == "torchkbnufft":
        import torch

        torch.set_num_threads(THREADS)
    name, geometry, ncoils, kind = case
    p = _problem(name, geometry, ncoils, kind)
    adapter = A(THREADS)
    param, _, _, proxy_s = P.calibrate(adapter, geometry, target)
    est = P.estimated_seconds(proxy_s, geometry, p)
    if lib in SLOW and est > MAX_CALL_S:
        pytest.skip(f"{lib}: estimated {est:.0f} s per call > RECON_BENCH_MAX_CALL_S={MAX_CALL_S:g}")
    res = P.settle(adapter, p, geometry, target)  # plan + one run (the warm-up), error measured on the case
    out = benchmark.pedantic(adapter.run, args=(res["h"], p.data), rounds=1 if lib in SLOW else ROUNDS,
                             iterations=1)
    err = P.rel_error(p.subset(out), p.ref)
    benchmark.extra_info.update(setting=adapter.describe(res["param"]), error=err, target=target,
                                plan_s=res["plan_s"], threads=THREADS, rejected=res["tried"])
    if lib == "recon":
        assert err <= target, f"recon tol={target:g}: measured error {err:.2e}"
