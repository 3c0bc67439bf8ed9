"""``recon ct`` end to end: the bundled real data, DICOM-CT-PD files made by the writer, plain
sinogram files with raw counts, PICCS with a prior file; every output format (HDF5 attributes, a valid
DICOM CT series, NIfTI placement, PNG window presets); one-line errors with exit code 1 for bad files
(checked in a subprocess: no traceback); outputs never over an input, never half-written."""

import json
import os
import shutil
import sys
import warnings

import h5py
import numpy as np
import pydicom
import pytest

import recon.ct as ct
from recon.cli import main
from recon.io import read_nifti, write_dicom_ct_pd, write_geometry_file
from recon.io.dicom_ct_pd import CylindricalDetector, HelicalScan

sys.path.insert(0, os.path.dirname(__file__))
from test_cli import _run_cli  # noqa: E402
from test_ct_pipeline import BODY, LESION, N, VS, _dciodvfy_errors  # noqa: E402
from test_rebin import PHANTOM  # noqa: E402


def _h5(path):
    with h5py.File(path, "r") as f:
        ds = f["reconstruction"]
        return ds[()], dict(ds.attrs), sorted(f)


@pytest.fixture(scope="module")
def fan_files(tmp_path_factory):
    """A 96^2 body slice with a lesion as a fan-beam sinogram file: raw counts (.npy) with a geometry
    file, the noiseless truth and the lesion-free prior (.npy)."""
    d = tmp_path_factory.mktemp("fan")
    g = ct.FanBeam2D(np.linspace(0, 2 * np.pi, 120, endpoint=False), 144, 3.0, 500.0, 300.0, "flat", (N, N), VS)
    sino = ct.analytic_sinogram(BODY + [LESION], g, subsamples=2).astype(np.float32)
    _, counts = ct.simulate_low_dose(sino, 5e3, 0.0, seed=3)
    np.save(d / "counts.npy", counts.astype(np.float32))
    write_geometry_file(d / "geom.json", g, units="counts", blank=5e3)
    write_geometry_file(d / "geom_nocounts.json", g)
    np.save(d / "prior.npy", ct.rasterize(BODY, (N, N), VS, supersample=4).astype(np.float32))
    truth = ct.rasterize(BODY + [LESION], (N, N), VS, supersample=4).astype(np.float32)
    return d, g, truth


def psnr(x, truth):
    return float(10 * np.log10(truth.max() ** 2 / np.mean((np.asarray(x, np.float64) - truth) ** 2)))


# ---- real data and the outputs -----------------------------------------------------------------------

