#!/usr/bin/env python
"""Draws docs/ct_geometry.png: recon's CT coordinate system (recon/ct/geometry.py).

    python docs/make_ct_geometry_figure.py [output.png]

Left: parallel beam at view angle t (image grid with row 0 at +y, ray direction, detector axis u,
bin 0 -> N-1). Right: fan beam (flat and arc detector) at the same angle, source S, detector
centre D, fan angle gamma towards +u. Everything is drawn from the geometry classes' own vectors()."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(out=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Arc, FancyArrowPatch, Rectangle

    from recon.ct import FanBeam2D, ParallelBeam2D

    out = Path(out or Path(__file__).with_name("ct_geometry.png"))
    t = np.deg2rad(30.0)
    n, v = 6, 1.0
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))

    def grid(ax):
        half = n * v / 2
        for r in range(n):
            for c in range(n):
                x0, y0 = -half + c * v, half - (r + 1) * v
                ax.add_patch(Rectangle((x0, y0), v, v, fill=(r, c) == (0, 0), color="0.85" if (r, c) == (0, 0) else "0.6",
                                       lw=0.6))
        ax.text(-half + 0.5 * v, half - 0.5 * v, "[0,0]", ha="center", va="center", fontsize=7)
        ax.text(half - 0.5 * v, -half + 0.5 * v, f"[{n-1},{n-1}]", ha="center", va="center", fontsize=7)
        ax.annotate("", (half + 2.2, 0), (-half - 2.2, 0), arrowprops=dict(arrowstyle="->", color="k", lw=0.8))
        ax.annotate("", (0, half + 2.2), (0, -half - 2.2), arrowprops=dict(arrowstyle="->", color="k", lw=0.8))
        ax.text(half + 2.3, -0.6, "x", fontsize=11)
        ax.text(0.3, half + 2.2, "y", fontsize=11)
        ax.text(-half - 4, -half - 2.6, "image (ny, nx): row 0 at +y, column 0 at -x;\nrotation axis z through the centre",
                fontsize=8, va="top")

    def arrow(ax, p, q, color, lw=1.5, style="->"):
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=12, color=color, lw=lw))

    # ---- parallel -------------------------------------------------------------------------------------
    ax = axes[0]
    grid(ax)
    g = ParallelBeam2D([t], 9, 1.0, (n, n), v)
    ray, d, u = g.vectors()[0, 0:2], g.vectors()[0, 2:4], g.vectors()[0, 4:6]
    det_c = d + 6.5 * ray  # draw the detector downstream of the image (rays run along `ray`)
    bins = np.arange(9) + 0.5 - 4.5
    pts = det_c[None] + bins[:, None] * u[None]
    ax.plot(pts[[0, -1], 0] + [-0.5 * u[0], 0.5 * u[0]], pts[[0, -1], 1] + [-0.5 * u[1], 0.5 * u[1]], color="C0", lw=4)
    for k, p in enumerate(pts):
        src = p - 20 * ray
        ax.plot([src[0], p[0]], [src[1], p[1]], color="C1", lw=0.6, alpha=0.6)
    ax.text(*(pts[0] - 0.9 * u + 0.3 * ray), "bin 0", color="C0", fontsize=8, ha="center")
    ax.text(*(pts[-1] + 1.0 * u + 0.3 * ray), f"bin N-1", color="C0", fontsize=8, ha="center")
    arrow(ax, det_c + 0.0 * u, det_c + 3 * u, "C0", 2)
    ax.text(*(det_c + 3.3 * u + 0.5 * ray), "u = (cos t, sin t)", color="C0", fontsize=9)
    mid = pts[7] - 16 * ray
    arrow(ax, mid, mid + 2.5 * ray, "C1", 2)
    ax.text(*(mid - 1.0 * u), "ray = (sin t, -cos t)", color="C1", fontsize=9, ha="right")
    ax.add_patch(Arc((0, 0), 4, 4, theta1=0, theta2=np.rad2deg(t), color="C3"))
    ax.text(2.2, 0.5, "t", color="C3", fontsize=11)
    ax.set_title("ParallelBeam2D at view angle t (here 30 deg)\nsinogram (angles, bins); bin i at u_i = (i - (N-1)/2) s + offset",
                 fontsize=10)
    ax.set_xlim(-13, 13)
    ax.set_ylim(-13, 13)
    ax.set_aspect("equal")
    ax.axis("off")

    # ---- fan ---------------------------------------------------------------------------------------------
    ax = axes[1]
    grid(ax)
    SO, OD = 9.0, 6.0
    f = FanBeam2D([t], 11, 1.3, SO, OD, "flat", (n, n), v)
    a = FanBeam2D([t], 11, 1.3, SO, OD, "arc", (n, n), v)
    S, D, u = f.vectors()[0, 0:2], f.vectors()[0, 2:4], f.vectors()[0, 4:6]
    bins = np.arange(11) + 0.5 - 5.5
    flat = D[None] + bins[:, None] * u[None]
    ax.plot(flat[[0, -1], 0], flat[[0, -1], 1], color="C0", lw=4, label="flat detector")
    _, dirs = a.rays()
    arc_pts = S[None] + (SO + OD) * dirs[0, :, 0, :]
    gam = np.linspace(-5.5, 5.5, 50) * 1.3 / (SO + OD)
    c0 = (D - S) / (SO + OD)
    uh = u / 1.3
    arc_line = S[None] + (SO + OD) * (np.cos(gam)[:, None] * c0 + np.sin(gam)[:, None] * uh)
    ax.plot(arc_line[:, 0], arc_line[:, 1], color="C2", lw=3, label="arc detector (radius SD, centred at S)")
    for p in flat:
        ax.plot([S[0], p[0]], [S[1], p[1]], color="C1", lw=0.6, alpha=0.6)
    ax.plot(*S, "o", color="C3")
    ax.text(S[0] + 0.4, S[1] - 0.6, "S = SO (sin t, -cos t)", color="C3", fontsize=9)
    ax.plot(*D, "s", color="C0")
    ax.text(D[0] - 0.6, D[1] + 0.6, "D = -OD (sin t, -cos t)", color="C0", fontsize=9, ha="right")
    arrow(ax, D, D + 3 * u, "C0", 2)
    ax.text(*(D + 3.2 * u), "u", color="C0", fontsize=11)
    ax.plot([S[0], D[0]], [S[1], D[1]], "k--", lw=0.8)
    ax.text(*(flat[-1] + 0.5 * u), "bin N-1 (gamma > 0)", color="C0", fontsize=8)
    ax.text(*(flat[0] - 1.6 * u), "bin 0", color="C0", fontsize=8)
    ax.add_patch(Arc((0, 0), 4, 4, theta1=0, theta2=np.rad2deg(t), color="C3"))
    ax.text(2.2, 0.5, "t", color="C3", fontsize=11)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("FanBeam2D at view angle t: source_origin SO, origin_det OD\n(ConeBeam3D: the same in x-y, "
                 "detector rows along v = +z)", fontsize=10)
    ax.set_xlim(-13, 13)
    ax.set_ylim(-13, 13)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
