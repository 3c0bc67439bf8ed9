"""``recon bench``: the benchmark report (see :mod:`recon.bench`)."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    from . import DEVICES, PARTS, SCALES

    p = sub.add_parser(
        "bench", help="benchmark recon against the installed peers and write a report",
        description="Run the benchmarks (NUFFT, CT projectors, MRI and CT reconstruction, networks, and 4D and "
                    "streaming where present) next to every installed peer on the same inputs, and write "
                    "REPORT_DIR/report.md (machine, tables with ratios and errors), results.json and PNG plots "
                    "(time vs problem size, accuracy vs time). See docs/bench.md.")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder of the report")
    p.add_argument("--quick", action="store_true", help="small cases (same as --scale quick; CI: under 2 minutes)")
    p.add_argument("--scale", choices=SCALES, default=None,
                   help="case sizes: tiny (seconds, for tests), quick, full (default full; --quick: quick)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where recon runs (default cpu)")
    p.add_argument("--parts", default=None, help=f"comma-separated parts (default all: {','.join(PARTS)})")
    p.add_argument("--peers", default=None,
                   help="comma-separated peer libraries to run (default every installed one), e.g. finufft,astra")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for recon and every peer (default RECON_NUM_THREADS, else the usable cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in REPORT_DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from . import run_bench

    if args.quick and args.scale not in (None, "quick"):
        raise ValueError(f"--quick and --scale {args.scale} disagree; give one")
    scale = args.scale or ("quick" if args.quick else "full")
    report = os.path.join(args.output, "report.md")
    if os.path.lexists(report) and not args.overwrite:
        raise FileExistsError(f"{report} exists; pass --overwrite to replace it")
    if os.path.lexists(args.output) and not os.path.isdir(args.output):
        raise ValueError(f"-o {args.output}: the report is a folder, and this is a file")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else None
    peers = [p.strip() for p in args.peers.split(",") if p.strip()] if args.peers is not None else None
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be an integer >= 1, got {args.threads}")
        for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # peers that read them when they load (numpy's BLAS already has)

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    command = " ".join(["recon bench", f"--scale {scale}", f"--device {args.device}"]
                       + ([f"--parts {','.join(parts)}"] if parts else [])
                       + ([f"--peers {','.join(peers)}"] if peers is not None else [])
                       + ([f"--threads {args.threads}"] if args.threads else []) + [f"-o {args.output}"])
    path = run_bench(args.output, scale=scale, device=args.device, parts=parts, threads=args.threads, peers=peers,
                     log=log, command=command)
    if not args.quiet:
        print(f"wrote {path}")
    return 0
