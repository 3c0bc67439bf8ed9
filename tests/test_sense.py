"""SENSE operators against independent references (FFT identity, dense DFT matrices, direct NUDFT).

The generic checks (dot test, linearity, normal == H(forward), numpy == torch, batching, gradcheck in
complex128) run through the harness for the registrations in tests/ops_mri.py.
"""

import numpy as np
import pytest
from harness import nudft_forward, random_array, rel_err

from recon.mri.trajectory import radial_2d, stack_of_stars
from recon.ops import FFT, CartesianSense, NonCartesianSense


def _dft(n):
    """Centred orthonormal DFT matrix (the recon/fastMRI convention) along one axis."""
    x = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(x, x) / n) / np.sqrt(n)


@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (4, 6, 5)])
def test_unit_maps_equal_fft(rng, shape):
    x = random_array(rng, shape, "complex64")
    op = CartesianSense(np.ones((1,) + shape, np.complex64), ndim=len(shape))
    assert rel_err(op(x)[0], FFT(shape)(x)) < 1e-6
    assert rel_err(op.H(op(x)), x) < 1e-6


def test_cartesian_sense_equals_dense_matrix(rng):
    shape, c = (6, 5), 3
    maps = random_array(rng, (c,) + shape, "complex128")
    mask = rng.random(shape) < 0.6
    op = CartesianSense(maps, mask)
    F = np.kron(_dft(shape[0]), _dft(shape[1]))  # acts on row-major flattened (y, x)
    rows = [np.diag(mask.ravel().astype(float)) @ F @ np.diag(maps[i].ravel()) for i in range(c)]
    A = np.concatenate(rows, axis=0)
    x = random_array(rng, shape, "complex128")
    assert rel_err(op(x).ravel(), A @ x.ravel()) < 1e-12
    y = random_array(rng, (c,) + shape, "complex128")
    assert rel_err(op.H(y).ravel(), A.conj().T @ y.ravel()) < 1e-12


def test_cartesian_mask_broadcasts_like_fastmri_columns(rng):
    shape = (8, 10)
    maps = random_array(rng, (2,) + shape, "complex64")
    cols = (rng.random(shape[1]) < 0.5).astype(np.float32)
    a = CartesianSense(maps, cols[None, :])
    b = CartesianSense(maps, np.broadcast_to(cols, shape))
    x = random_array(rng, shape, "complex64")
    assert rel_err(a(x), b(x)) < 1e-7
    assert np.all(a(x)[..., cols == 0] == 0)


def test_noncartesian_sense_equals_direct_nudft(rng):
    shape, c = (10, 9), 3
    maps = random_array(rng, (c,) + shape, "complex128")
    coord = radial_2d(6, 14, shape)
    w = rng.random(coord.shape[:-1]) + 0.5
    op = NonCartesianSense(maps, coord, tol=1e-10, weights=w)
    x = random_array(rng, shape, "complex128")
    ref = np.sqrt(w) * nudft_forward(maps * x, coord, shape)
    assert rel_err(op(x), ref) < 1e-9
    # normal through Toeplitz = S^H N^H W N S (weights once)
    y = nudft_forward(maps * x, coord, shape) * w
    from harness import nudft_adjoint

    ref_n = np.sum(np.conj(maps) * nudft_adjoint(y, coord, shape), axis=0)
    assert rel_err(op.normal(x), ref_n) < 1e-8


def test_noncartesian_sense_3d_stack_of_stars(rng):
    shape = (4, 8, 8)
    maps = random_array(rng, (2,) + shape, "complex128")
    coord = stack_of_stars(3, 10, 4, shape)
    op = NonCartesianSense(maps, coord, tol=1e-10)
    x = random_array(rng, shape, "complex128")
    assert op.oshape == (2, 4, 3, 10)
    assert rel_err(op(x), nudft_forward(maps * x, coord, shape)) < 1e-9
    y = random_array(rng, op.oshape, "complex128")
    lhs, rhs = np.vdot(op(x), y), np.vdot(x, op.H(y))
    assert abs(lhs - rhs) / (np.linalg.norm(op(x)) * np.linalg.norm(y)) < 1e-12


def test_multiple_map_sets_sum_into_one_kspace(rng):
    shape = (6, 6)
    maps = random_array(rng, (2, 3) + shape, "complex64")  # 2 sets of 3 coils
    op = CartesianSense(maps, sets=True)
    assert op.ishape == (2,) + shape and op.oshape == (3,) + shape
    x = random_array(rng, (2,) + shape, "complex64")
    ref = CartesianSense(maps[0])(x[0]) + CartesianSense(maps[1])(x[1])
    assert rel_err(op(x), ref) < 1e-6
    y = random_array(rng, op.oshape, "complex64")
    assert abs(np.vdot(op(x), y) - np.vdot(x, op.H(y))) / (np.linalg.norm(op(x)) * np.linalg.norm(y)) < 1e-6


