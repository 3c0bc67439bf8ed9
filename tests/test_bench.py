"""``recon bench`` (recon.bench): one ``recon bench --quick`` run (shared by the module; the command CI
must run in under 2 minutes, here with one peer per part and one thread) writes a report
whose structure and numbers are checked (machine, one section per part, tables, plots, results.json
with positive times and finite errors for recon and the peers); a part that is missing is skipped with
its reason and one that raises fails alone; usage errors are one line; the runners in benchmarks/ are
thin wrappers over recon.bench (the same functions, not copies)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types

import pytest

import recon
from recon.bench import PARTS, Context, Section, run_part
from recon.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recon.__file__)))
RUN = ["nufft", "ct-projectors", "mri", "ct", "nets", "stream"]
PEERS = {"nufft": "finufft", "ct-projectors": "astra", "mri": "sigpy", "ct": "astra"}


def _installed(name):
    try:
        __import__(name)
    except Exception:  # noqa: BLE001 - a peer that does not import is not installed
        return False
    return True


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """``recon bench --quick`` over every part that exists (and ``stream``, which does not yet) with
    one peer per part, in a subprocess with one thread: (report folder, report.md text, results.json)."""
    out = tmp_path_factory.mktemp("bench") / "report"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "recon.cli", "bench", "--quick", "--parts", ",".join(RUN),
                        "--peers", "finufft,astra,sigpy", "--threads", "1", "-o", str(out)],
                       env=env, capture_output=True, text=True, timeout=600, cwd=str(out.parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {out / 'report.md'}"
    return out, (out / "report.md").read_text(), json.loads((out / "results.json").read_text())


def test_report_has_the_machine_and_every_part(report):
    out, md, res = report
    assert md.startswith("# recon benchmark report (CPU)")
    assert "## Machine" in md and "| CPU |" in md and "| GPU |" in md and "| cores |" in md
    assert f"numpy {__import__('numpy').__version__}" in md and f"recon {recon.__version__}" in md
    m = res["machine"]
    assert m["cores"] >= 1 and m["usable_cores"] >= 1 and m["cpu"] and m["versions"]["recon"] == recon.__version__
    assert res["scale"] == "quick" and res["device"] == "cpu"
    assert [p["key"] for p in res["parts"]] == RUN
    for p in res["parts"]:
        assert f"## {p['title']}" in md
        assert f"| {p['title']} | {p['status']} |" in md  # the summary table


def test_every_part_that_exists_has_real_numbers(report):
    """Times positive and finite, errors finite (and >= 0) or PSNR finite, ratios against recon's own
    time (recon's rows 1), recon and the part's peer both present; the Markdown table has a line per row."""
    out, md, res = report
    parts = {p["key"]: p for p in res["parts"]}
    for key in ("nufft", "ct-projectors", "mri", "ct", "nets"):
        p = parts[key]
        assert p["status"] == "ok", (key, p["note"])
        assert p["rows"] and p["seconds"] > 0
        libs = {r["library"] for r in p["rows"]}
        assert "recon" in libs
        if key in PEERS and _installed(PEERS[key]):
            assert PEERS[key] in libs, key
        assert libs <= {"recon", "finufft", "astra", "sigpy"}, libs  # --peers is obeyed
        for r in p["rows"]:
            assert math.isfinite(r["time_s"]) and r["time_s"] > 0, (key, r)
            if "error" in r:
                assert math.isfinite(r["error"]) and 0 <= r["error"] < 1, (key, r)
            else:
                assert math.isfinite(r["psnr"]) and r["psnr"] > 10, (key, r)
            if r["library"] == "recon" and "ratio" in r:
                assert r["ratio"] == pytest.approx(1.0)
        section = md.split(f"## {p['title']}\n", 1)[1].split("\n## ", 1)[0]
        table_lines = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| case |")
                       and not ln.startswith("| size |")]
        assert len(table_lines) >= len([r for r in p["rows"] if not r.get("sweep")]), key


def test_plots_are_pngs_linked_from_the_report(report):
    out, md, res = report
    for p in res["parts"]:
        if p["status"] != "ok":
            assert not p["plots"]
            continue
        assert len(p["plots"]) == 2, p["key"]  # time vs size, accuracy vs time
        for path in p["plots"]:
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
            assert f"]({os.path.basename(path)})" in md
            assert os.path.dirname(path) == str(out)


def test_missing_part_is_skipped_with_its_reason(report):
    out, md, res = report
    stream = next(p for p in res["parts"] if p["key"] == "stream")
    assert stream["status"] == "skipped" and "no benchmark module recon.bench.stream" in stream["note"]
    assert "*skipped*: no benchmark module recon.bench.stream" in md


def test_a_failing_part_fails_alone(monkeypatch):
    """A part that raises is reported ``failed`` with its error's first line; one whose module says it
    cannot run is ``skipped`` with the reason."""
    boom = types.ModuleType("_bench_boom")
    boom.bench = lambda ctx: (_ for _ in ()).throw(RuntimeError("no data\nmore"))
    shy = types.ModuleType("_bench_shy")
    shy.unavailable = lambda ctx: "needs a GPU"
    shy.bench = lambda ctx: Section("shy", "Shy")
    monkeypatch.setitem(sys.modules, "_bench_boom", boom)
    monkeypatch.setitem(sys.modules, "_bench_shy", shy)
    monkeypatch.setitem(PARTS, "boom", ("Boom", "_bench_boom"))
    monkeypatch.setitem(PARTS, "shy", ("Shy", "_bench_shy"))
    monkeypatch.delenv("RECON_DEBUG", raising=False)
    sec = run_part("boom", Context(scale="tiny"))
    assert (sec.status, sec.note, sec.title) == ("failed", "RuntimeError: no data", "Boom")
    sec = run_part("shy", Context(scale="tiny"))
    assert (sec.status, sec.note) == ("skipped", "needs a GPU")


def test_bench_usage_errors(tmp_path, capsys, monkeypatch):
    """One error line and exit 1, before any benchmark runs."""
    monkeypatch.delenv("RECON_DEBUG", raising=False)
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.md").write_text("")
    cases = [
        (["--parts", "nufft,warp", "-o", tmp_path / "r"], "unknown part"),
        (["--quick", "--scale", "tiny", "-o", tmp_path / "r"], "disagree"),
        (["-o", tmp_path / "old"], "--overwrite"),
        (["-o", tmp_path / "file.txt"], "is a file"),
        (["--threads", "0", "-o", tmp_path / "r"], "--threads"),
    ]
    if not recon.cuda_available():
        cases.append((["--device", "cuda", "-o", tmp_path / "r"], "--device cuda"))
    for args, msg in cases:
        assert main(["bench"] + [str(a) for a in args]) == 1, args
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("recon: error: ") and msg in lines[0], (args, lines)
    assert not (tmp_path / "r").exists()


def test_benchmark_runners_are_thin_wrappers():
    """benchmarks/run_*.py, nufft_peers.py and gpu.py use recon.bench's functions (the same objects,
    not copies) and keep their command lines."""
    code = """
import sys
sys.path.insert(0, %r)
import nufft_peers, run_ct, run_ldct, run_mri, gpu
import recon.bench.nufft as N, recon.bench.ct_projectors as P, recon.bench.ct_recon as C, recon.bench.mri as M
import recon.bench.nufft_gpu as G
assert nufft_peers.build_problem is N.build_problem and nufft_peers.calibrate is N.calibrate
assert run_ct.make_geometry is P.make_geometry and run_ct.run_case is P.run_case
assert run_ldct.build_case is C.build_case and run_ldct.methods is C.methods
assert run_mri.synthetic_case is M.synthetic_case and run_mri.run_method is M.run_method
assert gpu.main is G.main
for m in (run_ct, run_ldct, run_mri, gpu):
    sys.argv = [m.__file__, "--help"]
    try:
        m.main()
    except SystemExit as e:
        assert e.code == 0, m
print("ok")
"""
    benchmarks = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    r = subprocess.run([sys.executable, "-c", code % benchmarks], cwd=os.path.dirname(os.path.abspath(__file__)),
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr
