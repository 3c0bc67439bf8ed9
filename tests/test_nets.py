"""Unrolled networks (recon.nets): forward/backward of every model on tiny inputs, gradients reach
every parameter, prior inputs, gradient checkpointing, bad params, and weights I/O (saved == loaded,
corrupt/mismatched files are clear errors)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import recon.ct as ct  # noqa: E402
from fastmri_data import simulate_coil_maps  # noqa: E402
from recon.mri.trajectory import radial_2d  # noqa: E402
from recon.nets import (  # noqa: E402
    LearnedPrimalDual,
    LearnedPWLS,
    MoDL,
    VarNet,
    load,
    make_card,
    read_card,
    save,
)
from recon.ops import Projector  # noqa: E402
from recon.ops.sense import CartesianSense, NonCartesianSense  # noqa: E402

B, C, N = 2, 3, 16
TINY_MRI = dict(features=6, layers=3, unrolls=2, cg_iter=3)
TINY_VARNET = dict(cascades=2, chans=4, pools=1, sens_chans=2, sens_pools=1)
TINY_CT = dict(iterations=2, features=6, layers=2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def _mri(trajectory="cartesian", seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.from_numpy(np.stack([simulate_coil_maps((N, N), C)] * B))
    x = torch.randn(B, N, N, dtype=torch.complex64, generator=g)
    if trajectory == "cartesian":
        mask = (torch.rand(B, 1, N, generator=g) < 0.5).float()
        mask[..., N // 2 - 2:N // 2 + 2] = 1
        y = CartesianSense(maps, mask)(x)
        return x, y, {"maps": maps, "mask": mask}
    coord = torch.from_numpy(np.stack([radial_2d(8, 2 * N, N, offset=3 * b) for b in range(B)]))
    y = NonCartesianSense(maps, coord.numpy(), coord_batched=True)(x)
    return x, y, {"maps": maps, "coord": coord, "weights": torch.ones(B, 8, 2 * N)}


def _ct():
    geom = ct.FanBeam2D(np.linspace(0, 2 * np.pi, 24, endpoint=False), det_count=28, det_spacing=1.5,
                        source_origin=60.0, origin_det=40.0, image_shape=(N, N))
    P = Projector(geom, nthreads=1)
    x = torch.from_numpy(np.stack([ct.shepp_logan_2d(N, scale=0.02)] * B).astype(np.float32))
    noisy, counts = ct.simulate_low_dose(P(x).numpy(), 5e3, seed=0)
    w = torch.from_numpy(ct.pwls_weights(counts))
    return x, torch.from_numpy(noisy), {"projector": P, "weights": w}


def _without_maps(trajectory):
    x, y, params = _mri(trajectory)
    params = {k: v for k, v in params.items() if k != "maps"}
    return x, y, dict(params, im_shape=(N, N))


CASES = {
    "modl-cartesian": (lambda **k: MoDL(**TINY_MRI, **k), lambda: _mri("cartesian")),
    "modl-radial": (lambda **k: MoDL(trajectory="noncartesian", **TINY_MRI, **k), lambda: _mri("noncartesian")),
    "varnet-cartesian": (lambda **k: VarNet(**TINY_VARNET, **k), lambda: _without_maps("cartesian")),
    "varnet-radial": (lambda **k: VarNet(trajectory="noncartesian", **TINY_VARNET, **k),
                      lambda: _without_maps("noncartesian")),
    "lpd": (lambda **k: LearnedPrimalDual(**TINY_CT, **k), _ct),
    "pwls": (lambda **k: LearnedPWLS(**TINY_CT, **k), _ct),
}


def _grads_reach_all(model, out, x):
    model.zero_grad(set_to_none=True)
    ((out - x).abs() ** 2).mean().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
           or float(p.grad.abs().sum()) == 0]
    assert not bad, f"no gradient reaches {bad}"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("prior", [False, True])
def test_forward_backward_all_parameters(name, prior):
    build, data = CASES[name]
    model = build(prior=prior)
    x, y, params = data()
    out = model(y, params, x.abs() if prior else None)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out.abs()).all()
    _grads_reach_all(model, out, x)


@pytest.mark.parametrize("name", ["modl-cartesian", "lpd"])
def test_prior_model_runs_with_and_without_prior(name):
    build, data = CASES[name]
    model = build(prior=True)
    x, y, params = data()
    with torch.no_grad():
        a = model(y, params, None)
        b = model(y, params, x.abs())
    assert torch.isfinite(a.abs()).all() and torch.isfinite(b.abs()).all()
    assert not torch.allclose(a, b)                       # the prior channels are used
    plain = build(prior=False)
    with pytest.raises(ValueError, match="without a prior"):
        plain(y, params, x.abs())
    with pytest.raises(ValueError, match="prior: expected shape"):
        model(y, params, x.abs()[:, :-1])


def test_cone_beam_lpd_with_3d_convolutions():
    n = 6
    geom = ct.ConeBeam3D(np.linspace(0, 2 * np.pi, 10, endpoint=False), det_shape=(8, 10), det_spacing=1.5,
                         source_origin=40.0, origin_det=20.0, image_shape=(n, n, n))
    P = Projector(geom, nthreads=1)
    x = torch.rand(1, n, n, n) * 0.02
    model = LearnedPrimalDual(**TINY_CT, ndim=3, prior=True)
    out = model(P(x), {"projector": P}, x)
    assert out.shape == x.shape
    _grads_reach_all(model, out, x)
    with pytest.raises(ValueError, match="built for 2D"):
        LearnedPrimalDual(**TINY_CT)(P(x), {"projector": P})


def test_untrained_mri_model_is_near_its_classical_iteration():
    """With the near-zero last layer the untrained MoDL is (almost) regularised least squares:
    it fits the data far better than the zero-filled image."""
    x, y, params = _mri("cartesian")
    model = MoDL(**TINY_MRI)
    with torch.no_grad():
        out = model(y, params)
    A = CartesianSense(params["maps"], params["mask"])
    r_net = (A(out) - y).abs().pow(2).sum() / y.abs().pow(2).sum()
    r_zf = (A(A.H(y)) - y).abs().pow(2).sum() / y.abs().pow(2).sum()
    assert float(r_net) < 0.5 * float(r_zf)


def test_dynamic_modl_frames_share_data_consistency():
    x, y, params = _mri("cartesian")
    T = 3
    model = MoDL(**TINY_MRI, dynamic=True)
    yd = torch.stack([y] * T, 1)                                   # (B, T, C, y, x)
    mask = params["mask"][:, None].expand(B, T, 1, N)
    out = model(yd, {"maps": params["maps"], "mask": mask})
    assert out.shape == (B, T, N, N)
    _grads_reach_all(model, out, torch.stack([x] * T, 1))
    # each frame is consistent with its own data: frames with different images stay apart
    xs = torch.randn(B, T, N, N, dtype=torch.complex64)
    A = CartesianSense(params["maps"], params["mask"])
    ys = torch.stack([A(xs[:, t]) for t in range(T)], 1)
    with torch.no_grad():
        o = model(ys, {"maps": params["maps"], "mask": mask})
    for t in range(T):
        own = (A(o[:, t]) - ys[:, t]).abs().pow(2).sum()
        other = (A(o[:, t]) - ys[:, (t + 1) % T]).abs().pow(2).sum()
        assert float(own) < 0.3 * float(other)
    assert model.denoiser.net[0][0].kernel_size == (1, 3, 3) and model.denoiser.net[0][1].kernel_size == (3, 1, 1)


def test_checkpointing_gives_the_same_gradients():
    x, y, params = _mri("cartesian")
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(1)
        model = MoDL(**TINY_MRI)
        model.checkpointing = ckpt
        ((model(y, params) - x).abs() ** 2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_varnet_estimates_maps_and_takes_given_maps():
    x, y, params = _mri("cartesian")
    model = VarNet(**TINY_VARNET)
    no_maps = {"mask": params["mask"]}
    maps = model.estimate_maps(y, no_maps, (N, N))
    assert maps.shape == params["maps"].shape
    rss = maps.abs().pow(2).sum(1).sqrt()
    assert torch.allclose(rss[rss > 0.5], torch.ones_like(rss[rss > 0.5]), atol=1e-3)
    with torch.no_grad():
        a, b = model(y, no_maps), model(y, params)
    assert not torch.allclose(a, b)


def test_bad_params_are_clear_errors():
    x, y, params = _mri("cartesian")
    model = MoDL(**TINY_MRI)
    with pytest.raises(ValueError, match="lack"):
        model(y, {"mask": params["mask"]})
    with pytest.raises(ValueError, match="exactly one"):
        model(y, dict(params, coord=torch.zeros(B, 4, 2)))
    with pytest.raises(ValueError, match="built for cartesian"):
        model(y, {"maps": params["maps"], "coord": torch.zeros(B, C, 2)})
    with pytest.raises(ValueError, match="maps"):
        model(y, dict(params, maps=params["maps"][:, :2]))
    with pytest.raises(TypeError, match="complex64"):
        model(y.abs(), params)
    with pytest.raises(TypeError, match="dict"):
        model(y, [params["maps"]])
    xr, yr, pr = _mri("noncartesian")
    with pytest.raises(ValueError, match="coord"):
        MoDL(trajectory="noncartesian", **TINY_MRI)(yr, dict(pr, coord=pr["coord"][:, :4]))
    xc, g, pc = _ct()
    lpd = LearnedPrimalDual(**TINY_CT)
    with pytest.raises(ValueError, match="data must be"):
        lpd(g[:, :5], pc)
    with pytest.raises(TypeError, match="Projector"):
        lpd(g, {"projector": "fan"})
    with pytest.raises(ValueError, match="weights"):
        LearnedPWLS(**TINY_CT)(g, {"projector": pc["projector"]})
    with pytest.raises(ValueError, match="trajectory"):
        MoDL(trajectory="spiral")


# ---- weights ---------------------------------------------------------------------------------------------

def _card(model):
    return make_card(model, task={"modality": "test"}, training={"sources": {}}, metrics={})


@pytest.mark.parametrize("name", ["modl-radial", "varnet-cartesian", "lpd"])
def test_save_load_identical_outputs(tmp_path, name):
    build, data = CASES[name]
    model = build(prior=True).eval()
    x, y, params = data()
    path = save(model, tmp_path / "m", _card(model))
    assert path.endswith(".safetensors") and os.path.isfile(tmp_path / "m.json")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask          # not mkstemp's 0600
    loaded = load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(model(y, params, x.abs()), loaded(y, params, x.abs()))
    card = read_card(path)
    assert card["architecture"] == model.arch and card["n_parameters"] == model.n_parameters
    with open(path, "rb") as f:                                   # a safetensors file: 8-byte length + JSON
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    assert header["__metadata__"] == {"format": "recon-nets-card", "architecture": model.arch}
    assert set(header) - {"__metadata__"} == set(model.state_dict())


def test_corrupt_or_mismatched_weights_are_clear_errors(tmp_path):
    model = MoDL(**TINY_MRI)
    path = save(model, tmp_path / "m.safetensors", _card(model))
    raw = open(path, "rb").read()
    card = json.load(open(tmp_path / "m.json"))

    def write(data: bytes, c: dict):
        with open(path, "wb") as f:
            f.write(data)
        with open(tmp_path / "m.json", "w") as f:
            json.dump(c, f)

    from recon.nets.weights import _sha256

    write(raw[: len(raw) // 2], card)                              # truncated
    with pytest.raises(ValueError, match="does not match its model card"):
        load(path)
    write(raw[: len(raw) // 2], dict(card, weights_sha256=_sha256(path)))   # truncated, card re-hashed
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load(path)
    flipped = bytearray(raw)
    flipped[-3] ^= 0xFF
    write(bytes(flipped), card)                                    # corrupt data bytes
    with pytest.raises(ValueError, match="does not match"):
        load(path)
    write(raw, {k: v for k, v in card.items() if k != "metrics"})   # missing card field
    with pytest.raises(ValueError, match="lacks required fields \\['metrics'\\]"):
        load(path)
    write(raw, dict(card, config=dict(card["config"], features=7)))  # wrong architecture parameters
    with pytest.raises(ValueError, match="wrong shapes"):
        load(path)
    write(raw, dict(card, config=dict(card["config"], unrolls=3, prior=True)))
    with pytest.raises(ValueError, match="wrong shapes"):
        load(path)
    write(raw, dict(card, architecture="lpd"))
    with pytest.raises(ValueError, match="not parameters of LearnedPrimalDual"):
        load(path)
    write(raw, dict(card, architecture="resnet"))
    with pytest.raises(ValueError, match="unknown architecture"):
        load(path)
    write(raw, card)
    with open(tmp_path / "m.json", "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not a valid JSON model card"):
        load(path)
    os.unlink(tmp_path / "m.json")
    with pytest.raises(ValueError, match="card .* is missing"):
        load(path)
    with pytest.raises(FileNotFoundError, match="no weights"):
        load(tmp_path / "nothing")
    write(raw, card)
    assert torch.equal(load(path).log_lam, model.log_lam)          # intact again: loads
