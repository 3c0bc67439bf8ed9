// Joseph's projector: the one source of every (ray, voxel) weight of recon.ops.Projector.
// HOST_DEVICE, no std:: containers, no exceptions, no OpenMP: included by csrc/ct/ (CPU loops) and
// by cuda/ (GPU loops). Forward and adjoint differ only in the policy applied to each weight:
//   JosephForward:  acc      += w * vol[v]        (then y[r] += step * acc)
//   JosephAdjoint:  vol[v]   += w * val           (val = step * y[r])
// so the adjoint is the exact transpose of the forward.
//
// Geometry (see recon/ct/geometry.py): world (x, y[, z]) in mm, rotation axis through the image
// centre; voxel centres at x = (c - (nx-1)/2) vx, y = ((ny-1)/2 - r) vy, z = (k - (nz-1)/2) vz.
// Index coordinates: fx = x/vx + (nx-1)/2, fy = (ny-1)/2 - y/vy, fz = z/vz + (nz-1)/2.
//
// Rays come from ASTRA-style "vec" descriptions per view (mm):
//   PARALLEL2D (6): ray direction, detector centre d, u (bin i at d + (i + 0.5 - N/2) u)
//   FAN_FLAT   (6): source, detector centre d, u
//   FAN_ARC    (6): source, detector centre d (on the arc), u tangent at d (|u| = arc length/bin)
//   CONE_FLAT (12): source, detector centre d, u (one column), v (one row)
// Rays are full lines (the Python geometry keeps the source outside the image, where a line and
// the half-line from the source cross the same voxels).
//
// Joseph's model: the ray is stepped along its driving axis (the index axis with the largest
// direction component), one step per voxel centre plane k = 0 .. n_drive-1. At each step the image
// is interpolated linearly (2D) / bilinearly (3D) in the other axes between the voxel centres,
// with zeros outside the image; the weight of a voxel is its interpolation weight times the step
// length in mm (= |d| / |d_drive| in index units): line integrals in (1/mm) * mm.
#pragma once

#include <math.h>
#include <stdint.h>

#include "kernels/common.h"

