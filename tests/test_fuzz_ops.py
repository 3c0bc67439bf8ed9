"""Property-based fuzzing of the native operators' Python API (issue #10): Nufft (2D/3D, complex64 and
complex128, no frames, equal-size frames, ragged frames), its Toeplitz normal operator, the Pipe-Menon
DCF and the CT Projector (every geometry), fed adversarial arguments and arrays: shapes (zero-size
batches, wrong rank, wrong trailing axes), dtypes (int, bool, float16, object, the other precision),
layouts (Fortran order, strided, negative strides), NaN/Inf, magnitudes from 1e-45 to 3e38, huge
declared sizes and thread counts, numpy and torch.

Property asserted for every case:

* invalid input -> ``ValueError`` or ``TypeError`` with a message (pybind's "incompatible function
  arguments" does not count);
* valid input -> a finite result of the right shape and dtype that matches an independent float64
  reference (direct NUDFT sums of tests/harness.py; the projector against its float64 self), or a
  ``ValueError`` saying the result exceeds the dtype's range when the float64 reference does;
* never a crash, a hang or unbounded memory: every case runs in a worker subprocess with a per-case
  timeout and an address-space cap (RLIMIT_AS; not under AddressSanitizer, whose shadow memory needs
  terabytes of address space); a dead or hung worker fails the test with the case that killed it.

CI runs a bounded, derandomized number of examples (this file takes ~15 s). Longer developer run:
``RECON_FUZZ_EXAMPLES=2000 python -m pytest -q tests/test_fuzz_ops.py`` (random seeds; add
``RECON_FUZZ_TIMEOUT=120`` under sanitizers).
"""

from __future__ import annotations

import math
import os
import pickle
import select
import struct
import subprocess
import sys

import numpy as np
import pytest
from isolated import popen_python, python_env

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = "RECON_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("RECON_FUZZ_EXAMPLES", "0")) or None
TIMEOUT = float(os.environ.get("RECON_FUZZ_TIMEOUT", "60"))


def _timeout() -> float:
    return TIMEOUT


