"""CT demo (the README's CT example): low-dose fan-beam scan of a Shepp-Logan phantom reconstructed
with FBP and PWLS-TV, then the bundled real data (HTC2022 limited-angle X-ray CT, PET transmission).

    python examples/ct_demo.py --out ct_demo_out

The demo itself lives in :mod:`recon.ct.demo` (so that the installed ``recon demo`` runs it too).
"""

import argparse

from recon.ct.demo import run_demo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="ct_demo_out", help="output directory for the PNGs")
    ap.add_argument("--n", type=int, default=256, help="image size (pixels)")
    ap.add_argument("--iters", type=int, default=50, help="PWLS-TV iterations")
    ap.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    args = ap.parse_args(argv)
    run_demo(args.out, n_pixels=args.n, iters=args.iters, progress=True if args.progress else None)


if __name__ == "__main__":
    main()
