"""Reliability of file input and output (issue #10): never write over an input, atomic outputs on a
full disk, no hang on a FIFO, nothing read from outside the file, bounded reads.

Each test reproduces a reported failure: it failed before the fix."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from isolated import run_python

import recon
from recon.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recon.__file__)))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RECON_DEBUG", None)
    env.update(extra)
    return env


def _run(args, cwd, *, fsize=None, timeout=120, **env):
    """``python -m recon.cli ARGS`` in a subprocess (with a file size limit of ``fsize`` bytes,
    SIGXFSZ ignored so that writes fail with EFBIG instead of killing the process)."""

    def limit():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "recon.cli"] + [str(a) for a in args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit if fsize else None)


def _one_error_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("recon: error: "), r.stderr
    return lines[0]


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A tiny fastMRI multicoil file (2 slices, 4 coils, 24 x 20)."""
    from fastmri_data import generate_sample

    p = tmp_path_factory.mktemp("scan") / "scan.h5"
    generate_sample(p, num_slices=2, shape=(24, 20), num_coils=4)
    return p


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


# ---- 7: never write over an input; no silent overwrite ---------------------------------------------

def test_output_equal_to_input_is_refused(scan, tmp_path, capsys):
    p = _copy(scan, tmp_path / "scan.h5")
    before = _digest(p)
    os.symlink(p, tmp_path / "link.h5")
    os.link(p, tmp_path / "hard.h5")
    for out in ("scan.h5", "link.h5", "hard.h5", "./scan.h5"):
        for extra in ([], ["--overwrite"]):
            assert main(["mri", str(p), "-o", str(tmp_path / out), "--method", "zf", "-q"] + extra) == 1
            err = capsys.readouterr().err
            assert "never writes over its input" in err and err.count("\n") == 1, (out, err)
    assert _digest(p) == before
    assert sorted(os.listdir(tmp_path)) == ["hard.h5", "link.h5", "scan.h5"]


def test_preview_or_folder_holding_the_input_is_refused(scan, tmp_path, capsys):
    png = _copy(scan, tmp_path / "scan.png")  # a raw file named .png: the preview of -o scan.h5
    before = _digest(png)
    assert main(["mri", str(png), "-o", str(tmp_path / "scan.h5"), "--method", "zf", "-q", "--overwrite"]) == 1
    assert "never writes over its input" in capsys.readouterr().err
    assert _digest(png) == before and not (tmp_path / "scan.h5").exists()
    # an existing folder as -o receives a sub-folder: the input beside it is untouched
    series = tmp_path / "series"
    series.mkdir()
    inside = _copy(scan, series / "raw.h5")
    assert main(["mri", str(inside), "-o", str(series), "--format", "dicom", "--method", "zf", "-q"]) == 0
    assert sorted(os.listdir(series)) == ["raw.h5", "raw_zf", "raw_zf.png"] and _digest(inside) == before
    # the rule itself: an output folder may not hold an input, whatever overwrite says
    from recon.io import check_outputs

    with pytest.raises(ValueError, match="holds the input"):
        check_outputs(folders=[series], inputs=[inside], overwrite=True)
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_outputs([inside.with_suffix(".h5")], inputs=[scan], hint="pass --overwrite")


