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
