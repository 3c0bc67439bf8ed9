"""fastmri_data: file reader/generator, header padding, masks, metrics, SliceDataset."""

import h5py
import numpy as np
import pytest

import fastmri_data as F
from fastmri_data import FastMRIFormatError


# ---- files ---------------------------------------------------------------------------------------

def test_generator_reader_roundtrip_with_padding(tmp_path):
    img = F.phantom(3, 32, 24).astype(np.complex64)
    maps = F.simulate_coil_maps((64, 24), 4)
    p = F.write_fastmri_multicoil(tmp_path / "a.h5", img, sens_maps=maps, readout_oversampling=2,
                                  pe_padding=(2, 3), fov_mm=(160.0, 120.0, 5.0), acquisition="AXT2")
    v = F.read_fastmri(p)
    assert v.challenge == "multicoil" and v.kspace.shape == (3, 4, 64, 24) and v.kspace.dtype == np.complex64
    assert v.target.shape == (3, 32, 24) and v.target_key == "reconstruction_rss"
    assert v.encoding_size == (64, 24, 1) and v.recon_size == (32, 24, 1)
    assert (v.padding_left, v.padding_right) == (2, 21)
    assert np.all(v.kspace[..., :2] == 0) and np.all(v.kspace[..., 21:] == 0)
    assert np.all(np.abs(v.kspace[..., 2:21]).max(axis=(0, 1, 2)) > 0)
    assert v.attrs["acquisition"] == "AXT2" and v.attrs["patient_id"] == "synthetic"
    assert v.attrs["max"] == pytest.approx(float(v.target.max()))
    assert v.attrs["norm"] == pytest.approx(float(np.linalg.norm(v.target)), rel=1e-6)
    assert v.header.encoded_fov_mm == (320.0, 120.0, 5.0) and v.header.recon_fov_mm == (160.0, 120.0, 5.0)
    # the k-space is fastMRI's: ifft2c + coil combination with the known maps gives the image back
    f = F.read_fastmri(F.write_fastmri_multicoil(tmp_path / "b.h5", img, sens_maps=maps, readout_oversampling=2))
    coil_img = F.ifft2c(f.kspace)
    comb = np.sum(np.conj(maps)[None] * coil_img, axis=1)  # maps normalised: sum |S|^2 = 1
    np.testing.assert_allclose(F.center_crop(comb, (32, 24)), img, atol=1e-5)
    np.testing.assert_allclose(f.target, np.abs(img), atol=1e-5)
    # lazy per-slice access
    lf = F.FastMRIFile(p)
    assert lf.num_slices == 3 and lf.challenge == "multicoil"
    np.testing.assert_array_equal(lf.kspace_slice(1), v.kspace[1])
    np.testing.assert_array_equal(lf.target_slice(-1), v.target[2])
    with pytest.raises(IndexError):
        lf.kspace_slice(3)


def test_generator_noise_seeded(tmp_path):
    img = F.phantom(1, 16, 16)
    a = F.read_fastmri(F.write_fastmri_multicoil(tmp_path / "a.h5", img, num_coils=2, noise_std=0.1, seed=3))
    b = F.read_fastmri(F.write_fastmri_multicoil(tmp_path / "b.h5", img, num_coils=2, noise_std=0.1, seed=3))
    c = F.read_fastmri(F.write_fastmri_multicoil(tmp_path / "c.h5", img, num_coils=2, noise_std=0.0))
    np.testing.assert_array_equal(a.kspace, b.kspace)
    resid = (a.kspace - c.kspace).ravel()
    assert np.std(resid.real) == pytest.approx(0.1, rel=0.2) and np.std(resid.imag) == pytest.approx(0.1, rel=0.2)


def test_singlecoil_file_reads(tmp_path):
    from fastmri_data.header import build_ismrmrd_header

    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as hf:
        hf["kspace"] = np.ones((2, 8, 6), np.complex64)
        hf["reconstruction_esc"] = np.ones((2, 4, 4), np.float32)
        hf["ismrmrd_header"] = build_ismrmrd_header((8, 6, 1), (1.0, 1.0, 1.0), (4, 4, 1), (1.0, 1.0, 1.0),
                                                    limits={"kspace_encoding_step_1": (0, 4, 3)}).encode()
        hf.attrs["acquisition"] = "CORPD_FBK"
    v = F.read_fastmri(p)
    assert v.challenge == "singlecoil" and v.target_key == "reconstruction_esc" and v.target.shape == (2, 4, 4)
    assert (v.padding_left, v.padding_right) == (0, 5)


def test_fastmri_truncated_and_mislabelled(tmp_path):
    p = F.generate_sample(tmp_path / "a.h5", num_slices=2, shape=(32, 32), num_coils=2)
    raw = open(p, "rb").read()
    t = tmp_path / "t.h5"
    t.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FastMRIFormatError) as ei:
        F.read_fastmri(t)
    assert "\n" not in str(ei.value)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as hf:
        hf["reconstruction"] = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(FastMRIFormatError, match="no 'kspace'"):
        F.read_fastmri(bad)
    with h5py.File(bad, "w") as hf:
        hf["kspace"] = np.zeros((2, 4, 4), np.float32)  # real, not complex
        hf["ismrmrd_header"] = b"<x/>"
    with pytest.raises(FastMRIFormatError, match="complex"):
        F.read_fastmri(bad)
    with h5py.File(bad, "w") as hf:
        hf["kspace"] = np.zeros((2, 4, 4), np.complex64)
        hf["ismrmrd_header"] = b"this is not xml"
    with pytest.raises(FastMRIFormatError, match="XML"):
        F.read_fastmri(bad)
    with pytest.raises(FileNotFoundError):
        F.read_fastmri(tmp_path / "none.h5")
    assert issubclass(FastMRIFormatError, ValueError)


def test_simulate_coil_maps_properties():
    m = F.simulate_coil_maps((20, 30), 6)
    assert m.shape == (6, 20, 30) and m.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(m) ** 2, axis=0), 1.0, rtol=1e-5)
    m3 = F.simulate_coil_maps((4, 10, 12), 8, normalize=False)
    assert m3.shape == (8, 4, 10, 12) and np.all(np.isfinite(m3))
    # smooth: neighbouring pixels differ little relative to the map's range
    assert np.abs(np.diff(m, axis=-1)).max() < 0.25
    # distinct coils
    assert np.abs(m[0] - m[1]).max() > 0.1
    with pytest.raises(ValueError):
        F.simulate_coil_maps((5,), 2)


# ---- masks ---------------------------------------------------------------------------------------

def test_random_mask_matches_fastmri_draw_sequence():
    """fastMRI's RandomMaskFunc for seed 42, stated independently: RandomState(42) draws randint(1)
    (choice of the pair), then uniform(size=W); p = (W/acc - L) / (W - L), L = round(W cf)."""
    w, cf, acc = 32, 0.08, 4
    mask, nlf = F.RandomMaskFunc([cf], [acc], seed=42)((2, 16, w))
    assert mask.shape == (1, 1, w) and mask.dtype == np.float32 and nlf == 3
    rng = np.random.RandomState(42)
    rng.randint(1)
    expect = rng.uniform(size=w) < (w / acc - 3) / (w - 3)
    expect[15:18] = True  # pad = (32 - 3 + 1) // 2 = 15
    np.testing.assert_array_equal(mask[0, 0].astype(bool), expect)


def test_equispaced_masks_hand_computed():
    # W=20, acc=4, cf=0.1: L=2, centre at 9,10; offset 1 -> 1,5,9,13,17
    m, nlf = F.EquispacedMaskFunc([0.1], [4])((20,), offset=1)
    assert nlf == 2 and np.flatnonzero(m).tolist() == [1, 5, 9, 10, 13, 17]
    # W=32, acc=4, cf=0.08: L=3, centre 15..17; spacing 4(3-32)/(12-32) = 5.8; offset 1 ->
    # round(1, 6.8, 12.6, 18.4, 24.2, 30.0) = 1, 7, 13, 18, 24, 30
    m, nlf = F.EquispacedMaskFractionFunc([0.08], [4])((32,), offset=1)
    assert nlf == 3 and np.flatnonzero(m).tolist() == [1, 7, 13, 15, 16, 17, 18, 24, 30]


