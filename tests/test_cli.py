"""``recon mri`` end to end: bundled real data (all three methods), generated fastMRI and ISMRMRD
files (Cartesian with noise scans, radial), every output format, retrospective undersampling with
metrics, and one-line errors (never a traceback) for bad files, checked in a subprocess."""

import os
import subprocess
import sys

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.data import SAMPLES
from recon.data import path as sample_path


def _run_cli(args, cwd):
    """``python -m recon.cli ARGS`` in a subprocess importing the same recon as this test."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(recon.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RECON_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "recon.cli"] + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _read_recon(path):
    from recon.io import read_fastmri_reconstruction

    v = read_fastmri_reconstruction(path)
    assert v.dtype == np.float32 and np.isfinite(v).all() and v.max() > 0
    return v


# ---- bundled real data -----------------------------------------------------------------------------


def test_bundled_samples_are_installed():
    for name in SAMPLES:
        p = sample_path(name)
        assert os.path.isfile(p) and os.path.getsize(p) > 100_000
        assert os.path.isfile(os.path.join(os.path.dirname(p), "README.md"))
    with pytest.raises(ValueError):
        sample_path("no-such-sample")
    with pytest.raises(ValueError):
        sample_path("../../etc/passwd")


@pytest.mark.parametrize("sample,shape", [("brain-poisson", (1, 230, 180)), ("cardiac-radial", (1, 256, 256))])
@pytest.mark.parametrize("method,iters", [("zf", None), ("sense", 10), ("cs", 20)])
def test_bundled_real_data_reconstructs(tmp_path, sample, shape, method, iters, capsys):
    args = ["mri", "--sample", sample, "-o", str(tmp_path) + "/", "--method", method, "-q"]
    if iters:
        args += ["--iters", str(iters)]
    assert main(args) == 0
    stem = os.path.splitext(os.path.basename(sample_path(sample)))[0]
    v = _read_recon(tmp_path / f"{stem}_{method}.h5")
    assert v.shape == shape
    assert (tmp_path / f"{stem}_{method}.png").is_file()
    # the object is brighter than the background corners
    h, w = shape[1:]
    assert np.median(v[0, h // 3:2 * h // 3, w // 3:2 * w // 3]) > 3 * np.median(v[0, :h // 8, :w // 8])


def test_readme_command_writes_png(tmp_path, capsys):
    assert main(["mri", "--sample", "cardiac-radial", "-o", str(tmp_path / "out") + "/", "--method", "cs",
                 "--format", "png", "--iters", "10"]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "out" / "cardiac_radial_12coil_25spokes_cs.png"
    assert png.is_file() and "wrote" in out
    from PIL import Image

    assert Image.open(png).size == (256, 256)


def test_list_samples_and_help(capsys):
    assert main(["mri", "--list-samples"]) == 0
    assert "cardiac-radial" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0


# ---- generated files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastmri_full(tmp_path_factory):
    from fastmri_data import write_fastmri_multicoil
    from recon.mri.simulate import textured_phantom

    p = tmp_path_factory.mktemp("gen") / "knee_like.h5"
    # 2x readout oversampling as real fastMRI data: the image is cropped back to 96 x 112
    write_fastmri_multicoil(p, textured_phantom(2, 96, 112, seed=5), num_coils=6, noise_std=0.005,
                            readout_oversampling=2)
    return p


def test_retrospective_mask_reports_metrics(fastmri_full, tmp_path, capsys):
    psnrs = {}
    for method in ("zf", "cs"):
        assert main(["mri", str(fastmri_full), "--retrospective-mask", "random", "--accel", "4",
                     "--center-fraction", "0.08", "--seed", "1", "--method", method, "-q"]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert "NMSE" in line and "PSNR" in line and "SSIM" in line
        psnrs[method] = float(line.split("PSNR")[1].split("dB")[0])
    assert psnrs["cs"] > psnrs["zf"] + 5
    # equispaced too, with an output: the reference preview is written next to it
    assert main(["mri", str(fastmri_full), "--retrospective-mask", "equispaced", "--accel", "4",
                 "--method", "sense", "-o", str(tmp_path / "r.h5"), "-q"]) == 0
    assert _read_recon(tmp_path / "r.h5").shape == (2, 96, 112)
    assert (tmp_path / "r_reference.png").is_file() and (tmp_path / "r.png").is_file()


@pytest.mark.parametrize("fmt,name", [("h5", "x.h5"), ("nifti", "x.nii.gz"), ("dicom", "series"), ("png", "x.png")])
def test_output_formats(fastmri_full, tmp_path, fmt, name):
    out = tmp_path / name
    assert main(["mri", str(fastmri_full), "-o", str(out), "--format", fmt, "--method", "zf", "-q"]) == 0
    if fmt == "h5":
        assert _read_recon(out).shape == (2, 96, 112)
    elif fmt == "nifti":
        from recon.io import read_nifti

        vol, vox, _, _ = read_nifti(out)
        assert vol.shape == (2, 96, 112)
    elif fmt == "dicom":
        from recon.io import read_dicom_series

        vol = read_dicom_series(out)[0]
        assert vol.shape == (2, 96, 112)
        assert (tmp_path / "series.png").is_file()
    else:
        from PIL import Image

        assert Image.open(out).size[0] > 112
    if fmt != "png":
        preview = tmp_path / (name.split(".")[0] + ".png")
        assert preview.is_file()


def test_ismrmrd_cartesian_with_noise_scan(tmp_path):
    from fastmri_data import fft2c, simulate_coil_maps
    from recon.io import write_ismrmrd
    from recon.mri.simulate import textured_phantom

    rng = np.random.default_rng(0)
    img = textured_phantom(1, 64, 64, seed=2)[0]
    maps = simulate_coil_maps((64, 64), 4)
    mix = np.eye(4) + 0.3 * rng.standard_normal((4, 4))  # correlated receiver noise
    noise = mix @ (rng.standard_normal((4, 2048)) + 1j * rng.standard_normal((4, 2048))) * 0.01
    k = fft2c(maps * img) + (mix @ (rng.standard_normal((4, 4096)) + 1j * rng.standard_normal((4, 4096)))
                             ).reshape(4, 64, 64) * 0.01
    mask = np.zeros(64, bool)
    mask[::2] = True
    mask[24:40] = True
    p = write_ismrmrd(tmp_path / "cart.mrd", k.astype(np.complex64)[None], mask=mask[None, None, :],
                      noise=noise.astype(np.complex64))
    assert main(["mri", str(p), "-o", str(tmp_path / "c.h5"), "--method", "sense", "-q"]) == 0
    v = _read_recon(tmp_path / "c.h5")[0]
    # prewhitened data give an image in units of the noise standard deviation: compare up to scale
    ref = np.abs(img)
    a = np.vdot(v, ref) / np.vdot(v, v)
    assert 0.005 < a < 0.03  # ~ the noise std per coil (0.01 x sqrt(2) x mixing): SNR units
    err = np.linalg.norm(a * v - ref) / np.linalg.norm(ref)
    assert err < 0.2, err  # measured 0.10


def test_ismrmrd_radial_generated(tmp_path):
    from fastmri_data import simulate_coil_maps
    from recon.io import write_ismrmrd
    from recon.mri.simulate import simulate_noncartesian, textured_phantom
    from recon.mri.trajectory import radial_2d

    N = 64
    img = textured_phantom(1, N, N, seed=6)[0]
    coord = radial_2d(40, 2 * N, N)
    y = simulate_noncartesian(img, simulate_coil_maps((N, N), 6), coord, 0.002)
    p = write_ismrmrd(tmp_path / "radial.h5", samples=y, trajectory=coord, image_shape=(N, N))
    for method in ("zf", "cs"):
        assert main(["mri", str(p), "-o", str(tmp_path / f"{method}.h5"), "--method", method, "-q"]) == 0
    err = {m: np.linalg.norm(_read_recon(tmp_path / f"{m}.h5")[0] - np.abs(img)) / np.linalg.norm(np.abs(img))
           for m in ("zf", "cs")}
    assert err["cs"] < 0.1 and err["cs"] < err["zf"]  # measured cs 0.05, zf 0.2


# ---- one-line errors, never a traceback ------------------------------------------------------------


def _bad_files(tmp_path):
    import h5py

    real = sample_path("brain-poisson")
    files = {}
    data = open(real, "rb").read()
    files["truncated"] = tmp_path / "truncated.h5"
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["random_bytes"] = tmp_path / "random.h5"
    files["random_bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["png_named_h5"] = tmp_path / "image.h5"
    files["png_named_h5"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    files["empty"] = tmp_path / "empty.h5"
    files["empty"].write_bytes(b"")
    files["other_hdf5"] = tmp_path / "other.h5"
    with h5py.File(files["other_hdf5"], "w") as f:
        f["images"] = np.zeros((4, 4))
    files["real_kspace"] = tmp_path / "realk.h5"
    with h5py.File(files["real_kspace"], "w") as f:
        f["kspace"] = np.zeros((1, 2, 8, 8), np.float32)
        f["ismrmrd_header"] = b"<ismrmrdHeader/>"
    files["no_header"] = tmp_path / "nohdr.h5"
    with h5py.File(files["no_header"], "w") as f:
        f["kspace"] = np.ones((1, 2, 8, 8), np.complex64)
    files["nan_kspace"] = tmp_path / "nan.h5"
    with h5py.File(real, "r") as src, h5py.File(files["nan_kspace"], "w") as f:
        k = src["kspace"][()]
        k[0, 0, 0, 0] = np.nan
        f["kspace"] = k
        f["ismrmrd_header"] = src["ismrmrd_header"][()]
    files["ismrmrd_no_data"] = tmp_path / "mrd.h5"
    with h5py.File(files["ismrmrd_no_data"], "w") as f:
        f.create_group("dataset")["xml"] = np.array([b"<ismrmrdHeader/>"], dtype=object)
    files["missing"] = tmp_path / "does_not_exist.h5"
    return files


def test_bad_files_give_one_line_errors(tmp_path):
    files = _bad_files(tmp_path)
    for name, f in files.items():
        r = _run_cli(["mri", str(f), "-o", str(tmp_path / "out") + "/", "-q"], tmp_path)
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("recon: error: "), (name, r.stderr)
        assert "Traceback" not in r.stderr, name
    # their folder is a batch (docs/batch.md): one error line per file, exit 1
    r = _run_cli(["mri", str(tmp_path), "-o", str(tmp_path / "out") + "/", "-q"], tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == len(files) - 1, r.stderr  # all but the missing one
    assert all(ln.startswith("recon: error: ") for ln in lines), r.stderr


def test_usage_errors(tmp_path):
    real = sample_path("brain-poisson")
    cases = [
        ["mri", real, "--retrospective-mask", "random", "--accel", "4"],  # already undersampled
        ["mri", sample_path("cardiac-radial"), "--retrospective-mask", "random"],  # non-Cartesian
        ["mri", real, "-o", str(tmp_path / "x.h5"), "--format", "png"],  # format vs extension
        ["mri", real],  # no output
        ["mri", real, "-o", str(tmp_path) + "/", "--slices", "5"],
        ["mri", real, "-o", str(tmp_path) + "/", "--iters", "0"],
    ]
    for args in cases:
        r = _run_cli(args + ["-q"], tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("recon: error: "), (args, r.stderr)
    r = _run_cli(["mri", real, "--method", "bogus"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_ismrmrd_3d_cartesian_volume(tmp_path):
    """3D encoding (kz > 1): maps and reconstruction in 3D, written as a (z, y, x) volume."""
    from fastmri_data import simulate_coil_maps
    from recon.io import write_ismrmrd

    shape = (12, 16, 20)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    img = (((zz**2 + yy**2 + xx**2) < 0.6) * (1 + 0.3 * xx)).astype(np.complex64)
    ax = (1, 2, 3)
    k = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(simulate_coil_maps(shape, 4) * img, axes=ax), axes=ax,
                                    norm="ortho"), axes=ax)
    p = write_ismrmrd(tmp_path / "vol.h5", k.astype(np.complex64)[None])
    assert main(["mri", str(p), "-o", str(tmp_path / "s.h5"), "--method", "sense", "--calib-width", "10",
                 "--crop", "0", "-q"]) == 0
    v = _read_recon(tmp_path / "s.h5")
    assert v.shape == shape
    assert np.linalg.norm(v - np.abs(img)) / np.linalg.norm(np.abs(img)) < 0.02  # measured 0.0025
