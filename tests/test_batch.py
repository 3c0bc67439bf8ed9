"""Many inputs (recon.batch, ``recon mri|ct INPUTS... -o OUTDIR``): local Dask workers, a separately
started ``dask scheduler`` + 2 ``dask worker`` processes on loopback (one per module, shared by the
tests), a corrupt file in the batch, resume after a killed run, a worker killed mid-run, and outputs
identical to the serial run (bit for bit: every run here gives each file one thread for recon's kernels
and numpy's BLAS, as the workers have; see docs/batch.md)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import recon
from fastmri_data import generate_sample
from recon.batch import (
    Job,
    Record,
    execute,
    expand_inputs,
    read_summary,
    run_jobs,
    write_summary,
)
from recon.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recon.__file__)))
ONE_THREAD = {"RECON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
N_FILES = 6


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    env.pop("RECON_DEBUG", None)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _recon(args, cwd, **env):
    """``python -m recon.cli ARGS`` in a subprocess (one thread per kernel pool, like a worker)."""
    return subprocess.run([sys.executable, "-m", "recon.cli"] + [str(a) for a in args], cwd=cwd, check=False,
                          env=_env(**ONE_THREAD, **env), capture_output=True, text=True, timeout=300)


def _wait(predicate, timeout=120.0, what="condition"):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def _volume(path):
    with h5py.File(path, "r") as f:
        return f["reconstruction"][()]


def _summary(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _outputs(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".h5"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six tiny fastMRI files (2 slices of 32 x 32, 4 coils) in a folder, and their serial reconstruction."""
    d = tmp_path_factory.mktemp("batch")
    (d / "scans").mkdir()
    for i in range(N_FILES):
        generate_sample(str(d / "scans" / f"scan{i}.h5"), num_slices=2, shape=(32, 32), num_coils=4, noise_std=0.01,
                        seed=i)
    r = _recon(["mri", "scans", "-o", "serial", "--iters", "8"], d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes on loopback (free ports), torn down after
    the module: yields the scheduler's address."""
    d = tmp_path_factory.mktemp("cluster")
    env = _env()
    procs = []

    def start(*args):
        with open(d / f"{args[0]}{len(procs)}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "dask"] + list(args), cwd=d, env=env,
                                          start_new_session=True, stdout=subprocess.DEVNULL, stderr=log))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
              str(d / "scheduler.json"))
        _wait(lambda: (d / "scheduler.json").exists() and (d / "scheduler.json").stat().st_size > 0, 60,
              "the scheduler file")
        address = json.loads((d / "scheduler.json").read_text())["address"]
        for name in ("w1", "w2"):
            start("worker", address, "--nthreads", "1", "--no-dashboard", "--name", name, "--host", "127.0.0.1")
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in procs:
            _stop(p)


