"""The networks on the command line: ``recon train`` (raw MRI folders, image folders, resume,
refusing to overwrite), ``recon mri|ct --method net`` with the shipped weights (quality against
zero-filled / FBP on held-out real images written as raw data files; the bundled samples), the
model-card checks (warnings for another acceleration or geometry, errors for what a model cannot
take) and corrupt weights as one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import recon.nets  # noqa: E402,F401  (registers method 'net' in the pipelines)
from recon.cli import main  # noqa: E402
from recon.nets import evaluate as ev  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_cli import _run_cli  # noqa: E402

TINY_MODL = json.dumps({"features": 4, "layers": 2, "unrolls": 1, "cg_iter": 2})
TINY_LPD = json.dumps({"iterations": 1, "primal": 2, "dual": 2, "features": 4, "layers": 2})


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mr_file(tmp_path_factory):
    """pydicom's MR_small (a real 64x64 MR slice, held out from all training) inside a 96x96 field of
    view as a fully sampled 8-coil fastMRI file (2x readout oversampling, as fastMRI's), and a prior
    of it (shifted, deformed, with a lesion that is new in the file)."""
    from fastmri_data import write_fastmri_multicoil

    d = tmp_path_factory.mktemp("mr")
    img = np.pad(ev.heldout_mri(64)["MR_small"], 16)
    target, prior, _ = ev.prior_case(img)
    write_fastmri_multicoil(d / "mr.h5", target[None], num_coils=8, noise_std=1e-3, readout_oversampling=2)
    np.save(d / "prior.npy", prior)
    return d


def _psnr_line(out: str) -> float:
    return float(re.search(r"PSNR ([0-9.]+) dB", out).group(1))


def test_mri_net_beats_zero_filled_through_the_cli(mr_file, tmp_path, capsys):
    """Retrospective 4x random mask of a real held-out image: the shipped MoDL beats zero-filling by
    more than 3 dB (the CLI scores against the fully sampled image), with and without the prior. (16
    calibration lines: ESPIRiT maps from fewer, at this small matrix, hold every SENSE method back.)"""
    f = str(mr_file / "mr.h5")
    common = ["--retrospective-mask", "random", "--accel", "4", "--center-fraction", "0.16", "-q"]
    assert main(["mri", f, "--method", "zf"] + common) == 0
    zf = _psnr_line(capsys.readouterr().out)
    assert main(["mri", f, "--method", "net", "-o", str(tmp_path / "n.h5")] + common) == 0
    net = _psnr_line(capsys.readouterr().out)
    assert main(["mri", f, "--method", "net", "--prior", str(mr_file / "prior.npy"), "-o", str(tmp_path / "p.h5")]
                + common) == 0
    with_prior = _psnr_line(capsys.readouterr().out)
    assert net > zf + 3.0 and with_prior > zf + 3.0
    from recon.io import read_fastmri_reconstruction

    assert read_fastmri_reconstruction(tmp_path / "n.h5").shape == (1, 96, 96)


@pytest.mark.slow
def test_mri_net_on_the_bundled_samples(tmp_path, capsys):
    """The bundled in-vivo samples (no fully sampled reference): the network runs and says how the
    data differ from its training (2D Poisson-disc sampling; 12 coils and 1/16 of the Nyquist
    spokes); on the brain it lands closer to compressed sensing than zero-filling does."""
    from recon.io import read_fastmri_reconstruction

    out = {}
    for sample, methods, warn in (("brain-poisson", ("zf", "cs", "net"), "2D sampling pattern"),
                                  ("cardiac-radial", ("net",), "spokes / Nyquist spokes")):
        for method in methods:
            assert main(["mri", "--sample", sample, "--method", method, "-o", str(tmp_path / method) + "/"]) == 0
            out[method] = read_fastmri_reconstruction(next((tmp_path / method).glob("*.h5")))[0]
            assert np.isfinite(out[method]).all() and out[method].max() > 0
            shutil.rmtree(tmp_path / method)
        assert warn in capsys.readouterr().err
        if sample == "brain-poisson":
            ref = out["cs"] / out["cs"].max()

            def err(x, ref=ref):
                return np.linalg.norm(x / x.max() - ref)

            assert err(out["net"]) < 0.5 * err(out["zf"])


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory):
    """pydicom's CT_small (a real CT slice, held out) at 10 % dose in the shipped model's fan-beam
    geometry: a line-integral sinogram file with its geometry file, the truth, and a prior (shifted,
    deformed, with a lesion that is new in the scan)."""
    from recon.io import write_geometry_file
    from recon.nets.simulate import CtTask

    d = tmp_path_factory.mktemp("ct")
    model = recon.nets.load("lpd-fan")
    task = CtTask(**{k: v for k, v in model.card["task"].items() if k in CtTask.__dataclass_fields__})
    mu = ev.heldout_ct(task.size)["CT_small"]
    target, prior, _ = ev.prior_case(mu / mu.max())
    s = ev.ct_case(target * mu.max(), task, 0.1)
    np.save(d / "sino.npy", s["sinogram"])
    write_geometry_file(d / "geom.json", task.geometry())
    np.save(d / "prior.npy", prior * mu.max())
    g90 = CtTask(**dict(task.__dict__, views=90))
    np.save(d / "sino90.npy", ev.ct_case(target * mu.max(), g90, 0.1)["sinogram"])
    write_geometry_file(d / "geom90.json", g90.geometry())
    return d, s["image"]


def _ct(path):
    import h5py

    with h5py.File(path, "r") as f:
        return f["reconstruction"][0], dict(f["reconstruction"].attrs)


def test_ct_net_beats_fbp_through_the_cli(ct_files, tmp_path):
    d, truth = ct_files
    args = [str(d / "sino.npy"), "--geometry", str(d / "geom.json"), "-q"]
    assert main(["ct"] + args + ["--method", "fbp", "--filter", "ram-lak", "-o", str(tmp_path / "f.h5")]) == 0
    assert main(["ct"] + args + ["--method", "net", "-o", str(tmp_path / "n.h5")]) == 0
    assert main(["ct"] + args + ["--method", "net", "--prior", str(d / "prior.npy"), "--prior-voxel-size", "1.5",
                                 "1.5", "--register", "none", "-o", str(tmp_path / "p.h5")]) == 0
    fbp, _ = _ct(tmp_path / "f.h5")
    net, attrs = _ct(tmp_path / "n.h5")
    with_prior, _ = _ct(tmp_path / "p.h5")
    assert attrs["method"] == "net" and attrs["weights"] == "lpd-fan"
    q = {k: ev.metrics(truth, x) for k, x in (("fbp", fbp), ("net", net), ("prior", with_prior))}
    assert q["net"]["psnr"] > q["fbp"]["psnr"] and q["net"]["ssim"] > q["fbp"]["ssim"] + 0.01
    assert q["prior"]["psnr"] > q["fbp"]["psnr"] and q["prior"]["ssim"] > q["fbp"]["ssim"] + 0.01


@pytest.mark.slow
def test_card_mismatch_warns_clearly(ct_files, mr_file, tmp_path):
    d, _ = ct_files
    r = _run_cli(["ct", str(d / "sino90.npy"), "--geometry", str(d / "geom90.json"), "--method", "net",
                  "-o", str(tmp_path / "c.h5")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "recon: warning: the geometry differs from the training geometry: sinogram (90, 227) (trained: " \
           "(180, 227))" in r.stderr
    r = _run_cli(["mri", str(mr_file / "mr.h5"), "--method", "net", "--retrospective-mask", "random", "--accel", "16",
                  "--center-fraction", "0.04"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "recon: warning: acceleration" in r.stderr and "outside the range the model was trained on" in r.stderr


def test_inputs_a_model_cannot_take_are_clear_errors(mr_file, tmp_path):
    from recon.geometry import ConeBeam3D
    from recon.nets import reconstruct_ct, reconstruct_mri

    img = ev.heldout_mri(64)["MR_small"]
    _, s = ev.mri_case(img, "cartesian", 4)
    with pytest.raises(ValueError, match="the data have 8 coils"):
        reconstruct_mri(s["kspace"], "modl-cartesian", maps=s["maps"][:6])
    with pytest.raises(ValueError, match="2D"):
        reconstruct_mri(np.zeros((2, 4, 16, 16, 16), np.complex64), "modl-cartesian")
    with pytest.raises(ValueError, match="below the smallest"):
        reconstruct_mri(s["kspace"][:, :8, :8], "modl-cartesian", maps=s["maps"][:, :8, :8])
    with pytest.raises(ValueError, match="trained on noncartesian"):
        reconstruct_mri(s["kspace"], "modl-radial", maps=s["maps"])
    cone = ConeBeam3D(np.linspace(0, 2 * np.pi, 8, endpoint=False), (24, 24), (1.0, 1.0), 100.0, 50.0,
                      image_shape=(8, 8, 8))
    with pytest.raises(ValueError, match="reconstructs 2D images"):
        reconstruct_ct(np.zeros(cone.sino_shape, np.float32), cone, "lpd-fan")
    # through the command line: a prior of another matrix, one line, exit 1
    np.save(tmp_path / "p.npy", np.ones((40, 40), np.float32))
    r = _run_cli(["mri", str(mr_file / "mr.h5"), "--method", "net", "--prior", "p.npy", "-o", "o.h5"], tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "prior (--prior) matrix (40, 40) matches neither the image matrix (192, 96)" in r.stderr
    assert not (tmp_path / "o.h5").exists()


def test_coil_count_and_matrix_through_the_cli(tmp_path, capsys):
    """Another coil count warns (SENSE takes any); a matrix below the model's smallest is one error
    line, exit 1, and no output file."""
    from fastmri_data import write_fastmri_multicoil

    img = np.pad(ev.heldout_mri(64)["MR_small"][::2, ::2], 4)                          # 40 x 40
    write_fastmri_multicoil(tmp_path / "c3.h5", img[None], num_coils=3, noise_std=1e-3)
    write_fastmri_multicoil(tmp_path / "tiny.h5", img[None, 10:22, 10:22], num_coils=4)
    common = ["--method", "net", "--retrospective-mask", "random", "--accel", "4", "--center-fraction", "0.2"]
    assert main(["mri", str(tmp_path / "c3.h5"), "-o", str(tmp_path / "c3o.h5")] + common) == 0
    err = capsys.readouterr().err
    assert "recon: warning: 3 coils; the model was trained on 8-coil data" in err, err
    assert main(["mri", str(tmp_path / "tiny.h5"), "-o", str(tmp_path / "t.h5")] + common) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matrix (12, 12) is below the smallest the model takes (16 x 16)" in err, err
    assert not (tmp_path / "t.h5").exists()


def test_corrupt_weights_are_one_line_errors(mr_file, tmp_path, capsys):
    from recon.nets.weights import resolve

    src = resolve("modl-cartesian")
    shutil.copy(src, tmp_path / "w.safetensors")
    shutil.copy(src[: -len(".safetensors")] + ".json", tmp_path / "w.json")
    with open(tmp_path / "w.safetensors", "r+b") as f:
        f.truncate(1000)
    r = _run_cli(["mri", str(mr_file / "mr.h5"), "-o", "o.h5", "--method", "net", "--weights", "w.safetensors"],
                 tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "does not match its model card" in r.stderr and not (tmp_path / "o.h5").exists()
    w = str(tmp_path / "w.safetensors")
    for args, msg in ((["ct", "--sample", "htc2022", "-q", "--method", "net", "--weights", w],
                       "does not match its model card"),
                      (["mri", str(mr_file / "mr.h5"), "--method", "net", "--weights", "nope"], "no weights 'nope'"),
                      (["mri", str(mr_file / "mr.h5"), "--method", "sense", "--weights", "modl-cartesian"],
                       "weights (--weights) is used by method net")):
        assert main(args + ["-o", str(tmp_path / "o.h5")]) == 1
        err = capsys.readouterr().err
        assert msg in err and err.count("recon: error:") == 1, err


def test_pipelines_need_recon_nets_for_method_net(monkeypatch):
    from recon.ct import pipeline as ctp
    from recon.mri import ReconConfig, reconstruct
    from recon.mri import pipeline as mrip

    monkeypatch.setattr(mrip, "_NET_RUNNER", None)
    monkeypatch.setattr(ctp, "_NET_RUNNER", None)
    k = np.ones((2, 16, 16), np.complex64)
    with pytest.raises(ValueError, match="provided by recon.nets: import recon.nets first"):
        reconstruct(k, ReconConfig(method="net"))


# ---- recon train ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory):
    from fastmri_data import generate_sample

    d = tmp_path_factory.mktemp("raw")
    for i in range(3):
        generate_sample(d / f"f{i}.h5", num_slices=2, shape=(32, 32), num_coils=4, seed=i)
    return d


def test_train_mri_cli_on_a_raw_folder(raw_folder, tmp_path, capsys):
    """A tiny run on fastMRI files (a time limit that stops it after one step, prior model) writes weights + card, log, curves and a
    checkpoint; a second run refuses to overwrite; --resume continues; the weights reconstruct a file."""
    out = tmp_path / "w" / "knee"
    args = ["train", "mri", str(raw_folder), "-o", str(out), "--model", "modl", "--model-config", TINY_MODL,
            "--size", "32", "--time-limit", "0.001", "--steps-per-epoch", "2", "--val-samples", "2",
            "--batch-size", "1", "--prior", "--threads", "1"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    for suffix in (".safetensors", ".json", ".log.csv", ".curves.png", ".checkpoint.safetensors",
                   ".checkpoint.json"):
        assert os.path.isfile(str(out) + suffix), suffix
    card = json.loads((tmp_path / "w" / "knee.json").read_text())
    assert card["training"]["sources"]["raw"]["train_images"] == 4      # 2 files x 2 slices; the 3rd validates
    assert card["training"]["sources"]["raw"]["val_images"] == 2
    assert card["task"]["accelerations"] == [4.0, 8.0] and card["config"]["prior"] is True
    assert card["training"]["total_steps"] == 1                          # stops after the step crossing the limit
    assert main(args) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--resume", "--epochs", "2", "--time-limit", "60"]) == 0
    card = json.loads((tmp_path / "w" / "knee.json").read_text())
    assert card["training"]["total_steps"] == 3                          # resumed: epoch 2's two steps
    assert main(["mri", str(raw_folder / "f0.h5"), "--method", "net", "--weights", str(out) + ".safetensors",
                 "-o", str(tmp_path / "r.h5"), "-q"]) == 0


def test_train_ct_cli_on_an_image_folder(tmp_path):
    """CT images in Hounsfield units (.npy) simulated as low-dose fan-beam scans on the fly."""
    d = tmp_path / "ct"
    d.mkdir()
    mu = ev.heldout_ct(32)["CT_small"]
    for i in range(3):
        np.save(d / f"s{i}.npy", (1000 * (np.roll(mu, 3 * i, 0) / ev.MU_WATER - 1)).astype(np.float32))
    out = tmp_path / "ldct"
    assert main(["train", "ct", str(d), "-o", str(out), "--model", "lpd", "--model-config", TINY_LPD, "--size", "32",
                 "--views", "16", "--voxel-size", "6", "--dose", "0.05", "0.1", "--epochs", "1", "--steps-per-epoch",
                 "1", "--val-samples", "1", "--batch-size", "1", "-q"]) == 0
    card = json.loads((tmp_path / "ldct.json").read_text())
    assert card["task"]["dose_range"] == [0.05, 0.1] and card["task"]["views"] == 16
    assert card["task"]["geometry"]["sino_shape"][0] == 16
    assert card["training"]["sources"]["folder"]["train_images"] + card["training"]["sources"]["folder"][
        "val_images"] == 3


def test_train_cli_bad_arguments(tmp_path, capsys):
    x = str(tmp_path / "x")
    for args, msg in ((["train", "mri", "-o", x], "no training data"),
                      (["train", "mri", str(tmp_path), "-o", x], "no training data"),
                      (["train", "mri", "-o", x, "--sources", "mni,bogus"], "unknown source 'bogus'"),
                      (["train", "ct", "-o", x, "--sources", "ellipses", "--dose", "0.3", "0.1"], "--dose"),
                      (["train", "mri", "-o", x, "--sources", "shepp", "--model-config", "[1]"], "JSON object"),
                      (["train", "mri", "-o", x, "--sources", "shepp", "--resume"], "no checkpoint")):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (args, err)