@pytest.mark.parametrize("cls", [F.RandomMaskFunc, F.EquispacedMaskFunc, F.EquispacedMaskFractionFunc])
def test_mask_acceleration_centre_and_determinism(cls):
    w, cf, acc = 368, 0.08, 4
    mf = cls([cf], [acc], seed=0)
    nlf_expect = round(w * cf)
    pad = (w - nlf_expect + 1) // 2
    counts = []
    for s in range(100):
        m, nlf = mf((15, 640, w), seed=s)
        assert nlf == nlf_expect
        assert np.all(m[0, 0, pad:pad + nlf] == 1)
        counts.append(m.sum())
        np.testing.assert_array_equal(m, mf((15, 640, w), seed=s)[0])  # deterministic per seed
    mean = np.mean(counts)
    if cls is F.EquispacedMaskFunc:  # centre plus every 4th line: between w/acc and w/acc + L
        assert w / acc <= mean <= w / acc + nlf_expect
    else:  # designed for w / acc lines in expectation
        assert abs(mean - w / acc) / (w / acc) < 0.03
    # seeded calls leave the function's own random stream untouched
    a = [cls([cf], [acc], seed=7)((w,))[0] for _ in range(1)]
    mf2 = cls([cf], [acc], seed=7)
    mf2((w,), seed=123)
    np.testing.assert_array_equal(mf2((w,))[0], a[0])


def test_mask_choice_between_pairs_and_errors():
    mf = F.RandomMaskFunc([0.08, 0.04], [4, 8], seed=1)
    seen = {mf((100,), seed=s)[1] for s in range(30)}
    assert seen == {8, 4}  # round(100 * 0.08), round(100 * 0.04)
    with pytest.raises(ValueError):
        F.RandomMaskFunc([0.08], [4, 8])
    with pytest.raises(ValueError):
        F.create_mask_for_mask_type("magic", [0.08], [4])
    km = np.ones((2, 8, 40), np.complex64)
    masked, mask, nlf = F.apply_mask(km, F.create_mask_for_mask_type("equispaced", [0.1], [4]), seed=0,
                                     padding=(2, 38))
    assert masked.dtype == np.complex64 and np.all(masked[..., :2] == 0) and np.all(masked[..., 38:] == 0)
    np.testing.assert_array_equal(masked[0, 0].real, mask[0, 0])


# ---- metrics -------------------------------------------------------------------------------------

def test_metrics_hand_computed():
    gt = np.array([[[0.0, 4.0], [1.0, 2.0]]])
    pred = np.array([[[1.0, 4.0], [1.0, 1.0]]])
    assert F.mse(gt, pred) == pytest.approx(0.5)
    assert F.nmse(gt, pred) == pytest.approx(2.0 / 21.0)
    assert F.psnr(gt, pred) == pytest.approx(10 * np.log10(16 / 0.5))  # maxval = gt.max() = 4
    assert F.psnr(gt, pred, maxval=2.0) == pytest.approx(10 * np.log10(4 / 0.5))


def test_ssim_hand_computed_single_window():
    """On a 7x7 slice only one window lies inside: SSIM is one closed-form value with sample
    (ddof=1) statistics. pred = a * gt + b gives ux' = a ux + b, vx' = a^2 vx, vxy = a vx."""
    gt = np.arange(49, dtype=np.float64).reshape(1, 7, 7) % 5 + np.eye(7)[None]
    a, b = 0.8, 0.3
    pred = a * gt + b
    ux, vx = gt.mean(), gt.var(ddof=1)
    uy = a * ux + b
    L = gt.max()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    expect = (2 * ux * uy + c1) * (2 * a * vx + c2) / ((ux**2 + uy**2 + c1) * (vx + a * a * vx + c2))
    assert F.ssim(gt, pred) == pytest.approx(expect, rel=1e-12)
    assert F.ssim(gt, gt) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError):
        F.ssim(gt[0], pred[0])  # needs (slices, H, W)
    with pytest.raises(ValueError):
        F.ssim(np.ones((1, 6, 6)), np.ones((1, 6, 6)))