def _stop(p):
    """Stop a process group started here: SIGTERM, then SIGKILL after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if p.poll() is not None:
            break
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            continue


def _same_as_serial(d, out, names=None):
    names = names or [f"scan{i}_sense.h5" for i in range(N_FILES)]
    for n in names:
        a, b = _volume(d / "serial" / n), _volume(d / out / n)
        assert np.array_equal(a, b), n


# ---- the inputs --------------------------------------------------------------------------------------

def test_expand_inputs(tmp_path):
    """Files as given, folders' accepted files (sorted, hidden ones left out), globs (also recursive),
    folders that are one input, each path once; a missing path or empty match is an error."""
    for rel in ("a/1.h5", "a/2.h5", "a/.hidden.h5", "a/notes.txt", "a/sub/3.h5", "b/4.h5", "series/x.dcm"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    t = str(tmp_path)
    h5 = lambda p: p.endswith(".h5")
    unit = lambda p: p.endswith("series")
    got = expand_inputs([f"{t}/a", f"{t}/b/4.h5", f"{t}/a/1.h5", f"{t}/a/notes.txt"], accept=h5)
    assert got == [f"{t}/a/1.h5", f"{t}/a/2.h5", f"{t}/b/4.h5", f"{t}/a/notes.txt"]
    assert expand_inputs([f"{t}/**/*.h5"], accept=h5) == [f"{t}/a/1.h5", f"{t}/a/2.h5", f"{t}/a/sub/3.h5",
                                                          f"{t}/b/4.h5"]
    assert expand_inputs([t], accept=h5, is_unit=unit) == [f"{t}/series"]
    assert expand_inputs([f"{t}/series"], accept=h5, is_unit=unit) == [f"{t}/series"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_inputs([f"{t}/missing.h5"], accept=h5)
    with pytest.raises(FileNotFoundError, match="matches"):
        expand_inputs([f"{t}/*.nii"], accept=h5)
    with pytest.raises(ValueError, match="no input files"):
        expand_inputs([f"{t}/series"], accept=h5)


def _square(args):
    if args < 0:
        raise ValueError(f"negative input {args}\nsecond line")
    return {"method": "square", "output": str(args * args), "metrics": {"value": args * args}}


def test_run_jobs_in_process_and_summary(tmp_path):
    """The Python API: a failing job fails alone (first line of its error), records keep the jobs' order,
    ``skip_existing`` skips complete jobs and keeps an earlier run's metrics; the summary CSV round trip."""
    done = tmp_path / "done.txt"
    done.write_text("")
    jobs = [Job("a", (str(tmp_path / "a.out"),), 2), Job("b", (), -1), Job("c", (str(done),), 3)]
    seen = []
    recs = run_jobs(_square, jobs, on_record=seen.append)
    assert [r.status for r in recs] == ["ok", "failed", "ok"] and len(seen) == 3
    assert recs[0].metrics == {"value": 4.0} and recs[1].error == "negative input -1" and recs[0].worker == "local"
    assert all(r.seconds >= 0 for r in recs)
    write_summary(tmp_path / "s.csv", recs)
    back = read_summary(tmp_path / "s.csv")
    assert back["a"].metrics == {"value": 4.0} and back["b"].status == "failed" and back["c"].output == "9"
    again = run_jobs(_square, jobs, skip_existing=True, previous=back)
    assert [r.status for r in again] == ["ok", "failed", "skipped"] and again[2].metrics == {"value": 9.0}
    assert execute(_square, Job("x", (), 5)).output == "25"
    with pytest.raises(ValueError, match="not both"):
        run_jobs(_square, jobs, workers=2, scheduler="tcp://127.0.0.1:1")


# ---- local workers and a running cluster ------------------------------------------------------------

def test_local_workers_give_the_serial_outputs(data):
    """``--workers 2``: a LocalCluster of 2 processes; the same outputs as the serial run, bit for bit;
    the summary CSV lists every file as reconstructed by a worker."""
    r = _recon(["mri", "scans/*.h5", "-o", "local", "--iters", "8", "--workers", "2"], data)
    assert r.returncode == 0, r.stderr
    assert "6 reconstructed, 0 skipped, 0 failed" in r.stdout and "2 local workers" in r.stdout
    _same_as_serial(data, "local")
    rows = _summary(data / "local" / "recon_mri_summary.csv")
    assert [row["file"] for row in rows] == [f"scans/scan{i}.h5" for i in range(N_FILES)]
    assert all(row["status"] == "ok" and row["worker"].startswith("tcp://") and float(row["seconds"]) > 0
               and row["method"] == "sense" for row in rows)


def test_external_scheduler_gives_the_serial_outputs(data, cluster):
    """``--scheduler tcp://...``: two ``dask worker`` processes started apart from recon; same outputs."""
    r = _recon(["mri", "scans", "-o", "cluster", "--iters", "8", "--scheduler", cluster], data)
    assert r.returncode == 0, r.stderr
    _same_as_serial(data, "cluster")
    workers = {row["worker"] for row in _summary(data / "cluster" / "recon_mri_summary.csv")}
    assert workers and all(w.startswith("tcp://127.0.0.1:") for w in workers)


def test_corrupt_file_fails_alone_and_resume_touches_only_it(data, cluster, tmp_path):
    """Five good files and a truncated one: five outputs, one error line naming the bad file, exit 1; a
    re-run with --skip-existing leaves the five outputs untouched and tries only the failed file."""
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(5):
        os.link(data / "scans" / f"scan{i}.h5", scans / f"scan{i}.h5")
    (scans / "bad.h5").write_bytes((data / "scans" / "scan5.h5").read_bytes()[:4000])
    args = ["mri", "scans", "-o", "out", "--iters", "8", "--scheduler", cluster]
    r = _recon(args, tmp_path)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("recon: error: scans/bad.h5: "), r.stderr
    assert _outputs(tmp_path / "out") == [f"scan{i}_sense.h5" for i in range(5)]
    _same_as_serial(data, tmp_path / "out", [f"scan{i}_sense.h5" for i in range(5)])
    stamps = {n: os.stat(tmp_path / "out" / n).st_mtime_ns for n in os.listdir(tmp_path / "out") if n != "recon_mri_summary.csv"}
    r = _recon(args + ["--skip-existing"], tmp_path)
    assert r.returncode == 1 and "0 reconstructed, 5 skipped, 1 failed" in r.stdout, r.stdout + r.stderr
    assert {n: os.stat(tmp_path / "out" / n).st_mtime_ns for n in stamps} == stamps
    rows = {row["file"]: row for row in _summary(tmp_path / "out" / "recon_mri_summary.csv")}
    assert rows["scans/bad.h5"]["status"] == "failed" and "not a readable HDF5 file" in rows["scans/bad.h5"]["error"]
    assert all(rows[f"scans/scan{i}.h5"]["status"] == "skipped" for i in range(5))
    assert all(rows[f"scans/scan{i}.h5"]["output"].endswith(f"scan{i}_sense.h5") for i in range(5))
    assert (data / "scans" / "scan0.h5").read_bytes() == (scans / "scan0.h5").read_bytes()  # inputs untouched