def test_torch_autograd_through_sense(rng):
    torch = pytest.importorskip("torch")
    shape = (6, 5)
    maps = random_array(rng, (2,) + shape, "complex64")
    op = CartesianSense(maps, rng.random(shape) < 0.5)
    x = torch.from_numpy(random_array(rng, shape, "complex64")).requires_grad_(True)
    loss = op(x).abs().pow(2).sum()
    loss.backward()
    # d/dx* ||A x||^2 = A^H A x (torch's conjugate Wirtinger gradient is 2 A^H A x)
    ref = 2 * op.normal(x.detach().numpy())
    assert rel_err(x.grad.numpy(), ref) < 1e-5


@pytest.mark.parametrize("bad", ["maps_nan", "maps_2d", "mask_shape", "mask_negative", "weights_negative",
                                 "coord_range", "maps_vs_coord"])
def test_bad_input_raises(bad):
    shape = (6, 6)
    maps = np.ones((2,) + shape, np.complex64)
    coord = radial_2d(3, 8, shape)
    with pytest.raises((ValueError, TypeError)):
        if bad == "maps_nan":
            m = maps.copy()
            m[0, 0, 0] = np.nan
            CartesianSense(m)
        elif bad == "maps_2d":
            CartesianSense(np.ones(shape, np.complex64))
        elif bad == "mask_shape":
            CartesianSense(maps, np.ones((5, 6)))
        elif bad == "mask_negative":
            CartesianSense(maps, -np.ones(shape))
        elif bad == "weights_negative":
            NonCartesianSense(maps, coord, weights=-np.ones(coord.shape[:-1]))
        elif bad == "coord_range":
            NonCartesianSense(maps, coord * 2)
        elif bad == "maps_vs_coord":
            NonCartesianSense(np.ones((2, 6), np.complex64), coord)


def test_wrong_image_shape_raises():
    op = CartesianSense(np.ones((2, 6, 6), np.complex64))
    with pytest.raises(ValueError):
        op(np.ones((5, 6), np.complex64))
    with pytest.raises(TypeError):
        op(np.ones((6, 6), np.float64))


@pytest.mark.parametrize("maps_shape,kw,mask_shape", [((3, 7, 5), {}, (1, 5)), ((2, 3, 6, 5), {"sets": True}, (6, 5)),
                                                     ((2, 3, 5, 4), {"ndim": 3}, (3, 5, 4)),
                                                     ((4, 3, 5, 6), {}, (4, 5, 6)), ((4, 3, 5, 6), {}, (4, 1, 5, 6))])
def test_cartesian_normal_fast_path_equals_adjoint_of_forward(rng, maps_shape, kw, mask_shape):
    """The numpy normal folds the centring shifts into the maps and mask (odd sizes, sets, 3D, batches)."""
    maps = random_array(rng, maps_shape, "complex128")
    op = CartesianSense(maps, rng.random(mask_shape) < 0.6, **kw)
    x = random_array(rng, (2,) + op.ishape, "complex128")  # with a batch axis
    assert rel_err(op.normal(x), op.H(op(x))) < 1e-12


# ---- batches of slices with their own maps, masks and trajectories -----------------------------------

@pytest.mark.parametrize("mask_kind", ["per_item", "per_item_coil_axis", "shared", "none"])
def test_batched_cartesian_sense_equals_per_slice(rng, mask_kind):
    B, C, shape = 4, 3, (7, 6)
    maps = random_array(rng, (B, C) + shape, "complex128")
    masks = rng.random((B,) + shape) < 0.5
    mask = {"per_item": masks, "per_item_coil_axis": masks[:, None], "shared": masks[0], "none": None}[mask_kind]
    op = CartesianSense(maps, mask)
    assert op.ishape == (B,) + shape and op.oshape == (B, C) + shape
    x = random_array(rng, (B,) + shape, "complex128")
    y = random_array(rng, (B, C) + shape, "complex128")
    for b in range(B):
        m = None if mask is None else (masks[0] if mask_kind == "shared" else masks[b])
        single = CartesianSense(maps[b], m)
        assert rel_err(op(x)[b], single(x[b])) < 1e-13
        assert rel_err(op.H(y)[b], single.H(y[b])) < 1e-13
        assert rel_err(op.normal(x)[b], single.normal(x[b])) < 1e-13
    # extra leading axes pass through
    xx = random_array(rng, (2, B) + shape, "complex128")
    assert rel_err(op(xx)[1], op(xx[1])) < 1e-13


def test_batched_sense_numpy_equals_torch(rng):
    torch = pytest.importorskip("torch")
    B, C, shape = 3, 2, (6, 5)
    maps = random_array(rng, (B, C) + shape, "complex64")
    mask = rng.random((B,) + shape) < 0.5
    x = random_array(rng, (B,) + shape, "complex64")
    ref = CartesianSense(maps, mask)
    op_t = CartesianSense(torch.from_numpy(maps), torch.from_numpy(mask))   # torch parameters
    for op in (ref, op_t):
        for method, a in (("forward", x), ("adjoint", ref(x)), ("normal", x)):
            got = getattr(op, method)(torch.from_numpy(a))
            assert isinstance(got, torch.Tensor)
            assert rel_err(got, getattr(ref, method)(a)) < 1e-6
    # torch parameters with numpy input: numpy out
    assert rel_err(op_t(x), ref(x)) < 1e-6


