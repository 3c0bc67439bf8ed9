"""pytest-benchmark suite for the CT projectors: the cases of benchmarks/run_ct.py, one benchmark per
(case, direction, library).

    pytest benchmarks/test_bench_ct.py                          # recon, ASTRA (CPU) and scikit-image
    pytest benchmarks/test_bench_ct.py -k "recon and parallel"  # a subset
    RECON_BENCH_CT_QUICK=1 pytest benchmarks/test_bench_ct.py   # half-size cases

``extra_info`` holds the forward projector's relative error against the exact line integrals of the
Shepp-Logan phantom (asserted for recon: <= 3% in 2D, <= 10% for the cone beam at these grids; peers'
errors are recorded). The cone case runs one round (one call takes seconds).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import run_ct as R

pytest.importorskip("pytest_benchmark")

QUICK = bool(os.environ.get("RECON_BENCH_CT_QUICK"))
ROUNDS = int(os.environ.get("RECON_BENCH_ROUNDS", "3"))
_CACHE: dict = {}


def _problem(case):
    if case not in _CACHE:
        geom = R.make_geometry(case, QUICK)
        ell, img = R.make_phantom(geom)
        every = 10 if geom.ndim == 3 else 1
        _CACHE[case] = (geom, ell, img, every, R.reference(ell, geom, every))
    return _CACHE[case]


def _forward_back(lib, geom, img):
    """(forward(), back(sino)) callables for one library, or a skip reason."""
    if lib == "recon":
        from recon.ops import Projector

        P = Projector(geom, dtype="float32")
        return P.forward, P.adjoint
    if lib == "astra":
        astra = pytest.importorskip("astra", reason="astra-toolbox not installed (pip install recon[astra])")
        if geom.ndim == 3:
            pytest.skip("ASTRA's 3D projectors need CUDA")
        vol, proj = geom.to_astra()
        pid = astra.create_projector("linear" if geom.kind == 0 else "line_fanflat", proj, vol)

        def fwd(x):
            sid, s = astra.create_sino(x, pid)
            astra.data2d.delete(sid)
            return s

        def back(y):
            bid, b = astra.create_backprojection(y, pid)
            astra.data2d.delete(bid)
            return b

        return fwd, back
    if lib == "skimage":
        tr = pytest.importorskip("skimage.transform", reason="scikit-image not installed")
        if geom.kind != 0:
            pytest.skip("scikit-image has parallel beam only")
        theta = np.rad2deg(geom.angles)
        v = geom.voxel_size[-1]
        return (lambda x: tr.radon(x.astype(np.float64), theta=theta, circle=False).T * v,
                lambda y: tr.iradon((y / v).T, theta=theta, filter_name=None, circle=False,
                                    output_size=geom.image_shape[0]))
    raise ValueError(lib)


@pytest.mark.parametrize("lib", ["recon", "astra", "skimage"])
@pytest.mark.parametrize("direction", ["forward", "back"])
@pytest.mark.parametrize("case", ["parallel", "fan", "cone"])
def test_ct_projector(benchmark, case, direction, lib):
    geom, ell, img, every, ref = _problem(case)
    fwd, back = _forward_back(lib, geom, img)
    sino = fwd(img)
    if lib == "skimage":
        err = R.rel(sino, R.skimage_reference(ell, geom, sino.shape[1]))
    else:
        err = R.rel(sino[::every], ref)
    benchmark.extra_info.update({"case": case, "library": lib, "forward_rel_error": err, "quick": QUICK})
    rounds = 1 if case == "cone" else ROUNDS
    if direction == "forward":
        benchmark.pedantic(fwd, args=(img,), rounds=rounds, iterations=1, warmup_rounds=0)
    else:
        benchmark.pedantic(back, args=(np.ascontiguousarray(sino, dtype=np.float32 if lib != "skimage" else np.float64),),
                           rounds=rounds, iterations=1, warmup_rounds=0)
    if lib == "recon":
        assert err <= (0.10 if geom.ndim == 3 else 0.03)
