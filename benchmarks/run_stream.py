"""Streaming benchmark: ``recon serve`` on loopback, driven by ``recon send`` (Python API).

    python benchmarks/run_stream.py            # full run (a few minutes on 2 cores)
    python benchmarks/run_stream.py --quick    # short streams (checks the runner)
    python benchmarks/run_stream.py --cases realtime-phantom,cartesian --no-write

Cases (each replayed at scanner pace, ``--interval-ms`` per acquisition, and as fast as possible):

* ``realtime-cardiac``: the bundled real radial cardiac data (12 coils, 25 spokes of 256 samples,
  256^2) replayed 40 times as one continuous stream (1000 spokes), config ``recon-realtime`` with 5
  new spokes per frame and a 20-spoke window; scanner pace 20 ms per spoke = 10 frames/s.
* ``realtime-phantom``: a simulated 2D golden-angle acquisition (textured phantom, 256^2, 8 coils,
  512 samples per spoke, 800 spokes; the geometry of issue 13's 2D real-time target), 8 new spokes per
  frame, 24-spoke window; scanner pace 12.5 ms per spoke = 10 frames/s.
* ``cartesian``: a fastMRI-like Cartesian scan (320 x 320, 8 coils, 4 slices, every 4th line plus
  24 centre lines, noise scans first), configs ``recon-sense`` with recon mri's defaults and with
  ``maps=lowres, iters=10``; scanner pace 5 ms per line.
* ``4d``: the 4D sample with config ``recon-4d`` when both exist (skipped, with a note, otherwise).
* ``clients``: 4 clients at once (2 Cartesian SENSE, 1 zero-filled, 1 real-time cardiac), errors counted.

Measured per image at the client: latency = time from sending the acquisition that completed the
image (``recon.last_scan_counter`` in its meta) to receiving the image (p50 / p95 / max), frames (or
slices) made per second of stream, and frames dropped by the server. Targets (issue 15): real-time
frames >= 10 frames/s with p95 latency <= 100 ms on 2 cores; a 320 x 320 8-coil SENSE slice
<= 0.5 s after its last line; 4 clients at once without errors. The machine's load average is
printed before and after: on a shared machine the numbers are only indicative.

Results: printed, written as section "## Streaming" of benchmarks/results/cpu.md (other sections
kept) and benchmarks/results/stream_cpu.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)
from recon.bench.report import cpu_model, replace_section, write_text_atomic  # noqa: E402
import recon  # noqa: E402

ROOT = Path(recon.__file__).resolve().parents[1]  # the recon the server subprocess must import too

TITLE = "## Streaming"


# ---- the server ------------------------------------------------------------------------------------------


class Server:
    """``recon serve --port 0`` in a subprocess (as it runs in production)."""

    def __init__(self, spool, max_connections=4):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "recon.cli", "serve", "--port", "0", "--spool", str(spool),
                                      "--max-connections", str(max_connections)], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=os.path.dirname(str(spool)))
        for line in self.proc.stdout:
            if "listening on" in line:
                self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                break
        else:
            raise RuntimeError("recon serve did not start")
        self._drain = threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True)
        self._drain.start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(120)
        self._drain.join(10)
        self.proc.stdout.close()


# ---- data -------------------------------------------------------------------------------------------------


def cardiac_stream(repeats: int):
    """The bundled radial cardiac acquisitions repeated ``repeats`` times (scan counters renumbered)."""
    from recon.data import path
    from recon.io import Acquisitions, RawData, read_raw

    raw = read_raw(path("cardiac-radial"))
    a = raw.acquisitions
    head = np.concatenate([a.head] * repeats)
    head["scan_counter"] = np.arange(len(head))
    flags_last = np.uint64(1 << 24)  # ACQ_LAST_IN_MEASUREMENT only on the very last one
    head["flags"] &= ~flags_last
    head["flags"][-1] |= flags_last
    return RawData(raw.header, source="stream", acquisitions=Acquisitions(head, list(a.data) * repeats,
                                                                            list(a.traj) * repeats))


def phantom_file(folder, n_spokes: int) -> str:
    from fastmri_data import simulate_coil_maps
    from recon.io import write_ismrmrd
    from recon.mri.simulate import simulate_noncartesian, textured_phantom
    from recon.mri.trajectory import radial_2d

    N = 256
    img = textured_phantom(1, N, N)[0]
    maps = simulate_coil_maps((N, N), num_coils=8)
    coord = radial_2d(n_spokes, 2 * N, N)
    y = simulate_noncartesian(img, maps, coord, noise_std=0.002 * float(np.abs(img).max()), seed=1)
    p = os.path.join(folder, "phantom_radial.h5")
    write_ismrmrd(p, samples=y, trajectory=coord, image_shape=(N, N), fov_mm=(5.0, 256.0, 256.0))
    return p


def cartesian_file(folder, slices: int) -> str:
    from fastmri_data import phantom, simulate_coil_maps
    from recon.io import write_ismrmrd

    n, rng = 320, np.random.default_rng(0)
    img = phantom(slices, n, n)
    maps = simulate_coil_maps((n, n), num_coils=8)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img[:, None] * maps, axes=(-2, -1)), norm="ortho"),
                        axes=(-2, -1)).astype(np.complex64)
    k += 1e-3 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)).astype(np.complex64)
    mask = np.zeros((1, 1, n), bool)
    mask[..., ::4] = True
    mask[..., n // 2 - 12:n // 2 + 12] = True
    noise = 1e-3 * (rng.standard_normal((8, 1024)) + 1j * rng.standard_normal((8, 1024))).astype(np.complex64)
    p = os.path.join(folder, "cartesian_320.h5")
    write_ismrmrd(p, k, mask=mask, noise=noise, fov_mm=(5.0, 220.0, 220.0))
    return p


# ---- one replay --------------------------------------------------------------------------------------------


def replay(port, source, config, params=None, interval_ms=None):
    from recon.stream import send

    t0 = time.monotonic()
    res = send(source, port=port, config=config, params=params, interval_ms=interval_ms, timeout=1800)
    lat = res.latencies_ms
    dropped = max((int(m.get("recon.frames_dropped", 0)) for m in res.meta), default=0)
    stream_s = max(max(res.send_times.values(), default=t0) - t0, 1e-9)
    return {"images": len(res.images), "dropped": dropped, "errors": len(res.errors) + (res.error is not None),
            "stream_s": round(stream_s, 3), "wall_s": round(time.monotonic() - t0, 3),
            "images_per_s": round(len(res.images) / max(res.finished - t0, 1e-9), 2),
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "max_ms": float(lat.max()) if lat.size else None,
            "pace_ms": interval_ms}


def _pct(a, q):
    return float(np.percentile(a, q)) if np.size(a) else None


def run_case(port, name, source, config, params, pace_ms, quick):
    rows = []
    for pace in (pace_ms, None):
        r = replay(port, source, config, params, pace)
        r.update(case=name, config=config, params=params or {})
        rows.append(r)
        pace_s = f"{pace} ms" if pace else "max"
        print(f"{name:18s} {pace_s:>8s}: {r['images']:4d} images ({r['dropped']} dropped, {r['errors']} errors) "
              f"{r['images_per_s']:6.1f}/s  latency p50 {_f(r['p50_ms'])} p95 {_f(r['p95_ms'])} max {_f(r['max_ms'])} ms",
              flush=True)
    return rows


def _f(v):
    return "   -" if v is None else f"{v:6.0f}"


def run_clients(port, cart, cardiac):
    from recon.stream import send

    jobs = [(cart, "recon-sense", {"maps": "lowres", "iters": 10}), (cart, "recon-sense", None),
            (cart, "recon-zf", None), (cardiac, "recon-realtime", {"spokes_per_frame": 5, "window": 20})]
    out = [None] * len(jobs)
    t0 = time.monotonic()

    def go(i):
        src, cfg, params = jobs[i]
        out[i] = send(src, port=port, config=cfg, params=params, timeout=1800)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = sum(len(r.errors) + (r.error is not None) + (not r.closed) for r in out)
    row = {"case": "clients", "clients": len(jobs), "errors": errors, "images": sum(len(r.images) for r in out),
           "wall_s": round(time.monotonic() - t0, 2)}
    print(f"{'4 clients':18s}: {row['images']} images, {errors} errors, {row['wall_s']} s", flush=True)
    return [row]


# ---- report ------------------------------------------------------------------------------------------------


def markdown(rows, meta) -> str:
    intro = (f"`python benchmarks/run_stream.py{' --quick' if meta['quick'] else ''}` on {meta['date']}: "
             f"{meta['cpu']}, {meta['cores']} cores, load average {meta['load_before']} before and "
             f"{meta['load_after']} after (1/5/15 min). Latency: the acquisition that completed an image sent -> "
             "the image received, at the client, over loopback.")
    out = [TITLE, "", intro, "",
           "| case | config (parameters) | pace | images | dropped | images/s | p50 ms | p95 ms | max ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["case"] == "clients":
            continue
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        pace = f"{r['pace_ms']} ms/acq" if r["pace_ms"] else "as fast as possible"
        out.append(f"| {r['case']} | {r['config']}{f' ({params})' if params else ''} | {pace} | {r['images']} | "
                   f"{r['dropped']} | {r['images_per_s']:.1f} | {_f(r['p50_ms']).strip()} | {_f(r['p95_ms']).strip()} | "
                   f"{_f(r['max_ms']).strip()} |")
    for r in rows:
        if r["case"] == "clients":
            out += ["", (f"{r['clients']} clients at once: {r['images']} images, {r['errors']} errors, "
                         f"{r['wall_s']} s.")]
    for note in meta.get("notes", []):
        out += ["", note]
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short streams")
    ap.add_argument("--cases", default="realtime-cardiac,realtime-phantom,cartesian,4d,clients")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cases = [c for c in args.cases.split(",") if c]
    load_before = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(os.path.join(tmp, "spool"))
        try:
            cardiac = cardiac_stream(8 if args.quick else 40)
            if "realtime-cardiac" in cases:
                rows += run_case(server.port, "realtime-cardiac", cardiac, "recon-realtime",
                                 {"spokes_per_frame": 5, "window": 20}, 20.0, args.quick)
            if "realtime-phantom" in cases:
                p = phantom_file(tmp, 160 if args.quick else 800)
                rows += run_case(server.port, "realtime-phantom", p, "recon-realtime",
                                 {"spokes_per_frame": 8, "window": 24}, 12.5, args.quick)
            cart = cartesian_file(tmp, 1 if args.quick else 4)
            if "cartesian" in cases:
                rows += run_case(server.port, "cartesian", cart, "recon-sense", None, 5.0, args.quick)
                rows += run_case(server.port, "cartesian", cart, "recon-sense", {"maps": "lowres", "iters": 10}, 5.0,
                                 args.quick)
            if "4d" in cases:
                from recon.data import SAMPLES
                from recon.stream.pipelines import available

                four_d = [s for s in SAMPLES if "4d" in s.lower() or "resp" in s.lower()]
                if four_d and "recon-4d" in available():
                    from recon.data import path

                    rows += run_case(server.port, f"4d ({four_d[0]})", path(four_d[0]), "recon-4d", None, 5.0,
                                     args.quick)
                else:
                    missing = [what for what, ok in (("no 4D sample (`recon mri --list-samples` names none)", four_d),
                                                     ("config recon-4d not available yet", "recon-4d" in available()))
                               if not ok]
                    notes.append(f"4D: {'; '.join(missing)}; not measured.")
                    print(notes[-1])
            if "clients" in cases:
                rows += run_clients(server.port, cart, cardiac)
        finally:
            server.stop()
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "quick": args.quick, "load_before": load_before,
            "load_after": " / ".join(f"{v:.1f}" for v in os.getloadavg()), "notes": notes}
    md = markdown(rows, meta)
    print()
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        replace_section(RESULTS / "cpu.md", md, TITLE)
        write_text_atomic(RESULTS / "stream_cpu.json", json.dumps({"meta": meta, "results": rows}, indent=1))
        print(f"wrote {RESULTS / 'cpu.md'} and {RESULTS / 'stream_cpu.json'}")
    return rows


if __name__ == "__main__":
    main()
