#!/usr/bin/env python
"""4D (respiratory-resolved) MRI benchmark: gating, XD-GRASP against the binned baselines, time, MRSIGMA.

    python benchmarks/run_4d.py               # full run (simulates the 192x192x32 timing case first)
    python benchmarks/run_4d.py --quick       # a 16x96x96 timing case instead (checks this script)
    python benchmarks/run_4d.py --no-write    # print only

Cases (seeded, fixed; every readout simulated at its own motion state, docs/dynamic.md):

- ``sample``: the bundled ``abdomen-4d-sos`` (12 x 64 x 64 stack of stars, 4 coils, 128 angles, 38 s, a
  deep breath). Self-gating correlation with the true SI displacement (mean over each angle's
  readouts) and with the bellows; 6 amplitude bins (equal count, outlier breaths rejected); zero-filled,
  CG-SENSE (15 iterations, Tikhonov 1e-3) and XD-GRASP (defaults: ADMM, 30 iterations) on the same data,
  maps and density weights; PSNR of each bin's magnitude against the true image of its mean state
  (``recon.mri.dynamic.evaluate``: least-squares scale, peak of the truth) over the whole volume and
  over the diaphragm slices 4-9; the error (voxels along z) of the diaphragm edge in every bin. Then
  XD-GRASP with a prior without the lesion (the phantom at bin 2's state, ``--prior``'s path:
  ``reconstruct_dynamic(..., DynamicConfig(prior=...))``, weight 0.5): PSNR and the lesion's contrast
  against the liver (1 = the truth's contrast). MRSIGMA: a dictionary from XD-GRASP of the first 70 %
  of the angles, the remaining 30 % matched in segments of <= 0.3 s: correlation and median error
  (mm) of the matched state against the true displacement, and the time per match.
- ``timing``: a 6-bin 4D of a 192 x 192 x 32 stack of stars (600 angles x 32 partitions, 2x readout
  oversampling, 8 coils compressed to 4 virtual coils, 77 s of breathing), the whole
  ``reconstruct_dynamic`` timed (reading the spokes, gating, ESPIRiT maps, binning, XD-GRASP), with
  its PSNR/edge against the truth and the MRSIGMA time per new volume against its own 4D set.

Times: wall seconds on this machine, threads OMP_NUM_THREADS (default 2). Results: printed, section
"## 4D MRI" of benchmarks/results/cpu.md (other sections kept) and benchmarks/results/4d_cpu.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)
from recon.bench.report import replace_section, write_text_atomic  # noqa: E402

N_BINS = 6
DIAPHRAGM_SLICES = slice(4, 10)     # the sample's z slices holding the right hemidiaphragm and the lesion


def _ap_ratio(si, ap) -> float:
    return float((si * ap).sum() / (si * si).sum())


def _scores(images, truths, cfg, si_b, ratio, z=slice(None)):
    from recon.mri.dynamic.evaluate import edge_errors, psnr

    p = [psnr(images[b][z], truths[b][z]) for b in range(len(si_b))]
    return {"psnr": p, "edge_vox": edge_errors(images, truths, cfg, si_b, ratio).tolist()}


def sample_case(iters: int | None) -> dict:
    """The bundled sample: gating, the three methods, the prior, MRSIGMA (module docstring)."""
    from recon.data import path as sample_path
    from recon.io import read_raw
    from recon.mri.dynamic import (DynamicConfig, bin_signal, build_dictionary, match_segments, reconstruct_dynamic,
                                   respiratory_signal, simulation_from_raw, spokes_from_raw, state_image)
    from recon.mri.dynamic import xdgrasp as xd
    from recon.mri.dynamic.evaluate import bin_truth, lesion_contrast, psnr
    from recon.mri.dynamic.gating import bellows_at, correlation

    raw = read_raw(sample_path("abdomen-4d-sos"))
    cfg, si, ap = simulation_from_raw(raw)
    ratio = _ap_ratio(si, ap)
    data = spokes_from_raw(raw)
    true = si[data.readout].mean(axis=1)
    sig = respiratory_signal(data, bellows=bellows_at(raw, data.angle_times_s))
    bins = bin_signal(sig.signal, sig.times_s, N_BINS)
    out = {"gating_corr": correlation(sig.signal, true), "bellows_corr": sig.bellows_correlation,
           "rejected_angles": int((bins.index < 0).sum())}
    truths, si_b = bin_truth(cfg, bins, true, ratio)
    maps = xd.estimate_maps(data)
    bd = xd.bin_data(data, bins)
    recs = {"zf": xd.zero_filled_bins(bd, maps), "sense": xd.cg_sense_bins(bd, maps),
            "xdgrasp": xd.xdgrasp_bins(bd, maps, iters=iters or xd.DEFAULT_ITERS)}
    for name, r in recs.items():
        s = _scores(r.images, truths, cfg, si_b, ratio)
        s["psnr_diaphragm"] = _scores(r.images, truths, cfg, si_b, ratio, DIAPHRAGM_SLICES)["psnr"]
        s["time_s"] = r.elapsed_s
        out[name] = s
        print(f"  sample {name}: PSNR {np.round(s['psnr'], 2)} dB, edge {np.round(s['edge_vox'], 2)} voxels, "
              f"{r.elapsed_s:.1f} s")
    # a prior without the lesion (the phantom at bin 2's state), through the pipeline's --prior path
    prior = np.abs(state_image(cfg, si_b[2], ratio * si_b[2], lesion=False))
    res = reconstruct_dynamic(raw, DynamicConfig(bins=N_BINS, iters=iters, prior=prior, quiet=True))

    def contrast(images):
        return [lesion_contrast(images[b], truths[b], cfg, si_b[b], ratio * si_b[b]) /
                lesion_contrast(truths[b], truths[b], cfg, si_b[b], ratio * si_b[b]) for b in range(N_BINS)]

    out["prior"] = {"psnr": [psnr(res.images[b], truths[b]) for b in range(N_BINS)],
                    "lesion_contrast": contrast(res.images), "lesion_contrast_no_prior": contrast(recs["xdgrasp"].images)}
    # MRSIGMA on unseen data: dictionary from the first 70 % of the angles
    n_train = int(0.7 * data.n_angles)
    train, new = data.subset(np.arange(n_train)), data.subset(np.arange(n_train, data.n_angles))
    sig_t = respiratory_signal(train)
    bins_t = bin_signal(sig_t.signal, sig_t.times_s, N_BINS)
    maps_t = xd.estimate_maps(train)
    rec_t = xd.xdgrasp_bins(xd.bin_data(train, bins_t), maps_t, iters=iters or xd.DEFAULT_ITERS)
    si_t = si[train.readout].mean(axis=1)
    states = np.array([si_t[bins_t.index == b].mean() for b in range(N_BINS)])
    D = build_dictionary(rec_t.images, maps_t, states=states, coil_matrix=train.coil_matrix)
    matches = match_segments(D, new)
    t_new = np.array([si[new.readout[new.times_s.max(axis=1) <= m.time_s + 1e-9]].mean(axis=1)[-1] for m in matches])
    est = np.array([m.signal for m in matches])
    inside = t_new < states.max() + 1.0
    out["mrsigma"] = {"segments": len(matches), "inside": int(inside.sum()),
                      "corr": correlation(est[inside], t_new[inside]),
                      "median_err_mm": float(np.median(np.abs(est[inside] - t_new[inside]))),
                      "median_ms": float(np.median([m.elapsed_ms for m in matches])),
                      "max_ms": float(np.max([m.elapsed_ms for m in matches]))}
    return out


def timing_case(matrix, n_angles: int, virtual_coils: int, iters: int | None, tmpdir: str) -> dict:
    """Simulate, then time ``reconstruct_dynamic`` (module docstring)."""
    from recon.io import read_raw
    from recon.mri.dynamic import (DynamicConfig, ScanConfig, build_dictionary, match_segments, reconstruct_dynamic,
                                   simulate, simulation_from_raw)
    from recon.mri.dynamic.evaluate import bin_truth

    cfg = ScanConfig(kind="stack-of-stars", matrix=matrix, n_angles=n_angles, n_coils=8, seed=7)
    t0 = time.perf_counter()
    path = simulate(cfg).write(os.path.join(tmpdir, "timing_case.h5"))
    sim_s = time.perf_counter() - t0
    print(f"  timing case {matrix}, {n_angles} angles simulated in {sim_s:.1f} s")
    raw = read_raw(path)
    t0 = time.perf_counter()
    res = reconstruct_dynamic(raw, DynamicConfig(bins=N_BINS, virtual_coils=virtual_coils, iters=iters, quiet=True))
    total = time.perf_counter() - t0
    _, si, ap = simulation_from_raw(raw)
    ratio = _ap_ratio(si, ap)
    truths, si_b = bin_truth(cfg, res.bins, si[res.data.readout].mean(axis=1), ratio)
    out = {"matrix": list(matrix), "angles": n_angles, "coils": 8, "virtual_coils": virtual_coils,
           "simulate_s": sim_s, "total_s": total,
           **{k: res.info[k] for k in ("gating_s", "maps_s", "recon_s") if k in res.info},
           **_scores(res.images, truths, cfg, si_b, ratio)}
    D = build_dictionary(res.images, res.maps, coil_matrix=res.data.coil_matrix)
    ms = [m.elapsed_ms for m in match_segments(D, res.data)]
    out.update(mrsigma_median_ms=float(np.median(ms)), mrsigma_p95_ms=float(np.percentile(ms, 95)))
    print(f"  timing case: {total:.1f} s (recon {out.get('recon_s', float('nan')):.1f} s), "
          f"MRSIGMA {out['mrsigma_median_ms']:.2f} ms per match")
    return out


def render(s, t, a, wall) -> str:
    now = datetime.date.today().isoformat()
    cmd = "python benchmarks/run_4d.py" + (" --quick" if a.quick else "")
    envs = " ".join(f"{v}={os.environ[v]}" for v in ("OMP_NUM_THREADS",) if v in os.environ)
    try:
        load = "load average %.1f" % os.getloadavg()[0]
    except OSError:
        load = "load unknown"
    f = lambda xs: " / ".join(f"{x:.1f}" for x in xs)          # noqa: E731
    out = ["## 4D MRI", ""]
    if a.quick:
        out += ["**A `--quick` run: the timing case is 16 x 96 x 96, not the target's 32 x 192 x 192.**", ""]
    out += [f"Command: `{envs} {cmd}` ({now}, {platform.machine()}, {os.cpu_count()} cores, {load} at the end, "
            f"wall {wall / 60:.1f} min). See the docstring of benchmarks/run_4d.py.", "",
            f"Bundled sample `abdomen-4d-sos`: self-gating vs true trace r = {s['gating_corr']:.3f} (target >= 0.95), "
            f"vs bellows r = {s['bellows_corr']:.3f}; {s['rejected_angles']} angles rejected (deep breath).", "",
            "| method | PSNR per bin, volume (dB) | PSNR per bin, diaphragm slices (dB) | edge error per bin (voxels) | time s |",
            "|---|---|---|---|---|"]
    for m in ("zf", "sense", "xdgrasp"):
        r = s[m]
        out.append(f"| {m} | {f(r['psnr'])} | {f(r['psnr_diaphragm'])} | "
                   + " / ".join(f"{e:+.2f}" for e in r["edge_vox"]) + f" | {r['time_s']:.1f} |")
    x, sense, zf = (np.array(s[k]["psnr"]) for k in ("xdgrasp", "sense", "zf"))
    out += ["", f"XD-GRASP minus CG-SENSE: min {np.min(x - sense):.1f} dB (target >= 2); minus zero-filled: "
            f"min {np.min(x - zf):.1f} dB (target >= 8); max |edge error| {np.max(np.abs(s['xdgrasp']['edge_vox'])):.2f} "
            "voxels (target < 1).", "",
            f"Prior without the lesion (alpha 0.5): PSNR {f(s['prior']['psnr'])} dB; lesion contrast / true contrast "
            f"{' / '.join(f'{c:.2f}' for c in s['prior']['lesion_contrast'])} (without the prior "
            f"{' / '.join(f'{c:.2f}' for c in s['prior']['lesion_contrast_no_prior'])}).", "",
            f"MRSIGMA on the last 30 % of the sample ({s['mrsigma']['segments']} segments of <= 0.3 s, "
            f"{s['mrsigma']['inside']} within the dictionary's states): r = {s['mrsigma']['corr']:.3f}, median error "
            f"{s['mrsigma']['median_err_mm']:.2f} mm, {s['mrsigma']['median_ms']:.2f} ms per match "
            f"(max {s['mrsigma']['max_ms']:.2f}; target <= 150).", "",
            f"Timing case {'x'.join(map(str, t['matrix']))} stack of stars, {t['angles']} angles, 8 coils -> "
            f"{t['virtual_coils']} virtual, 6 bins: **{t['total_s']:.1f} s** (target <= 60 s for 32x192x192; gating "
            f"{t.get('gating_s', float('nan')):.1f} s, maps {t.get('maps_s', float('nan')):.1f} s, binning + XD-GRASP "
            f"{t.get('recon_s', float('nan')):.1f} s); PSNR per bin {f(t['psnr'])} dB, edge error "
            + " / ".join(f"{e:+.2f}" for e in t["edge_vox"]) + f" voxels; MRSIGMA {t['mrsigma_median_ms']:.2f} ms "
            f"per new volume (95th percentile {t['mrsigma_p95_ms']:.2f})."]
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 16x96x96 timing case (checks this script)")
    ap.add_argument("--iters", type=int, default=None, help="XD-GRASP iterations (default: the library's)")
    ap.add_argument("--virtual-coils", type=int, default=4, help="coil compression of the timing case (default 4)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    t_start = time.perf_counter()
    s = sample_case(a.iters)
    matrix, n_angles = ((16, 96, 96), 200) if a.quick else ((32, 192, 192), 600)
    with tempfile.TemporaryDirectory(prefix="recon_4d_bench_") as tmpdir:
        t = timing_case(matrix, n_angles, a.virtual_coils, a.iters, tmpdir)
    md = render(s, t, a, time.perf_counter() - t_start)
    print(md)
    if not a.no_write:
        RESULTS.mkdir(exist_ok=True)
        replace_section(RESULTS / "cpu.md", md, "## 4D MRI")
        write_text_atomic(RESULTS / "4d_cpu.json", json.dumps({"sample": s, "timing": t, "quick": a.quick}, indent=1,
                                                        default=float))
        print(f"wrote {RESULTS / 'cpu.md'} and {RESULTS / '4d_cpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