def test_metrics_equal_skimage_on_random_volumes():
    skm = pytest.importorskip("skimage.metrics", reason="scikit-image (the `test` extra) not installed")
    rng = np.random.default_rng(0)
    gt = rng.random((3, 20, 24)) * 5
    pred = gt + 0.3 * rng.standard_normal(gt.shape)
    L = gt.max()
    expect = np.mean([skm.structural_similarity(gt[s], pred[s], data_range=L) for s in range(3)])
    assert F.ssim(gt, pred) == pytest.approx(expect, rel=1e-12)
    assert F.psnr(gt, pred) == pytest.approx(skm.peak_signal_noise_ratio(gt, pred, data_range=L), rel=1e-12)
    assert F.ssim(gt, pred, maxval=2 * L) == pytest.approx(
        np.mean([skm.structural_similarity(gt[s], pred[s], data_range=2 * L) for s in range(3)]), rel=1e-12)
    g32, p32 = gt.astype(np.float32), pred.astype(np.float32)
    e32 = np.mean([skm.structural_similarity(g32[s], p32[s], data_range=float(g32.max())) for s in range(3)])
    assert F.ssim(g32, p32) == pytest.approx(e32, rel=1e-5)  # skimage keeps float32; we use float64


# ---- SliceDataset --------------------------------------------------------------------------------

def test_slice_dataset(tmp_path):
    F.generate_sample(tmp_path / "a.h5", num_slices=2, shape=(16, 16), num_coils=2, pe_padding=(1, 1))
    F.generate_sample(tmp_path / "b.h5", num_slices=3, shape=(16, 16), num_coils=2, seed=1)
    ds = F.SliceDataset(tmp_path)
    assert len(ds) == 5
    kspace, mask, target, attrs, fname, s = ds[3]
    assert fname == "b.h5" and s == 1 and mask is None
    np.testing.assert_array_equal(kspace, F.read_fastmri(tmp_path / "b.h5").kspace[1])
    assert target.shape == (16, 16) and attrs["padding_left"] == 0 and attrs["padding_right"] == 16
    assert ds[0][3]["padding_left"] == 1 and ds[0][3]["padding_right"] == 15
    assert ds[0][3]["encoding_size"] == (16, 16, 1) and ds[0][3]["acquisition"] == "SYNTH_MULTICOIL"
    ds2 = F.SliceDataset([tmp_path / "a.h5"], transform=lambda k, m, t, a, f, s: (k.shape, s))
    assert [ds2[i] for i in range(2)] == [((2, 16, 16), 0), ((2, 16, 16), 1)]
    with pytest.raises(FastMRIFormatError, match="multicoil file in a singlecoil"):
        F.SliceDataset(tmp_path, challenge="singlecoil")
    torch = pytest.importorskip("torch", reason="torch not installed: SliceDataset is a plain class")
    assert isinstance(ds, torch.utils.data.Dataset)
    loader = torch.utils.data.DataLoader(F.SliceDataset(tmp_path, transform=lambda k, m, t, a, f, s: torch.from_numpy(t)),
                                         batch_size=5)
    (batch,) = list(loader)
    assert batch.shape == (5, 16, 16)


def test_corrupted_bytes_raise_only_format_errors(tmp_path):
    """Random byte damage either goes unnoticed (payload bytes: no checksums) or raises
    FastMRIFormatError; never another exception type."""
    raw = open(F.generate_sample(tmp_path / "a.h5", num_slices=2, shape=(16, 16), num_coils=2), "rb").read()
    raised = 0
    for seed in range(25):
        r = np.random.default_rng(seed)
        b = bytearray(raw)
        for pos in r.integers(0, len(b), 50):
            b[pos] = r.integers(0, 256)
        p = tmp_path / f"c{seed}.h5"
        p.write_bytes(bytes(b))
        try:
            F.read_fastmri(p)
        except FastMRIFormatError as exc:
            assert "\n" not in str(exc)
            raised += 1
    assert raised > 0


def test_cli_sample_and_info(tmp_path, capsys):
    from fastmri_data.__main__ import main

    out = tmp_path / "s.h5"
    assert main(["sample", str(out), "--slices", "2", "--shape", "16", "12", "--coils", "3", "--png",
                 str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 100
    assert F.read_fastmri(out).kspace.shape == (2, 3, 16, 12)
    assert main(["info", str(out)]) == 0
    assert "multicoil" in capsys.readouterr().out