namespace recon {
namespace joseph {

enum Kind : int { PARALLEL2D = 0, FAN_FLAT = 1, FAN_ARC = 2, CONE_FLAT = 3 };

RECON_HOST_DEVICE RECON_INLINE int vec_len(int kind) { return kind == CONE_FLAT ? 12 : 6; }

RECON_HOST_DEVICE RECON_INLINE float rfloor(float v) { return floorf(v); }
RECON_HOST_DEVICE RECON_INLINE double rfloor(double v) { return floor(v); }

// A ray's parametrisation on the image grid. Driving axis: 0 = x, 1 = y, 2 = z (index axes).
// Interpolation coordinates at driving index k: f1 = a1 + b1 k, f2 = a2 + b2 k with
//   axis 0 (x): f1 = fy, f2 = fz;   axis 1 (y): f1 = fx, f2 = fz;   axis 2 (z): f1 = fx, f2 = fy.
// Steps k in [k0, k1) can touch the image (a conservative range; outside it all weights are 0).
template <typename T>
struct Line {
  T a1, b1, a2, b2;
  T step;  // mm per driving step (times the sub-ray weight 1/S)
  int axis;
  int k0, k1;
};

// Grid description: sizes and voxel sizes per index axis (x, y, z); nz = 1, vz = 1 in 2D.
struct Grid {
  int n[3];
  double v[3];
};

// ---- rays from the vec description ----------------------------------------------------------
// (uc, vc): detector position in bins relative to the detector centre (bin i: i + 0.5 - N/2 plus
// the sub-ray offset). Output: a point p on the ray and its direction d, world mm (x, y, z).
RECON_HOST_DEVICE RECON_INLINE void ray_from_vec(int kind, const double* v, double uc, double vc, double* p,
                                                 double* d) {
  if (kind == PARALLEL2D) {
    p[0] = v[2] + uc * v[4];
    p[1] = v[3] + uc * v[5];
    p[2] = 0.0;
    d[0] = v[0];
    d[1] = v[1];
    d[2] = 0.0;
  } else if (kind == FAN_FLAT) {
    p[0] = v[0];
    p[1] = v[1];
    p[2] = 0.0;
    d[0] = v[2] + uc * v[4] - v[0];
    d[1] = v[3] + uc * v[5] - v[1];
    d[2] = 0.0;
  } else if (kind == FAN_ARC) {
    const double cx = v[2] - v[0], cy = v[3] - v[1];
    const double R = sqrt(cx * cx + cy * cy);
    const double ul = sqrt(v[4] * v[4] + v[5] * v[5]);
    const double g = uc * ul / R;
    const double cg = cos(g), sg = sin(g);
    p[0] = v[0];
    p[1] = v[1];
    p[2] = 0.0;
    d[0] = cg * cx / R + sg * v[4] / ul;
    d[1] = cg * cy / R + sg * v[5] / ul;
    d[2] = 0.0;
  } else {  // CONE_FLAT
    p[0] = v[0];
    p[1] = v[1];
    p[2] = v[2];
    d[0] = v[3] + uc * v[6] + vc * v[9] - v[0];
    d[1] = v[4] + uc * v[7] + vc * v[10] - v[1];
    d[2] = v[5] + uc * v[8] + vc * v[11] - v[2];
  }
}

// Range of k in [0, nk) with lo <= a + b k <= hi, widened by one step each side (conservative:
// the taps clamp, so extra steps carry zero weight on real voxels). Returns false if empty.
RECON_HOST_DEVICE RECON_INLINE bool k_range(double a, double b, double lo, double hi, int nk, int* k0, int* k1) {
  double kl, kh;
  if (b == 0.0) {
    if (a < lo || a > hi) return false;
    kl = 0.0;
    kh = (double)(nk - 1);
  } else {
    double ka = (lo - a) / b, kb = (hi - a) / b;
    kl = ka < kb ? ka : kb;
    kh = ka < kb ? kb : ka;
    kl = floor(kl) - 1.0;
    kh = ceil(kh) + 1.0;
    if (kl < 0.0) kl = 0.0;
    if (kh > (double)(nk - 1)) kh = (double)(nk - 1);
  }
  if (kl > kh) return false;
  if ((int)kl > *k0) *k0 = (int)kl;
  if ((int)kh + 1 < *k1) *k1 = (int)kh + 1;
  return *k0 < *k1;
}

// Line through point p with direction d (world mm) on grid g; `weight` scales the step (sub-rays).
// ndim = 2 ignores z. Returns a line with k0 >= k1 if the ray misses the image.
template <typename T>
RECON_HOST_DEVICE RECON_INLINE Line<T> make_line(const double* p, const double* d, const Grid& g, int ndim,
                                                 double weight) {
  const double f[3] = {p[0] / g.v[0] + 0.5 * (g.n[0] - 1), 0.5 * (g.n[1] - 1) - p[1] / g.v[1],
                       ndim == 3 ? p[2] / g.v[2] + 0.5 * (g.n[2] - 1) : 0.0};
  const double e[3] = {d[0] / g.v[0], -d[1] / g.v[1], ndim == 3 ? d[2] / g.v[2] : 0.0};
  const double len = sqrt(d[0] * d[0] + d[1] * d[1] + (ndim == 3 ? d[2] * d[2] : 0.0));
  const double ax = fabs(e[0]), ay = fabs(e[1]), az = fabs(e[2]);
  int A, B1, B2;
  if (ax >= ay && ax >= az) {
    A = 0; B1 = 1; B2 = 2;
  } else if (ay >= az) {
    A = 1; B1 = 0; B2 = 2;
  } else {
    A = 2; B1 = 0; B2 = 1;
  }
  Line<T> L;
  L.axis = A;
  L.k0 = 0;
  L.k1 = g.n[A];
  if (!(fabs(e[A]) > 0.0) || !(len > 0.0)) {
    L.a1 = L.b1 = L.a2 = L.b2 = L.step = T(0);
    L.k1 = 0;
    return L;
  }
  const double b1 = e[B1] / e[A], a1 = f[B1] - b1 * f[A];
  double b2 = 0.0, a2 = 0.0;
  bool ok = k_range(a1, b1, -1.0, (double)g.n[B1], g.n[A], &L.k0, &L.k1);
  if (ndim == 3) {
    b2 = e[B2] / e[A];
    a2 = f[B2] - b2 * f[A];
    ok = ok && k_range(a2, b2, -1.0, (double)g.n[B2], g.n[A], &L.k0, &L.k1);
  }
  if (!ok) L.k1 = L.k0;
  L.a1 = (T)a1;
  L.b1 = (T)b1;
  L.a2 = (T)a2;
  L.b2 = (T)b2;
  L.step = (T)(weight * len / fabs(e[A]));
  return L;
}

// ---- the weights ------------------------------------------------------------------------------
// Linear taps along one interpolation axis of n voxels: position f (clamped to [-1, n]) lies
// between voxels i and i + 1 with weights (1 - t) and t. Voxels -1, n, n + 1 do not exist (zero):
// the forward reads zero-padded copies there, the adjoint bounds them away (bounded_taps).
template <typename T>
RECON_HOST_DEVICE RECON_INLINE void taps(T f, int n, int* i, T* t) {
  f = f < T(-1) ? T(-1) : (f > T(n) ? T(n) : f);
  const T fl = rfloor(f);
  *i = (int)fl;
  *t = f - fl;
}

// Taps with both indices forced into [lo, hi) (lo < hi): a tap outside gets weight 0 and an index
// inside (so a write adds 0 to a voxel the caller owns). Weights (w0, w1) for voxels (i0, i1).
template <typename T>
RECON_HOST_DEVICE RECON_INLINE void bounded_taps(T f, int n, int lo, int hi, int* i0, int* i1, T* w0, T* w1) {
  int i;
  T t;
  taps(f, n, &i, &t);
  const bool ok0 = i >= lo && i < hi, ok1 = i + 1 >= lo && i + 1 < hi;
  *w0 = ok0 ? T(1) - t : T(0);
  *w1 = ok1 ? t : T(0);
  *i0 = ok0 ? i : lo;
  *i1 = ok1 ? i + 1 : lo;
}

// Policies: what to do with weight w of voxel index v.
struct JosephForward {
  template <typename T, typename Idx>
  RECON_HOST_DEVICE RECON_INLINE static void apply(const T* vol, Idx v, T w, T& acc) {
    acc += w * vol[v];
  }
};
struct JosephAdjoint {
  template <typename T, typename Idx>
  RECON_HOST_DEVICE RECON_INLINE static void apply(T* vol, Idx v, T w, T& val) {
    vol[v] += w * val;
  }
};

// One Joseph step of a 2D line at driving index k on a zero-padded image (pad 1 before, 2 after
// along the interpolation axis): voxel index = off + k*sk + i*s1, i in [-1, n1].
// Forward: acc += sum_taps w * vol[.]. (Used with `Policy` = JosephForward.)
template <typename Policy, typename T, typename V, typename Idx>
RECON_HOST_DEVICE RECON_INLINE void step2d_padded(const Line<T>& L, int k, int n1, V* vol, Idx off, Idx sk,
                                                  Idx s1, T& acc) {
  int i;
  T t;
  taps(L.a1 + L.b1 * (T)k, n1, &i, &t);
  const Idx v = off + (Idx)k * sk + (Idx)i * s1;
  Policy::apply(vol, v, T(1) - t, acc);
  Policy::apply(vol, v + s1, t, acc);
}

// One step on an unpadded image with the interpolation taps bounded to [lo1, hi1) (the adjoint's
// ownership window): voxel index = k*sk + i*s1.
template <typename Policy, typename T, typename V, typename Idx>
RECON_HOST_DEVICE RECON_INLINE void step2d_bounded(const Line<T>& L, int k, int n1, int lo1, int hi1, V* vol,
                                                   Idx sk, Idx s1, T& val) {
  int i0, i1;
  T w0, w1;
  bounded_taps(L.a1 + L.b1 * (T)k, n1, lo1, hi1, &i0, &i1, &w0, &w1);
  const Idx base = (Idx)k * sk;
  Policy::apply(vol, base + (Idx)i0 * s1, w0, val);
  Policy::apply(vol, base + (Idx)i1 * s1, w1, val);
}

// 3D: bilinear taps in (f1, f2).
template <typename Policy, typename T, typename V, typename Idx>
RECON_HOST_DEVICE RECON_INLINE void step3d_padded(const Line<T>& L, int k, int n1, int n2, V* vol, Idx off,
                                                  Idx sk, Idx s1, Idx s2, T& acc) {
  int i, j;
  T t, u;
  taps(L.a1 + L.b1 * (T)k, n1, &i, &t);
  taps(L.a2 + L.b2 * (T)k, n2, &j, &u);
  const Idx v = off + (Idx)k * sk + (Idx)i * s1 + (Idx)j * s2;
  const T t0 = T(1) - t, u0 = T(1) - u;
  Policy::apply(vol, v, t0 * u0, acc);
  Policy::apply(vol, v + s1, t * u0, acc);
  Policy::apply(vol, v + s2, t0 * u, acc);
  Policy::apply(vol, v + s1 + s2, t * u, acc);
}

template <typename Policy, typename T, typename V, typename Idx>
RECON_HOST_DEVICE RECON_INLINE void step3d_bounded(const Line<T>& L, int k, int n1, int lo1, int hi1, int n2,
                                                   int lo2, int hi2, V* vol, Idx sk, Idx s1, Idx s2,
                                                   T& val) {
  int i0, i1, j0, j1;
  T w0, w1, q0, q1;
  bounded_taps(L.a1 + L.b1 * (T)k, n1, lo1, hi1, &i0, &i1, &w0, &w1);
  bounded_taps(L.a2 + L.b2 * (T)k, n2, lo2, hi2, &j0, &j1, &q0, &q1);
  const Idx base = (Idx)k * sk;
  Policy::apply(vol, base + (Idx)i0 * s1 + (Idx)j0 * s2, w0 * q0, val);
  Policy::apply(vol, base + (Idx)i1 * s1 + (Idx)j0 * s2, w1 * q0, val);
  Policy::apply(vol, base + (Idx)i0 * s1 + (Idx)j1 * s2, w0 * q1, val);
  Policy::apply(vol, base + (Idx)i1 * s1 + (Idx)j1 * s2, w1 * q1, val);
}

// Line of sub-ray `sub` (0 .. S*S-1 in 3D, 0 .. S-1 in 2D) of detector bin (row, col) of one view
// whose vector (vec_len(kind) doubles) is at `v`: sub-ray offsets (s + 0.5)/S - 0.5 of a bin,
// weight 1/S per detector axis. Shared by the CPU (csrc/ct/projector.cpp) and CUDA drivers.
template <typename T>
RECON_HOST_DEVICE RECON_INLINE Line<T> subray_line(int kind, int nd, int subsample, int det_rows, int det_cols,
                                                   const double* v, const Grid& g, int row, int col, int sub) {
  const int S = subsample;
  const int su = nd == 3 ? sub % S : sub;
  const int sv = nd == 3 ? sub / S : 0;
  const double uc = col + (su + 0.5) / S - 0.5 + 0.5 - 0.5 * det_cols;
  const double vc = row + (sv + 0.5) / S - 0.5 + 0.5 - 0.5 * det_rows;
  double p[3], d[3];
  ray_from_vec(kind, v, uc, vc, p, d);
  const double w = 1.0 / (nd == 3 ? S * S : S);
  return make_line<T>(p, d, g, nd, w);
}

}  // namespace joseph
}  // namespace recon
