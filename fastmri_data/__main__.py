"""``python -m fastmri_data sample OUT.h5 [--slices 4 --shape 64 64 --coils 8 --noise 0 --seed 0 --png P]``
writes a small synthetic fastMRI multicoil file (and optionally a PNG of its RSS target);
``python -m fastmri_data info FILE.h5`` prints a file's layout and header fields."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastmri_data", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="write a synthetic fastMRI multicoil file")
    s.add_argument("out")
    s.add_argument("--slices", type=int, default=4)
    s.add_argument("--shape", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    s.add_argument("--coils", type=int, default=8)
    s.add_argument("--noise", type=float, default=0.0, help="k-space noise std per real/imag part")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--oversampling", type=int, default=1, choices=(1, 2), help="readout oversampling")
    s.add_argument("--png", help="also write the RSS target as a PNG montage")
    i = sub.add_parser("info", help="print a fastMRI file's layout")
    i.add_argument("file")
    a = ap.parse_args(argv)
    from . import generate_sample, read_fastmri

    if a.cmd == "sample":
        generate_sample(a.out, num_slices=a.slices, shape=tuple(a.shape), num_coils=a.coils, noise_std=a.noise,
                        seed=a.seed, readout_oversampling=a.oversampling)
        print(f"wrote {a.out}")
        if a.png:
            from recon.io import write_png  # same distribution as fastmri_data

            write_png(a.png, read_fastmri(a.out).target)
            print(f"wrote {a.png}")
        return 0
    v = read_fastmri(a.file)
    print(f"{a.file}: {v.challenge}, kspace {v.kspace.shape} {v.kspace.dtype}, "
          f"target {None if v.target is None else v.target.shape} ({v.target_key})")
    print(f"encoding {v.encoding_size}, recon {v.recon_size}, padding [{v.padding_left}, {v.padding_right})")
    print(f"attrs {v.attrs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