# gradients to maps, masks and weights as tensors: the harness (tests/ops_mri.py, ``params``)


def test_batched_noncartesian_sense_per_item_trajectories(rng):
    B, C, shape = 3, 2, (8, 7)
    maps = random_array(rng, (B, C) + shape, "complex128")
    coords = np.stack([radial_2d(4, 10, shape, offset=4 * b) for b in range(B)])  # later golden-angle spokes
    w = rng.random((B,) + coords.shape[1:-1]) + 0.5
    op = NonCartesianSense(maps, coords, tol=1e-10, weights=w, coord_batched=True)
    assert op.ishape == (B,) + shape and op.oshape == (B, C, 4, 10)
    x = random_array(rng, (B,) + shape, "complex128")
    y = random_array(rng, op.oshape, "complex128")
    for b in range(B):
        single = NonCartesianSense(maps[b], coords[b], tol=1e-10, weights=w[b])
        assert rel_err(op(x)[b], single(x[b])) < 1e-12
        assert rel_err(op.H(y)[b], single.H(y[b])) < 1e-12
        assert rel_err(op.normal(x)[b], single.normal(x[b])) < 1e-8
    with pytest.raises(ValueError, match="coord_batched"):
        NonCartesianSense(maps, coords[:2], coord_batched=True)


@pytest.mark.parametrize("per_frame_maps", [False, True])
def test_noncartesian_sense_frames_with_different_sample_counts(rng, per_frame_maps):
    """Respiratory bins / real-time frames: a list of per-frame trajectories of different lengths;
    k-space (C, M_total) with frame f in Nufft.frame_offsets[f]:[f+1]; equals per-frame SENSE."""
    from recon.mri.dcf import pipe_menon_dcf

    C, shape = 3, (8, 7)
    coords = [radial_2d(3, 10, shape, offset=0), radial_2d(5, 10, shape, offset=3), radial_2d(2, 10, shape, offset=8)]
    maps = random_array(rng, ((3,) if per_frame_maps else ()) + (C,) + shape, "complex128")
    w = pipe_menon_dcf(coords, shape)
    assert w.shape == (100,)
    op = NonCartesianSense(maps, coords, tol=1e-10, weights=w)
    assert op.ishape == (3,) + shape and op.oshape == (C, 100)
    x = random_array(rng, (3,) + shape, "complex128")
    y = random_array(rng, op.oshape, "complex128")
    parts = op.nufft.split(op(x))
    for f, c in enumerate(coords):
        wf = pipe_menon_dcf(c, shape)
        assert rel_err(w[op.nufft.frame_offsets[f]:op.nufft.frame_offsets[f + 1]], wf.ravel()) < 1e-6
        single = NonCartesianSense(maps[f] if per_frame_maps else maps, c, tol=1e-10, weights=wf)
        assert rel_err(parts[f], single(x[f]).reshape(C, -1)) < 1e-12
        yf = op.nufft.split(y)[f].reshape((C,) + c.shape[:-1])
        # the adjoint of a frame's block is that frame's adjoint
        yy = np.zeros_like(y)
        yy[:, op.nufft.frame_offsets[f]:op.nufft.frame_offsets[f + 1]] = yf.reshape(C, -1)
        assert rel_err(op.H(yy)[f], single.H(yf)) < 1e-12
    assert rel_err(op.normal(x), op.H(op(x))) < 1e-8


def test_cached_noncartesian_sense_reuses_plans_and_toeplitz_kernels(rng):
    """Inside a network the operator is rebuilt every call with the same trajectory and weights:
    cached=True takes the Nufft (and its weighted Toeplitz kernels) from the plan cache."""
    from recon.ops.backend import plan_cache

    shape = (8, 7)
    maps = random_array(rng, (2, 2) + shape, "complex64")
    coords = np.stack([radial_2d(3, 10, shape, offset=3 * b) for b in range(2)])
    w = rng.random((2, 3, 10)).astype(np.float32) + 0.5
    plan_cache.clear()
    ops = [NonCartesianSense(maps, coords, weights=w, coord_batched=True, cached=True) for _ in range(3)]
    assert ops[0].nufft is ops[1].nufft is ops[2].nufft and plan_cache.misses == 1 and plan_cache.hits == 2
    assert ops[0].toeplitz_normal() is ops[2].toeplitz_normal()
    x = random_array(rng, (2,) + shape, "complex64")
    fresh = NonCartesianSense(maps, coords, weights=w, coord_batched=True)
    assert rel_err(ops[2].normal(x), fresh.normal(x)) < 1e-6
    other = NonCartesianSense(maps, coords, weights=w * 2, coord_batched=True, cached=True)
    assert other.nufft is ops[0].nufft and other.toeplitz_normal() is not ops[0].toeplitz_normal()
    assert rel_err(other.normal(x), 2 * fresh.normal(x)) < 1e-6