def test_killed_worker_is_replaced(data, cluster, tmp_path):
    """A worker process killed (SIGKILL) while the batch runs: Dask reruns its file on a live worker (the
    nanny restarts the dead one) and the batch completes with the serial outputs."""
    from distributed import Client

    with Client(cluster, timeout="30s") as c:
        pids = c.run(os.getpid)
    proc = subprocess.Popen([sys.executable, "-m", "recon.cli", "mri", "scans", "-o", str(tmp_path / "out"),
                             "--iters", "8", "--scheduler", cluster], cwd=data, env=_env(**ONE_THREAD),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: (tmp_path / "out").is_dir() and any(n.endswith(".png") and not n.startswith(".")
                                                           for n in os.listdir(tmp_path / "out")),
              what="the first output")
        os.kill(min(pids.values()), signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    _same_as_serial(data, tmp_path / "out")
    with Client(cluster, timeout="30s") as c:
        c.wait_for_workers(2, timeout=120)


def test_a_rerun_task_replaces_only_its_own_outputs(data, tmp_path):
    """Dask reruns a task whose worker died after committing its outputs (the race behind "Couldn't
    gather ... rescheduling"): the rerun replaces them, since they did not exist when the batch was
    planned; an output that existed before the batch still needs --overwrite."""
    from recon.batch import plan_jobs
    from recon.cli import build_parser
    from recon.mri.cli import BATCH

    scans = [os.path.join(data, "scans", n) for n in ("scan0.h5", "scan1.h5")]
    out = tmp_path / "out"
    out.mkdir()
    args = build_parser().parse_args(["mri"] + scans + ["-o", str(out) + "/", "--iters", "2", "-q"])
    (out / "scan1_sense.png").write_bytes(b"not ours")  # there before the batch
    jobs = plan_jobs(args, BATCH, scans, str(out) + "/")
    first = [execute(BATCH.run_file, job) for job in jobs]
    assert [r.status for r in first] == ["ok", "failed"] and "exists" in first[1].error
    assert execute(BATCH.run_file, jobs[0]).status == "ok"  # the rerun of a lost task
    assert (out / "scan1_sense.png").read_bytes() == b"not ours"


# ---- interrupted runs --------------------------------------------------------------------------------

def _complete_outputs(folder):
    """Every final output is whole: each .h5 opens, has its preview beside it, and no other output is
    half there; returns the stems done."""
    names = {n for n in os.listdir(folder) if not n.startswith(".")}
    done = set()
    for n in names:
        if n.endswith("_sense.h5"):
            assert n[:-3] + ".png" in names, n
            assert _volume(os.path.join(folder, n)).shape == (2, 32, 32)
            done.add(n[: -len("_sense.h5")])
    assert {n[: -len("_sense.png")] for n in names if n.endswith("_sense.png")} == done
    return done


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_resume_after_an_interrupted_run(data, tmp_path, sig):
    """A serial batch stopped after its first output (SIGKILL: nothing runs after it; SIGINT: Ctrl-C)
    leaves whole outputs only; the re-run with --skip-existing keeps them, removes the killed writer's
    temporaries, finishes the rest and gives the serial outputs."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "recon.cli", "mri", "scans", "-o", str(out), "--iters", "8"],
                            cwd=data, env=_env(**ONE_THREAD), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait(lambda: out.is_dir() and any(n.endswith("_sense.png") and not n.startswith(".") for n in os.listdir(out)),
              what="the first output")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "recon: interrupted" in err
        assert not [n for n in os.listdir(out) if n.startswith(".recon-")]  # Ctrl-C cleans up
    done = _complete_outputs(out)
    assert 1 <= len(done) <= N_FILES
    stamps = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out) if n.endswith(("_sense.h5", "_sense.png"))}
    r = _recon(["mri", "scans", "-o", out, "--iters", "8", "--skip-existing"], data)
    assert r.returncode == 0, r.stderr
    assert f"{N_FILES - len(done)} reconstructed, {len(done)} skipped, 0 failed" in r.stdout
    assert {n: os.stat(out / n).st_mtime_ns for n in stamps} == stamps
    assert not [n for n in os.listdir(out) if n.startswith(".recon-")]
    assert _complete_outputs(out) == {f"scan{i}" for i in range(N_FILES)}
    _same_as_serial(data, out)


# ---- the command line's rules ------------------------------------------------------------------------

def test_batch_usage_errors(data, tmp_path, capsys, monkeypatch):
    """One error line and exit 1, before anything is computed: -o a file name with several inputs, both
    --workers and --scheduler, two inputs with the same output, an output that is another input, --sample."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    os.link(data / "scans" / "scan0.h5", a / "x.h5")
    os.link(data / "scans" / "scan1.h5", b / "x.h5")
    os.link(data / "scans" / "scan2.h5", a / "x_sense.h5")
    monkeypatch.delenv("RECON_DEBUG", raising=False)
    cases = [
        (["mri", a / "x.h5", b / "x.h5", "-o", tmp_path / "o.h5"], "output is a folder"),
        (["mri", a / "x.h5", "-o", tmp_path / "o", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["mri", a / "x.h5", b / "x.h5", "-o", tmp_path / "o"], "would both write"),
        (["mri", a, "-o", a], "never writes over its input"),
        (["mri", "--sample", "brain-poisson", "-o", tmp_path / "o", "--workers", "2"], "--sample"),
        (["mri", a / "x.h5", "-o", tmp_path / "o", "--workers", "0"], "--workers"),
    ]
    for args, msg in cases:
        assert main([str(a) for a in args] + ["-q"]) == 1, args
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("recon: error: ") and msg in lines[0], (args, lines)
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_ct_batch_with_a_shared_geometry(tmp_path):
    """``recon ct`` over a folder of sinogram files with one --geometry: one output per file, equal to the
    one-file command's."""
    from recon import ct
    from recon.io import write_geometry_file

    g = ct.ParallelBeam2D(np.linspace(0, np.pi, 60, endpoint=False), 48, 1.0, (32, 32), 1.0)
    (tmp_path / "sinos").mkdir()
    for i, r in enumerate((8.0, 12.0)):
        sino = ct.analytic_sinogram([ct.Ellipse(0.02, (r, r))], g).astype(np.float32)
        np.save(tmp_path / "sinos" / f"s{i}.npy", sino)
    write_geometry_file(tmp_path / "geom.json", g)
    r = _recon(["ct", "sinos", "--geometry", "geom.json", "-o", "out"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["recon_ct_summary.csv", "s0_fbp.h5", "s0_fbp.png", "s1_fbp.h5",
                                                    "s1_fbp.png"]
    r = _recon(["ct", "sinos/s1.npy", "--geometry", "geom.json", "-o", "one.h5"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(_volume(tmp_path / "one.h5"), _volume(tmp_path / "out" / "s1_fbp.h5"))


def test_records_are_plain_data():
    """Records travel back from workers: plain, picklable dataclasses."""
    import pickle

    rec = Record("f", "ok", 1.5, "sense", "o.h5", {"psnr": 30.0}, "", "local")
    assert pickle.loads(pickle.dumps(rec)) == rec


def test_one_line_warnings_show_one_line_and_restore(capsys, tmp_path):
    """The command line's warnings: one line each (none with -q), and ``warnings.showwarning`` is
    restored afterwards, also after an error and after a whole ``recon mri`` / ``recon ct`` run in this
    process (recon mri used to leave its own in place)."""
    import warnings

    from recon.batch import one_line_warnings

    before = warnings.showwarning
    with one_line_warnings(False):
        warnings.warn("first line\nsecond line")
    assert capsys.readouterr().err == "recon: warning: first line\n"
    with pytest.raises(ValueError), one_line_warnings(True):
        warnings.warn("hidden")
        raise ValueError("boom")
    assert capsys.readouterr().err == "" and warnings.showwarning is before
    assert main(["mri", "--sample", "brain-poisson", "-o", str(tmp_path) + "/", "--method", "zf", "-q"]) == 0
    assert main(["ct", "--sample", "htc2022", "-o", str(tmp_path) + "/", "--method", "fbp", "-q"]) == 0
    assert warnings.showwarning is before