def fuzz_settings(ci_examples: int):
    return settings(max_examples=EXAMPLES or ci_examples, deadline=None, derandomize=not LONG, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# =========================================================================================================
# The worker: builds the arrays and operators a case describes, runs them, checks the result.
# =========================================================================================================

SCALES = [1.0, 1.0, 1.0, 1e-45, 1e-39, 1e-30, 1e-20, 1e20, 1e30, 1e36, 3e37, 1e38, 3e38]


def _make_array(spec: dict, shape: tuple, complex_base: bool):
    """An array as a case describes it: values N(0,1) (complex if the base is), scaled, with NaN/Inf
    planted, cast to the dtype, in the layout and library asked for."""
    rng = np.random.default_rng(spec["seed"])
    a = rng.standard_normal(shape)
    if complex_base:
        a = a + 1j * rng.standard_normal(shape)
    a = a * spec["scale"]
    if spec["fill"] == "zero":
        a = a * 0
    elif spec["fill"] in ("nan", "inf", "-inf") and a.size:
        a.flat[rng.integers(a.size)] = float(spec["fill"])
    dt = np.dtype(spec["dtype"])
    a = np.asarray(a)  # 0-d results of the arithmetic above are numpy scalars
    with np.errstate(all="ignore"):
        if dt.kind in "biu":
            a = np.nan_to_num(a.real, nan=0, posinf=0, neginf=0).clip(-100, 100).astype(dt)
        elif dt.kind == "f":
            a = a.real.astype(dt)
        else:
            a = a.astype(dt)
    a = np.asarray(a, dtype=dt)  # casts of 0-d arrays give numpy scalars
    layout = spec["layout"]
    if spec["lib"] == "torch" and dt.kind != "O":
        import torch

        t = torch.from_numpy(a.copy(order="C"))  # (np.ascontiguousarray makes 0-d arrays 1-d)
        if layout == "strided" and t.ndim:
            t = torch.repeat_interleave(t, 2, dim=-1)[..., ::2]
        elif layout == "f" and t.ndim >= 2:
            t = t.mT.contiguous().mT
        return t                            # torch has no negative strides: "negstride" stays contiguous
    return _relayout(a, layout)


def _relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout: Fortran order, every other element of a twice as
    long last axis, or negative strides along the first axis (0-d arrays stay as they are: numpy's
    layout functions make them 1-d)."""
    if a.ndim == 0:
        return a
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim:
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if layout == "negstride" and a.ndim:
        return np.flip(np.ascontiguousarray(np.flip(a, 0)), 0)
    return a


def _numpy(a):
    if hasattr(a, "detach"):
        a = a.detach()
        if a.is_conj():
            a = a.resolve_conj()
        return a.numpy()
    return np.asarray(a)


def _input_shape(mode: str, batch: tuple, core: tuple) -> tuple:
    """The shape of an input for a call whose trailing axes must be ``core``."""
    if mode == "valid":
        return batch + core
    if mode == "zero-batch":
        return (0,) + core
    if mode == "missing-axis":
        return core[1:]
    if mode == "extra-trailing":  # an axis after the core, sized so that the trailing axes cannot match
        return core + (core[-1] + 1,)
    if mode == "wrong-last":
        return core[:-1] + (core[-1] + 1,)
    if mode == "scalar":
        return ()
    raise AssertionError(mode)


def _resolve_dtype(spec: dict, dtype: str) -> dict:
    """An input spec whose dtype "same" means the operator's dtype."""
    return dict(spec, dtype=dtype) if spec["dtype"] == "same" else spec


def _valid_input(spec: dict, x, dtype: str) -> bool:
    """The input array is one the operator must accept: its dtype, a shape whose trailing axes are
    right (a zero-size batch included), finite values."""
    return (spec["dtype"] == dtype and spec["shape"] in ("valid", "zero-batch")
            and bool(np.isfinite(_numpy(x)).all()))


def _im_shape(spec):
    mode, base = spec["mode"], spec["base"]
    return {"valid": base, "huge": (base[0], 2**40) + base[2:], "huge62": (2**62,) * len(base),
            "zero": (0,) + base[1:], "negative": (-4,) + base[1:], "float": (float(base[0]) + 0.5,) + base[1:],
            "short": base[:1], "long": base + (2, 2)}[mode]


def _coord(spec, base_shape):
    """The coord argument of a Nufft case: one array (no frames, or equal-size frames stacked) or a
    list of per-frame arrays, in the case's dtype ("list": nested Python lists), layout and library."""
    d = len(base_shape)
    half = np.asarray(base_shape, dtype=np.float64) / 2

    def frame(m, seed):
        c = (np.random.default_rng(seed).random((m, d)) * 2 - 1) * half
        if spec["fill"] == "edge" and m:
            c[0], c[-1] = half, -half
        elif spec["fill"] == "out" and m:
            c[0, 0] = half[0] * 1.01 + 0.1
        elif spec["fill"] == "nan" and m:
            c[0, -1] = np.nan
        return c

    def convert(c):
        if spec["dtype"] == "list":
            return c.tolist()
        with np.errstate(all="ignore"):
            c = _relayout(c.astype(spec["dtype"]), spec["layout"])
        if spec["lib"] == "torch" and c.dtype.kind in "fc":
            import torch

            return torch.from_numpy(np.ascontiguousarray(c))
        return c

    frames = [frame(m, spec["seed"] + i) for i, m in enumerate(spec["sizes"])]
    if spec["frames"] == "ragged":
        return [convert(c) for c in frames]
    return convert(np.stack(frames) if spec["frames"] == "dense" else frames[0])


def _reference_frames(op):
    """Per frame: float64 trajectory (M_f, d)."""
    return [np.asarray(c, dtype=np.float64) for c in op._coord]


def nudft_forward(x, coord, im_shape):
    """tests/harness.py's direct sum, also for zero samples."""
    import harness

    if len(coord) == 0:
        return np.zeros(x.shape[: x.ndim - len(im_shape)] + (0,), dtype=np.complex128)
    return harness.nudft_forward(x, coord, im_shape)


def nudft_adjoint(y, coord, im_shape):
    import harness

    if len(coord) == 0:
        return np.zeros(y.shape[:-1] + tuple(im_shape), dtype=np.complex128)
    return harness.nudft_adjoint(y, coord, im_shape)


def _nufft_reference(op, x, method):
    """float64 direct sums (tests/harness.py) of forward / adjoint / normal, written from the
    documented layout: frames along the axis before the image (ragged and frame_ndim=1) or none."""
    frames = _reference_frames(op)
    d = len(op.im_shape)
    x = x.astype(np.complex128)
    if not op.frame_shape:
        c = frames[0]
        if method == "forward":
            return nudft_forward(x, c, op.im_shape).reshape(x.shape[: x.ndim - d] + op.sample_shape)
        if method == "adjoint":
            return nudft_adjoint(x, c, op.im_shape)  # samples (M,): the cases' trajectories are (M, d)
        return nudft_adjoint(nudft_forward(x, c, op.im_shape), c, op.im_shape)
    if op.ragged:
        o = op.frame_offsets
        if method == "forward":
            return np.concatenate([nudft_forward(x[..., f, :, :] if d == 2 else x[..., f, :, :, :], c, op.im_shape)
                                   for f, c in enumerate(frames)], axis=-1)
        if method == "adjoint":
            return np.stack([nudft_adjoint(x[..., o[f]:o[f + 1]], c, op.im_shape) for f, c in enumerate(frames)],
                            axis=-1 - d)
        return np.stack([nudft_adjoint(nudft_forward(x[..., f, :, :] if d == 2 else x[..., f, :, :, :], c,
                                                     op.im_shape), c, op.im_shape)
                         for f, c in enumerate(frames)], axis=-1 - d)
    # equal-size frames, frame_ndim = 1: frame f at axis -(d+1) of images, -2 of samples
    if method == "forward":
        return np.stack([nudft_forward(np.take(x, f, axis=-1 - d), c, op.im_shape) for f, c in enumerate(frames)],
                        axis=-2)
    if method == "adjoint":
        return np.stack([nudft_adjoint(np.take(x, f, axis=-2), c, op.im_shape) for f, c in enumerate(frames)],
                        axis=-1 - d)
    return np.stack([nudft_adjoint(nudft_forward(np.take(x, f, axis=-1 - d), c, op.im_shape), c, op.im_shape)
                     for f, c in enumerate(frames)], axis=-1 - d)


def _toeplitz_reference(op, x, w):
    """adjoint(w * forward(x)) by direct sums."""
    y = _nufft_reference(op, x, "forward")
    return _nufft_reference(op, y * w, "adjoint")


def _close(got, ref, dtype, tol) -> str | None:
    """None when ``got`` matches the float64 reference; otherwise what is wrong."""
    got = _numpy(got)
    if got.shape != ref.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    if got.dtype != np.dtype(dtype):
        return f"dtype {got.dtype}, expected {dtype}"
    if not np.isfinite(got).all():
        return "non-finite result"
    nref = np.linalg.norm(ref)
    err = np.linalg.norm(got.astype(np.complex128) - ref)
    single = np.dtype(dtype) in (np.complex64, np.float32)
    bound = 5 * tol + (5e-6 if single else 1e-11)
    if nref == 0:
        return None if err == 0 or err < 1e-300 else f"expected zeros, got norm {err:.3g}"
    tiny = np.finfo(np.float32 if single else np.float64).tiny
    if np.abs(ref).max() < tiny * 1e6:  # results near the subnormal range: absolute, not relative, accuracy
        return None if err <= tiny * 1e3 * math.sqrt(ref.size) else f"error {err:.3g} near the subnormal range"
    return None if err <= bound * nref else f"relative error {err / nref:.3g} > {bound:.3g}"


def _too_big(ref, dtype) -> bool:
    """The float64 reference does not fit in ``dtype`` (so a "result exceeds the range" error is right)."""
    single = np.dtype(dtype) in (np.complex64, np.float32)
    r = np.abs(ref.view(np.float64) if np.iscomplexobj(ref) else ref)
    return bool(r.size) and r.max() > np.finfo(np.float32 if single else np.float64).max / 2


def _outcome(ok: str, valid: bool, error: Exception | None, result_check):
    """Judge a call whose operator was built: ``valid`` inputs must give a correct result (``result_check()``
    -> None or a problem), other inputs a ValueError/TypeError."""
    if error is None:
        if not valid:
            return "bad", f"invalid input accepted ({ok})"
        problem = result_check()
        return ("bad", problem) if problem else ("ok",)
    if valid:
        return "bad", f"valid input refused: {type(error).__name__}: {error}"
    return "error", type(error).__name__, str(error)


_OPS: dict = {}


def _built(key, build):
    """Operators cached per worker (cases share them); ("op", op) or ("error", exception)."""
    if key not in _OPS:
        try:
            _OPS[key] = ("op", build())
        except (ValueError, TypeError) as e:
            _OPS[key] = ("error", e)
    return _OPS[key]


def _judge_construction(kind, value, validity):
    """None when the construction outcome fits the arguments' validity, else the case's result."""
    if kind == "error":
        if validity == "valid":
            return "bad", f"valid operator refused: {type(value).__name__}: {value}"
        return "error", type(value).__name__, str(value)
    if validity == "invalid":
        return "bad", "invalid operator arguments accepted"
    return None


def _run_nufft_case(case):
    from recon.ops import Nufft

    s = case["op"]
    kind, op = _built(repr(s), lambda: Nufft(_coord(s["coord"], s["im"]["base"]), _im_shape(s["im"]), s["tol"],
                                                dtype=s["dtype"], upsampfac=s["upsampfac"], nthreads=s["nthreads"],
                                                frame_ndim=1 if s["coord"]["frames"] == "dense" else 0))
    judged = _judge_construction(kind, op, case["validity"])
    if judged:
        return judged
    spec, method = _resolve_dtype(case["input"], op.dtype.name), case["method"]
    core = op.oshape if method == "adjoint" else op.ishape
    x = _make_array(spec, _input_shape(spec["shape"], tuple(spec["batch"]), tuple(core)), True)
    w = None
    if method == "toeplitz":
        w = np.random.default_rng(spec["seed"]).random(op.oshape) + 0.1
        if case["weights"] == "nan" and w.size:
            w.flat[0] = np.nan
        elif case["weights"] == "shape":
            w = np.ones(op.oshape[:-1] + (op.oshape[-1] + 2,))  # never broadcastable (size 1 would be)
    valid = _valid_input(spec, x, op.dtype.name) and (method != "toeplitz" or case["weights"] == "ok"
                                                      or (case["weights"] == "nan" and not w.size))
    try:
        out = op.toeplitz(w).forward(x) if method == "toeplitz" else getattr(op, method)(x)
        error = None
    except (ValueError, TypeError) as e:
        out, error = None, e
    if valid and error is not None and "exceeds the range" in str(error) and _too_big(_ref(op, x, method, w), op.dtype):
        return "error", type(error).__name__, str(error)
    return _outcome(method, valid, error, lambda: _close(out, _ref(op, x, method, w), op.dtype, op.tol))


def _ref(op, x, method, w):
    xn = _numpy(x).astype(np.complex128)
    if method == "toeplitz":
        return _toeplitz_reference(op, xn, w)
    return _nufft_reference(op, xn, method)


def _run_dcf_case(case):
    from recon.mri.dcf import pipe_menon_dcf

    s = case["op"]
    coord = _coord(s["coord"], s["im"]["base"])
    try:
        w = pipe_menon_dcf(coord, _im_shape(s["im"]), case["iterations"], tol=s["tol"], nthreads=s["nthreads"],
                           frame_ndim=1 if s["coord"]["frames"] == "dense" else 0)
        error = None
    except (ValueError, TypeError) as e:
        w, error = None, e
    validity = case["validity"] if case["iterations"] >= 1 else "invalid"
    if error is not None and validity != "valid":
        return "error", type(error).__name__, str(error)
    if error is None and validity == "invalid":
        return "bad", "invalid DCF arguments accepted"

    def check_weights():
        expected = tuple(np.shape(_numpy(coord)))[:-1]
        if w.shape != expected or not np.isfinite(w).all() or (w < 0).any():
            return f"DCF weights of shape {w.shape} (expected {expected}), finite {np.isfinite(w).all()}"
        return None

    return _outcome("dcf", True, error, check_weights)


def _geometry(name):
    from recon.ct import ConeBeam3D, FanBeam2D, ParallelBeam2D

    a2 = np.linspace(0, 2 * np.pi, 5, endpoint=False) + 0.1
    return {"parallel": lambda: ParallelBeam2D(a2, 11, 0.9, (6, 7), (1.1, 0.8)),
            "fanflat": lambda: FanBeam2D(a2, 14, 1.0, 20.0, 10.0, "flat", (6, 7), 0.8),
            "fanarc": lambda: FanBeam2D(a2, 14, 1.0, 20.0, 10.0, "arc", (6, 7), 0.8),
            "cone": lambda: ConeBeam3D(a2[:3], (8, 9), (1.0, 1.1), 20.0, 10.0, (4, 5, 6), (0.9, 0.8, 0.7))}[name]()


def _run_projector_case(case):
    from recon.ops import Projector

    s = case["op"]
    kind, P = _built(repr(s), lambda: Projector(_geometry(s["geometry"]), dtype=s["dtype"], nthreads=s["nthreads"]))
    judged = _judge_construction(kind, P, case["validity"])
    if judged:
        return judged
    _, P64 = _built(repr((s["geometry"], "float64")), lambda: Projector(_geometry(s["geometry"]), dtype="float64",
                                                                        nthreads=1))
    spec, method = _resolve_dtype(case["input"], s["dtype"]), case["method"]
    core = P.oshape if method == "adjoint" else P.ishape
    x = _make_array(spec, _input_shape(spec["shape"], tuple(spec["batch"]), tuple(core)), False)
    valid = _valid_input(spec, x, s["dtype"])
    try:
        out, error = getattr(P, method)(x), None
    except (ValueError, TypeError) as e:
        out, error = None, e
    if valid and error is not None and "exceeds the range" in str(error):
        # float32 partial sums stay below the sum of |terms|: overflow is right when that sum does not fit
        if _too_big(getattr(P64, method)(np.abs(_numpy(x)).astype(np.float64)), s["dtype"]):
            return "error", type(error).__name__, str(error)
    return _outcome(method, valid, error, lambda: _close(out, getattr(P64, method)(_numpy(x).astype(np.float64)),
                                                         s["dtype"], 0.0 if s["dtype"] == "float64" else 2e-6))


def run_case(case):
    """Runs one case (in the worker); returns ("ok",), ("error", type, message) or ("bad", why)."""
    runner = {"nufft": _run_nufft_case, "dcf": _run_dcf_case, "projector": _run_projector_case}[case["kind"]]
    try:
        return runner(case)
    except Exception as e:  # noqa: BLE001 - an exception escaping the checks above is a finding (or a test bug)
        import traceback

        return "bad", f"unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}"


def _serve():
    """Worker main loop: length-prefixed pickled cases on stdin, results on the original stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, not into the protocol
    preload = os.environ.get("LD_PRELOAD", "")
    if "asan" not in preload and not os.environ.get("RECON_FUZZ_NO_RLIMIT"):
        import resource

        with open("/proc/self/status") as f:
            vm = int(f.read().split("VmSize:")[1].split()[0]) * 1024
        cap = vm + (3 << 30)  # what is mapped now (libraries, torch) plus 3 GiB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    inp = sys.stdin.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        case = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
        data = pickle.dumps(run_case(case))
        out.write(struct.pack("<Q", len(data)) + data)
        out.flush()


# =========================================================================================================
# The parent: one worker per module, restarted after a crash or a hang.
# =========================================================================================================

_WORKER_CODE = "import torch, test_fuzz_ops as t; t._serve()"


class Worker:
    """A worker subprocess running cases one at a time (see :func:`_serve`)."""

    def __init__(self):
        self.proc = None

    def start(self):
        self.proc = popen_python(_WORKER_CODE, python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, case):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        data = pickle.dumps(case)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], _timeout())
        if not ready:
            self.stop()
            return "bad", f"hang: no answer within {_timeout():.0f} s"
        head = self.proc.stdout.read(8)
        if len(head) < 8:
            rc = self.proc.wait()
            err = self.proc.stderr.read().decode(errors="replace")[-3000:]
            self.proc = None
            return "bad", f"worker died (exit code {rc}): {err}"
        return pickle.loads(self.proc.stdout.read(struct.unpack("<Q", head)[0]))


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def check(worker, case):
    result = worker.run(case)
    assert result[0] != "bad", f"{result[1]}\ncase: {case!r}"
    if result[0] == "error":
        _, kind, message = result
        assert kind in ("ValueError", "TypeError") and message.strip(), result
        assert "incompatible function arguments" not in message, f"pybind's message leaked: {message}"


# =========================================================================================================
# Strategies. Each operator spec comes with its validity: "valid" (must build), "invalid" (must raise
# ValueError/TypeError), "unknown" (either; e.g. a tolerance an oversampling factor may not reach).
# =========================================================================================================

seeds = st.integers(0, 2**31 - 1)
input_dtypes = st.sampled_from(["complex64", "complex128", "complex64", "complex128", "float32", "float64",
                                "float16", "int32", "int64", "bool", "object"])


@st.composite
def array_specs(draw, dtypes=input_dtypes, plain_odds=1):
    """An input array: with odds ``plain_odds`` : 1 a valid shape with finite values; else anything."""
    plain = draw(st.sampled_from([True] * plain_odds + [False]))
    return {
        "seed": draw(seeds),
        "dtype": "same" if plain else draw(st.sampled_from(["same", "same"]) | dtypes),  # "same": the op's
        "shape": "valid" if plain else draw(st.sampled_from(["valid", "valid", "zero-batch", "missing-axis",
                                                              "extra-trailing", "wrong-last", "scalar"])),
        "batch": draw(st.sampled_from([(), (), (2,), (1, 2)])),
        "fill": "normal" if plain else draw(st.sampled_from(["normal", "normal", "nan", "inf", "-inf", "zero"])),
        "scale": draw(st.sampled_from(SCALES)),
        "layout": draw(st.sampled_from(["c", "c", "f", "strided", "negstride"])),
        "lib": draw(st.sampled_from(["numpy", "numpy", "torch"])),
    }


THREADS = [None, 1, 2, np.int64(2), None, 1, 2, 0, -1, 10**6, 2**31, 2.5]


def _threads_validity(n) -> str:
    if n is None or (isinstance(n, (int, np.integer)) and 1 <= n <= 8):
        return "valid"   # the cap is 4 per core: at least 8 on any machine
    if isinstance(n, (int, np.integer)) and (n < 1 or n > 4 * 4096):
        return "invalid"
    return "invalid" if not isinstance(n, (int, np.integer)) else "unknown"


def _combine(*validities) -> str:
    return "invalid" if "invalid" in validities else ("unknown" if "unknown" in validities else "valid")


def _tol_validity(tol, dtype: str, upsampfac) -> str:
    t = float(tol)
    if not 0 < t < 1:
        return "invalid"
    if upsampfac is not None and not 1.2 <= float(upsampfac) <= 3:   # NaN too
        return "invalid"
    if upsampfac not in (None, 2.0):
        return "unknown"             # whether a tolerance is reachable at 1.25 or 1.5 depends on the kernel
    if dtype == "complex64":
        return "valid" if t >= 1e-6 else ("invalid" if t < 1e-7 else "unknown")
    return "valid" if t >= 1e-9 else "unknown"


@st.composite
def nufft_specs(draw, frame_kinds=("none", "none", "dense", "ragged")):
    """(operator spec, validity). Half the specs take every argument from the valid choices."""
    plain = draw(st.booleans())

    def pick(valid_choices, other_choices):
        return draw(st.sampled_from(valid_choices if plain else valid_choices + other_choices))

    d = draw(st.sampled_from([2, 3]))
    base = tuple(draw(st.integers(1, 12 if d == 2 else 6)) for _ in range(d))
    im_mode = pick(["valid"] * 4, ["huge", "huge62", "zero", "negative", "float", "short", "long"])
    dtype = pick(["complex64", "complex128"], ["float32", "bogus"])
    tol = pick([1e-2, 1e-4, 1e-6, np.float32(1e-3), np.float64(1e-5)] if dtype != "complex128" else
               [1e-2, 1e-4, 1e-6, 1e-9, np.float32(1e-3)], [0.0, 1.0, -1e-3, float("nan"), 1e-13, 1e-9])
    upsampfac = pick([None, None, 2.0, np.float64(2.0)], [1.25, np.float64(1.5), 0.5, 5.0, float("nan")])
    nthreads = pick(THREADS[:7], THREADS[7:])
    frames = draw(st.sampled_from(frame_kinds))
    nf = 1 if frames == "none" else draw(st.integers(1, 3))
    sizes = [draw(st.integers(0, 40)) for _ in range(nf)]
    if frames == "dense":
        sizes = [sizes[0]] * nf
    cdtype = pick(["float64", "float32", "list"], ["int64", "float16", "complex128"])
    if cdtype == "list" and frames == "ragged":
        cdtype = "float64"  # a list of nested lists is one array, not frames
    coord = {"seed": draw(seeds), "sizes": sizes, "frames": frames, "dtype": cdtype,
             "fill": pick(["uniform", "uniform", "edge"], ["out", "nan"]),
             "layout": draw(st.sampled_from(["c", "c", "f", "strided", "negstride"])),
             "lib": draw(st.sampled_from(["numpy", "numpy", "torch"]))}
    spec = {"im": {"base": base, "mode": im_mode}, "dtype": dtype, "tol": tol, "upsampfac": upsampfac,
            "nthreads": nthreads, "coord": coord}
    return spec, _combine(
        "valid" if im_mode == "valid" else "invalid",
        "valid" if dtype in ("complex64", "complex128") else "invalid",
        _tol_validity(tol, dtype if dtype in ("complex64", "complex128") else "complex128", upsampfac),
        _threads_validity(nthreads),
        "invalid" if coord["fill"] in ("out", "nan") and any(sizes) else "valid",
        "valid" if cdtype in ("float64", "float32", "list") else "invalid",
        "unknown" if cdtype == "list" and not any(sizes) else "valid")  # [] has lost the (0, d) shape


# =========================================================================================================
# Tests
# =========================================================================================================

@fuzz_settings(200)
@given(op=nufft_specs(), method=st.sampled_from(["forward", "adjoint", "normal"]), x=array_specs())
def test_fuzz_nufft(worker, op, method, x):
    spec, validity = op
    check(worker, {"kind": "nufft", "op": spec, "validity": validity, "method": method, "input": x})


@fuzz_settings(150)
@given(op=nufft_specs(), x=array_specs(plain_odds=8), weights=st.sampled_from(["ok", "ok", "nan", "shape"]))
def test_fuzz_toeplitz(worker, op, x, weights):
    spec, validity = op
    check(worker, {"kind": "nufft", "op": spec, "validity": validity, "method": "toeplitz", "input": x,
                   "weights": weights})


@fuzz_settings(30)
@given(op=nufft_specs(frame_kinds=("none", "none", "dense")), iterations=st.sampled_from([1, 3, np.int64(2), 0, -2]))
def test_fuzz_dcf(worker, op, iterations):
    """pipe_menon_dcf plans in complex128 at upsampfac 2 whatever the spec says."""
    spec, _ = op
    c = spec["coord"]
    validity = _combine("valid" if spec["im"]["mode"] == "valid" else "invalid",
                        _tol_validity(spec["tol"], "complex128", None), _threads_validity(spec["nthreads"]),
                        "invalid" if c["fill"] in ("out", "nan") and any(c["sizes"]) else "valid",
                        "valid" if c["dtype"] in ("float64", "float32", "list") else "invalid",
                        "unknown" if c["dtype"] == "list" and not any(c["sizes"]) else "valid")
    check(worker, {"kind": "dcf", "op": spec, "validity": validity, "iterations": iterations})


@fuzz_settings(100)
@given(geometry=st.sampled_from(["parallel", "fanflat", "fanarc", "cone"]),
       dtype=st.sampled_from(["float32", "float64"]), method=st.sampled_from(["forward", "adjoint"]),
       nthreads=st.sampled_from(THREADS),
       x=array_specs(dtypes=st.sampled_from(["float32", "float64", "float32", "float64", "float16", "int32", "bool",
                                             "complex64", "object"]), plain_odds=2))
def test_fuzz_projector(worker, geometry, dtype, method, nthreads, x):
    check(worker, {"kind": "projector", "op": {"geometry": geometry, "dtype": dtype, "nthreads": nthreads},
                   "validity": _threads_validity(nthreads), "method": method, "input": x})


def test_worker_reports_crashes_and_hangs(monkeypatch):
    """The harness itself: a case during which the worker dies or never answers fails the test."""
    import test_fuzz_ops as mod

    for body, expect in (("sys.stdin.buffer.read(8); os.abort()", "worker died (exit code -6)"),
                         ("sys.stdin.buffer.read(8); time.sleep(30)", "hang")):
        monkeypatch.setattr(mod, "_WORKER_CODE", f"import os, sys, time; {body}")
        monkeypatch.setattr(mod, "TIMEOUT", 1.0)
        w = Worker()
        res = w.run({"kind": "dcf"})
        w.stop()
        assert res[0] == "bad" and expect in res[1], res