def test_bundled_samples(tmp_path, capsys):
    """HTC2022 (FBP, PNG) and the PET transmission scan (PWLS-TV, HDF5 with the method's parameters as
    attributes, a preview beside it) through the command line; ``--list-samples``."""
    assert main(["ct", "--list-samples"]) == 0
    assert "htc2022" in capsys.readouterr().out
    assert main(["ct", "--sample", "htc2022", "-o", str(tmp_path) + "/", "-q"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["htc2022_fbp.h5", "htc2022_fbp.png"]
    out = tmp_path / "pet.h5"
    assert main(["ct", "--sample", "pet-transmission", "-o", str(out), "--method", "pwls-tv", "--iters", "3"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "pwls-tv" in text and "iterations 3" in text
    img, attrs, names = _h5(out)
    assert img.shape == (1, 128, 128) and img.dtype == np.float32 and names == ["reconstruction"]
    assert attrs["method"] == "pwls-tv" and attrs["units"] == "1/mm" and attrs["solver"] == "os"
    assert attrs["iterations"] == 3 and attrs["beta"] > 0 and attrs["subsets"] == 10
    np.testing.assert_allclose(attrs["voxel_size_mm"], [1.0, 540 / 128, 540 / 128])
    assert 0.006 < np.median(img[img > 0.5 * img.max()]) < 0.012  # soft tissue at 511 keV, ~0.0096/mm
    assert (tmp_path / "pet.png").is_file()


@pytest.fixture(scope="module")
def helical_folder(tmp_path_factory):
    """A small simulated helical scan (4 rows x 64 columns, 90 views per turn, 1.5 turns, flying
    focal spot off) written by the DICOM-CT-PD writer, with photon statistics."""
    det = CylindricalDetector(4, 64, 2.4, 2.0, 1085.6, (31.75, 1.5))
    n = 135
    ang = np.arange(n) * 2 * np.pi / 90
    scan = HelicalScan(np.zeros((n, 4, 64), np.float32), ang, 4.0 * (ang - ang.mean()) / (2 * np.pi), 595.0, det,
                       views_per_rotation=90, photon_statistics=np.full((n, 64), 2e5), info={"kvp": 120.0})
    from recon.ct.rebin import scan_line_integrals

    scan.projections[:] = scan_line_integrals(PHANTOM, scan)
    folder = tmp_path_factory.mktemp("ctpd") / "scan"
    write_dicom_ct_pd(folder, scan)
    return folder


def test_dicom_ct_pd_to_a_valid_ct_series(helical_folder, tmp_path):
    """DICOM-CT-PD files in, a DICOM CT series out (a valid CT Image IOD: dciodvfy reports no error),
    in HU with the reconstruction grid's geometry; the soft-tissue preview."""
    out = tmp_path / "series"
    assert main(["ct", str(helical_folder), "-o", str(out), "--format", "dicom", "--image-size", "48",
                 "--voxel-size", "1.6", "--z=-1:1:1", "-q"]) == 0
    files = sorted(os.listdir(out))
    assert len(files) == 3 and (tmp_path / "series.png").is_file()
    dss = [pydicom.dcmread(out / f) for f in files]
    assert [float(ds.ImagePositionPatient[2]) for ds in dss] == [-1.0, 0.0, 1.0]
    assert float(dss[0].ImagePositionPatient[0]) == pytest.approx(-23.5 * 1.6)
    assert float(dss[0].KVP) == 120.0 and dss[0].RescaleType == "HU"
    body = dss[1].pixel_array[20:28, 20:28]  # inside the phantom's 0.02/mm body: ~ +36 HU
    assert 0 < np.median(body) < 80
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed: DICOM IOD validation not run")
    for f in files:
        assert _dciodvfy_errors(out / f) == [], f


def test_counts_file_pwls_and_nifti(fan_files, tmp_path):
    """Raw counts with the blank in the geometry file become line integrals by the log model and PWLS
    weights from the counts: PWLS-TV beats FBP by > 3 dB; ``--blank`` gives the same; NIfTI output
    carries the CT grid's placement."""
    d, g, truth = fan_files
    out = tmp_path / "x.nii.gz"
    assert main(["ct", str(d / "counts.npy"), "--geometry", str(d / "geom.json"), "-o", str(out),
                 "--method", "pwls-tv", "-q"]) == 0
    vol, vs, direction, origin = read_nifti(out)
    assert vol.shape == (1, N, N) and np.allclose(vs, [1.0, VS, VS]) and np.allclose(direction, np.eye(3))
    np.testing.assert_allclose(origin, [-(N - 1) / 2 * VS, -(N - 1) / 2 * VS, 0.0], atol=1e-5)
    assert main(["ct", str(d / "counts.npy"), "--geometry", str(d / "geom.json"), "-o", str(tmp_path / "f.h5"),
                 "-q"]) == 0
    fbp = _h5(tmp_path / "f.h5")[0][0]
    assert psnr(vol[0], truth) > psnr(fbp, truth) + 3.0
    assert main(["ct", str(d / "counts.npy"), "--geometry", str(d / "geom_nocounts.json"), "--blank", "5000",
                 "-o", str(tmp_path / "b.nii.gz"), "--method", "pwls-tv", "-q"]) == 0
    np.testing.assert_allclose(read_nifti(tmp_path / "b.nii.gz")[0], vol, atol=1e-6)


def test_piccs_with_a_prior_file(fan_files, tmp_path, capsys):
    """PICCS from the command line with a .npy prior: the registration is reported, the HDF5 holds the
    registered prior, the change map and the alpha map; the lesion the prior lacks is kept."""
    d, g, truth = fan_files
    out = tmp_path / "p.h5"
    assert main(["ct", str(d / "counts.npy"), "--geometry", str(d / "geom.json"), "-o", str(out), "--method",
                 "piccs", "--prior", str(d / "prior.npy"), "--prior-voxel-size", str(VS), str(VS)]) == 0
    text = capsys.readouterr().out
    assert "prior: 2D rigid registration" in text and "changed_fraction" in text
    img, attrs, names = _h5(out)
    assert names == ["alpha", "change_map", "prior_registered", "reconstruction"]
    assert attrs["alpha"] == 0.9 and attrs["change_aware"] and attrs["registration"].startswith("2D rigid")
    with h5py.File(out, "r") as f:
        alpha = f["alpha"][0]
    assert alpha.min() == 0.0 and alpha.max() == pytest.approx(0.9) and np.mean(alpha < 0.45) < 0.1


# ---- errors and the output rules ------------------------------------------------------------------------

def test_bad_files_give_one_error_line(fan_files, helical_folder, tmp_path, capsys):
    d, g, truth = fan_files
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    bad_folder = tmp_path / "ctpd"
    shutil.copytree(helical_folder, bad_folder)
    first = sorted(os.listdir(bad_folder))[0]
    (bad_folder / first).write_bytes((bad_folder / first).read_bytes()[:400])  # truncated view
    geom = json.loads((d / "geom.json").read_text())
    geom["det_count"] = -3
    (tmp_path / "bad.json").write_text(json.dumps(geom))
    cases = [
        (["ct", str(tmp_path / "bad.npy"), "--geometry", str(d / "geom.json"), "-o", "o.h5"], "not a readable .npy"),
        (["ct", str(bad_folder), "-o", "o.h5"], first),
        (["ct", str(d / "counts.npy"), "-o", "o.h5"], "needs a geometry file"),
        (["ct", str(d / "counts.npy"), "--geometry", str(tmp_path / "bad.json"), "-o", "o.h5"], "det_count"),
        (["ct", "--sample", "htc2022", "-o", "o.h5", "--method", "net", "--weights", "nope"], "no weights 'nope'"),
        (["ct", "--sample", "htc2022", "-o", "o.h5", "--method", "piccs"], "needs --prior"),
        (["ct", "--sample", "htc2022", "-o", "o.h5", "--alpha", "2"], "alpha (--alpha)"),
        (["ct", "--sample", "htc2022", "-o", "o.txt"], "unknown extension"),
    ]
    for i, (args, message) in enumerate(cases):
        if i < 2:  # a fresh interpreter: no traceback, whatever is imported
            r = _run_cli(args, tmp_path)
            rc, err = r.returncode, r.stderr
        else:
            cwd = os.getcwd()
            os.chdir(tmp_path)
            try:
                rc = main(args)
            finally:
                os.chdir(cwd)
            err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("recon: warning:")]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("recon: error:"), (args, err)
        assert message in lines[0], (message, lines[0])
        assert "Traceback" not in err
    assert not (tmp_path / "o.h5").exists()


def test_never_over_an_input_and_all_or_nothing(fan_files, helical_folder, tmp_path):
    """The output may not be an input, lie inside an input folder, or replace an existing file without
    --overwrite; a run that fails leaves neither outputs nor temporaries behind."""
    d, g, truth = fan_files
    src = tmp_path / "counts.h5"
    with h5py.File(src, "w") as f:
        f["counts"] = np.load(d / "counts.npy")
    before = src.read_bytes()
    with pytest.raises(ValueError, match="never writes over its input"):
        main_raise(["ct", str(src), "--geometry", str(d / "geom.json"), "-o", str(src), "--overwrite"])
    assert src.read_bytes() == before
    with pytest.raises(ValueError, match="inside the input folder"):
        main_raise(["ct", str(helical_folder), "-o", str(helical_folder / "x.h5"), "--image-size", "16"])
    out = tmp_path / "x.h5"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        main_raise(["ct", str(src), "--geometry", str(d / "geom.json"), "-o", str(out)])
    assert out.read_bytes() == b"keep"
    # a failure inside the reconstruction (the prior lies outside the grid): nothing written
    far = ct.PriorImage(np.ones((1, 8, 8), np.float32), (1.0, 1.0, 1.0), np.eye(3), np.array([5000.0, 0, 0]))
    np.save(tmp_path / "far.npy", far.image)
    with pytest.raises(ValueError):
        main_raise(["ct", str(src), "--geometry", str(d / "geom.json"), "-o", str(tmp_path / "y.h5"), "--method",
                    "piccs", "--prior", str(tmp_path / "far.npy"), "--prior-voxel-size", "0.01", "0.01", "0.01",
                    "--register", "none"])
    assert sorted(os.listdir(tmp_path)) == ["counts.h5", "far.npy", "x.h5"]
    assert main(["ct", str(src), "--geometry", str(d / "geom.json"), "-o", str(out), "--overwrite", "-q"]) == 0
    assert _h5(out)[0].shape == (1, N, N)


def main_raise(argv):
    """Run ``recon ct`` in-process with its exception raised (RECON_DEBUG), warnings silenced."""
    old = os.environ.get("RECON_DEBUG")
    os.environ["RECON_DEBUG"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return main(argv + ["-q"])
    finally:
        if old is None:
            del os.environ["RECON_DEBUG"]
        else:
            os.environ["RECON_DEBUG"] = old