def test_existing_output_needs_overwrite(scan, tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["mri", str(scan), "-o", str(out), "--method", "zf", "-q"]) == 0
    first = _digest(out)
    (tmp_path / "r.png").write_bytes(b"keep me")
    assert main(["mri", str(scan), "-o", str(out), "--method", "zf", "-q", "--slices", "0"]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and str(tmp_path / "r.") in err
    assert _digest(out) == first and (tmp_path / "r.png").read_bytes() == b"keep me"
    assert main(["mri", str(scan), "-o", str(out), "--method", "zf", "-q", "--slices", "0", "--overwrite"]) == 0
    from recon.io import read_fastmri_reconstruction

    assert read_fastmri_reconstruction(out).shape[0] == 1
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    # a DICOM series folder is replaced as a whole (no stale slices of the longer old series)
    ser = tmp_path / "ser"
    assert main(["mri", str(scan), "-o", str(ser), "--format", "dicom", "--method", "zf", "-q"]) == 0
    assert len(os.listdir(ser)) == 2
    assert main(["mri", str(scan), "-o", str(ser), "--format", "dicom", "--method", "zf", "-q", "--slices", "1"]) == 1
    capsys.readouterr()
    assert main(["mri", str(scan), "-o", str(ser), "--format", "dicom", "--method", "zf", "-q", "--slices", "1",
                 "--overwrite"]) == 0
    assert os.listdir(ser) == ["slice_0000.dcm"]
    assert [n for n in os.listdir(tmp_path) if n.startswith(".recon-")] == []


# ---- 5: a full disk leaves no partial file and no crash --------------------------------------------

@pytest.mark.parametrize("fsize", [2048, 10240])
def test_cli_on_full_disk_exits_cleanly_without_partial_output(scan, tmp_path, fsize):
    r = _run(["mri", scan, "-o", tmp_path / "o.h5", "--method", "zf", "-q"], tmp_path, fsize=fsize)
    line = _one_error_line(r)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    assert "too large" in line.lower() or "errno 27" in line.lower(), line
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


def test_every_writer_on_full_disk_leaves_nothing(tmp_path):
    """Each writer under a 4 KiB file size limit: an OSError and no file (not even a temporary)."""
    code = textwrap.dedent("""
        import json, os, resource, signal, sys
        import numpy as np
        from recon import io as rio
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        rng = np.random.default_rng(0)
        v = rng.random((4, 40, 40)).astype(np.float32)
        k = (rng.standard_normal((2, 4, 32, 32)) + 1j * rng.standard_normal((2, 4, 32, 32))).astype(np.complex64)
        writers = {
            "h5": lambda: rio.write_fastmri_reconstruction("o.h5", v, compression=None),
            "nifti": lambda: rio.write_nifti("o.nii", v, (1, 1, 1)),
            "nifti_gz": lambda: rio.write_nifti("o.nii.gz", rng.random((4, 64, 64)), (1, 1, 1)),
            "dicom": lambda: rio.write_dicom_series("series", v, (1, 1, 1)),
            "png": lambda: rio.write_png("o.png", rng.random((4, 64, 64))),
            "ismrmrd": lambda: rio.write_ismrmrd("raw.h5", k),
        }
        out = {}
        for name, w in writers.items():
            try:
                w()
                out[name] = "wrote"
            except OSError as exc:
                out[name] = "OSError"
            out[name + "_left"] = sorted(os.listdir("."))
        print(json.dumps(out))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "Exception ignored" not in r.stderr, r.stderr
    res = json.loads(r.stdout)
    for name in ("h5", "nifti", "nifti_gz", "dicom", "png", "ismrmrd"):
        assert res[name] == "OSError", (name, res)
        assert res[name + "_left"] == [], (name, res)


def test_output_set_is_all_or_nothing(tmp_path):
    from recon.io import OutputSet, write_png

    (tmp_path / "b.png").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with OutputSet() as out:
            write_png(out.file(tmp_path / "a.png"), np.ones((4, 4)))
            write_png(out.file(tmp_path / "b.png"), np.ones((4, 4)))
            raise RuntimeError("the second output failed")
    assert sorted(os.listdir(tmp_path)) == ["b.png"] and (tmp_path / "b.png").read_bytes() == b"old"
    with pytest.raises(FileExistsError):
        with OutputSet(overwrite=False) as out:
            write_png(out.file(tmp_path / "a.png"), np.ones((4, 4)))
            write_png(out.file(tmp_path / "b.png"), np.ones((4, 4)))
    assert sorted(os.listdir(tmp_path)) == ["b.png"]


# ---- 6: FIFOs, devices and folders are refused before they are opened ------------------------------

def test_fifo_device_and_folder_inputs_are_refused(tmp_path):
    fifo = tmp_path / "scan.h5"
    os.mkfifo(fifo)
    r = _run(["mri", fifo, "-o", tmp_path / "o.h5", "-q"], tmp_path, timeout=60)
    assert "FIFO" in _one_error_line(r)
    for bad in ("/dev/null", str(tmp_path)):
        assert "recon: error" in _one_error_line(_run(["mri", bad, "-o", tmp_path / "o.h5", "-q"], tmp_path))
    # every reader, in a subprocess so that a regression cannot hang the test run
    code = textwrap.dedent(f"""
        import recon.io as rio
        for read in (rio.read_fastmri, rio.read_ismrmrd, rio.read_nifti, rio.read_fastmri_reconstruction,
                     lambda p: rio.read_dicom_series([p]), rio.FastMRIFile):
            try:
                read({str(fifo)!r})
            except ValueError as exc:
                assert "FIFO" in str(exc), exc
            else:
                raise SystemExit("no error")
        print("ok")
    """)
    r = run_python(code, 60, drop=("RECON_DEBUG",))
    assert r.stdout.strip() == "ok", r.stderr


# ---- 8: nothing is read from outside the file --------------------------------------------------------

def _outside_files(tmp_path, scan):
    """fastMRI / ISMRMRD files whose data lie outside them: external storage, external, soft and
    virtual links."""
    from recon.io import write_ismrmrd

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(1024, dtype=np.uint8).tobytes() * 4)
    hdr = h5py.File(scan, "r")["ismrmrd_header"][()]
    files = {}

    def fastmri(name, make):
        p = tmp_path / f"{name}.h5"
        with h5py.File(p, "w") as f:
            make(f)
            f["ismrmrd_header"] = hdr
        files[name] = p

    fastmri("external_storage", lambda f: f.create_dataset("kspace", (1, 2, 8, 8), np.complex64,
                                                            external=[(str(secret), 0, 1024)]))
    fastmri("external_link", lambda f: f.__setitem__("kspace", h5py.ExternalLink(str(scan), "/kspace")))

    def soft(f):
        f["hidden"] = np.ones((1, 2, 8, 8), np.complex64)
        f["kspace"] = h5py.SoftLink("/hidden")

    fastmri("soft_link", soft)

    def virtual(f):
        layout = h5py.VirtualLayout((2, 4, 24, 20), np.complex64)
        layout[:] = h5py.VirtualSource(str(scan), "kspace", shape=(2, 4, 24, 20))
        f.create_virtual_dataset("kspace", layout)

    fastmri("virtual", virtual)
    mrd = write_ismrmrd(tmp_path / "mrd_src.h5", np.ones((1, 2, 8, 8), np.complex64))
    files["ismrmrd_external_group"] = tmp_path / "mrd_link.h5"
    with h5py.File(files["ismrmrd_external_group"], "w") as f:
        f["dataset"] = h5py.ExternalLink(str(mrd), "/dataset")
    files["ismrmrd_external_xml"] = tmp_path / "mrd_xml.h5"
    with h5py.File(files["ismrmrd_external_xml"], "w") as f, h5py.File(mrd, "r") as src:
        g = f.create_group("dataset")
        src.copy(src["dataset/data"], g, "data")
        g["xml"] = h5py.ExternalLink(str(mrd), "/dataset/xml")
    return files


def test_data_outside_the_file_is_refused(scan, tmp_path):
    from recon.io import FastMRIFormatError, IsmrmrdFormatError, read_fastmri, read_ismrmrd

    files = _outside_files(tmp_path, scan)
    for name, p in files.items():
        reader, err = (read_ismrmrd, IsmrmrdFormatError) if name.startswith("ismrmrd") else (read_fastmri,
                                                                                             FastMRIFormatError)
        with pytest.raises(err, match="stored in the file itself") as ei:
            reader(p)
        assert "\n" not in str(ei.value), name
        r = _run(["mri", p, "-o", tmp_path / f"{name}_out.h5", "--method", "zf", "-q"], tmp_path)
        assert "stored in the file itself" in _one_error_line(r), name
        assert not (tmp_path / f"{name}_out.h5").exists()
    # the fastmri_data names are recon.io's (one reader)
    import fastmri_data

    with pytest.raises(fastmri_data.FastMRIFormatError, match="external"):
        fastmri_data.read_fastmri(files["external_link"])
    rec = tmp_path / "rec.h5"
    with h5py.File(rec, "w") as f:
        f.create_dataset("reconstruction", (1, 8, 8), np.float32, external=[(str(tmp_path / "secret.bin"), 0, 256)])
    from recon.io import read_fastmri_reconstruction

    with pytest.raises(ValueError, match="external storage"):
        read_fastmri_reconstruction(rec)


# ---- 9: reads are bounded; only the slices asked for are read ----------------------------------------

def _huge_sparse_fastmri(path, scan, shape):
    """A tiny file declaring a huge ``kspace`` (chunked, no chunk written: HDF5 fills with zeros)."""
    hdr = h5py.File(scan, "r")["ismrmrd_header"][()]
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape, np.complex64, chunks=(1, 1) + tuple(min(s, 64) for s in shape[2:]))
        f["ismrmrd_header"] = hdr
    return path


def test_declared_sizes_are_checked_before_reading(scan, tmp_path):
    from recon.io import FastMRIFile, FastMRIFormatError, read_fastmri, read_raw

    big = _huge_sparse_fastmri(tmp_path / "big.h5", scan, (4, 16, 2**15, 2**15))  # 1 TiB declared
    assert os.path.getsize(big) < 100_000
    f = FastMRIFile(big)
    with pytest.raises(FastMRIFormatError, match="read limit") as ei:
        f.kspace_slice(0)  # 128 GiB for one slice: refused before allocating, by the default limit
    assert "\n" not in str(ei.value)
    with pytest.raises(FastMRIFormatError, match="read limit"):
        read_fastmri(big)
    r = _run(["mri", big, "-o", tmp_path / "o.h5", "--method", "zf", "-q"], tmp_path)
    assert "read limit" in _one_error_line(r)
    # a small explicit limit: one slice of `scan` (4 x 24 x 20 complex64, 15 KiB as read) fits, two do not
    one = 4 * 24 * 20 * 16
    with pytest.raises(FastMRIFormatError, match="read limit"):
        read_fastmri(scan, max_bytes=int(1.5 * one))
    raw = read_raw(scan, max_bytes=int(1.5 * one))
    assert [raw.slices[i].kspace.shape for i in range(2)] == [(4, 24, 20)] * 2  # slice by slice
    r = _run(["mri", scan, "-o", tmp_path / "s.h5", "--method", "zf", "-q", "--slices", "1"], tmp_path,
             RECON_MAX_READ_BYTES=str(int(1.5 * one)))
    assert r.returncode == 0, r.stderr


def test_ismrmrd_counters_implying_huge_kspace_are_refused(tmp_path):
    from recon.io import IsmrmrdFormatError, read_ismrmrd, write_ismrmrd

    k = np.ones((1, 2, 8, 8), np.complex64)
    p = write_ismrmrd(tmp_path / "c.h5", k)
    assert read_ismrmrd(p).kspace.shape[-4:] == (2, 1, 8, 8)
    with pytest.raises(IsmrmrdFormatError, match="read limit"):
        read_ismrmrd(p, max_bytes=1024)
    with h5py.File(p, "r+") as f:  # one acquisition claims repetition and contrast 65535: 2**32 x larger
        d = f["dataset/data"][()]
        d["head"]["idx"]["repetition"][3] = d["head"]["idx"]["contrast"][3] = 65535
        f["dataset/data"][...] = d
    with pytest.raises(IsmrmrdFormatError, match="corrupt counters"):
        read_ismrmrd(p)


# ---- 10, 16: extreme but finite magnitudes; 12: --accel against the matrix --------------------------

@pytest.fixture(scope="module")
def undersampled():
    from fastmri_data import fft2c, simulate_coil_maps

    from recon.mri.simulate import textured_phantom

    k = fft2c(simulate_coil_maps((32, 28), 4) * textured_phantom(1, 32, 28, seed=4)[0]).astype(np.complex64)
    mask = np.zeros(28, bool)
    mask[::2] = True
    mask[10:18] = True
    return k * mask


def test_rss_neither_underflows_nor_overflows():
    torch = pytest.importorskip("torch")
    from recon.mri.coils import rss

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5, 6, 7)) + 1j * rng.standard_normal((5, 6, 7))).astype(np.complex64)
    ref = np.sqrt(np.sum(np.abs(x.astype(np.complex128)) ** 2, axis=0))
    for s in (1e-30, 1.0, 1e30):
        xs = x * np.float32(s)
        for got in (rss(xs), rss(torch.from_numpy(xs)).numpy()):
            np.testing.assert_allclose(got / s, ref, rtol=1e-6)
    assert np.all(rss(np.zeros((3, 2), np.complex64)) == 0)


@pytest.mark.parametrize("method", ["zf", "sense", "cs"])
def test_extreme_magnitudes_reconstruct_like_the_scaled_data(undersampled, method):
    from recon.mri import ReconConfig, reconstruct

    cfg = ReconConfig(method=method, iters=10, quiet=True)
    ref = reconstruct(undersampled, cfg).images[0]
    for s in (1e-30, 1e30):
        got = reconstruct((undersampled * np.float32(s)).astype(np.complex64), cfg).images[0]
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got / np.float32(s), ref, rtol=0, atol=2e-5 * np.abs(ref).max())
    # float32 extremes: denormal data (1e-40) and data next to the largest float (3e38)
    for s in (1e-40 / np.abs(undersampled).max(), 3e38 / np.abs(undersampled).max()):
        got = reconstruct((undersampled * s).astype(np.complex64), cfg).images[0]
        assert np.isfinite(got).all() and np.abs(got).max() > 0
        np.testing.assert_allclose(got.astype(np.complex128) / s, ref, rtol=0, atol=2e-3 * np.abs(ref).max())


def test_sense_api_on_extreme_magnitudes(undersampled):
    from recon.mri import coils
    from recon.mri import recon as R

    maps = coils.estimate_maps(undersampled, "espirit", 16)
    ref = R.cg_sense(undersampled, maps, max_iter=10).image
    for s in (1e-40, 1e-30, 1e30, 3e38 / np.abs(undersampled).max()):
        got = R.cg_sense((undersampled * s).astype(np.complex64), maps, max_iter=10).image
        np.testing.assert_allclose(got.astype(np.complex128) / s, ref, rtol=0, atol=2e-3 * np.abs(ref).max())
    with pytest.raises(ValueError, match="no signal"):
        R.cg_sense(np.zeros_like(undersampled), maps)


def test_accel_is_checked_against_the_matrix(scan, tmp_path):
    for extra in (["random", "--accel", "1e308"], ["equispaced", "--accel", "1000"], ["random", "--accel", "inf"],
                  ["random", "--accel", "nan"], ["equispaced", "--accel", "19"]):
        r = _run(["mri", scan, "--method", "zf", "-q", "-o", tmp_path / "o.h5", "--retrospective-mask"] + extra,
                 tmp_path)
        line = _one_error_line(r)
        assert "--accel" in line and "center-fraction" not in line, (extra, line)
    assert os.listdir(tmp_path) == []


def test_nifti_declaring_a_huge_image_is_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    from recon.io import read_nifti, write_nifti

    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    img.header.set_data_shape((30000, 30000, 30000))
    p = tmp_path / "huge.nii"
    p.write_bytes(img.header.binaryblock + bytes(4) + bytes(32))  # 352 bytes declaring 100 TiB
    with pytest.raises(ValueError, match="read limit"):
        read_nifti(p)
    ok = write_nifti(tmp_path / "ok.nii", np.ones((2, 3, 4)), (1, 1, 1))
    with pytest.raises(ValueError, match="read limit"):
        read_nifti(ok, max_bytes=100)
    assert read_nifti(ok)[0].shape == (2, 3, 4)
