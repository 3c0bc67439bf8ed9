// Per-element maths of the analytic (voxel-driven, weighted) CT backprojector used by FBP/FDK.
// Written once, HOST_DEVICE, for csrc/ct/backproject.cpp (its portable loop and its AVX-512 loop,
// which calls the lane functions below on 16-lane vectors) and any CUDA driver.
//
// This backprojector is NOT the adjoint of recon.ops.Projector: it samples filtered projections at
// the detector position of each voxel centre (linear interpolation) and multiplies by the analytic
// FBP/FDK distance weight. It is unmatched by design (matched=False).
//
// Projective mapping (parallel beam, flat fan beam, flat cone beam). Per projection a 3x4 matrix P
// (row-major) maps the homogeneous voxel centre (x, y, z, 1) in mm to (a*w, b*w, w):
//   a = detector column index (continuous, 0 = centre of the first column),
//   b = detector row index (ignored for 2D geometries: one row),
//   w = U = (distance from the source to the voxel along the central ray) / (source-origin distance)
//       for divergent beams, w = 1 for parallel beams.
// The analytic weight applied is 1 / w^2 (Feldkamp/fan-flat distance weight; 1 for parallel).
//
// Equiangular (arc) fan beam. Per projection the source position s, the unit direction c of the
// central ray (source -> isocentre), the unit vector e (perpendicular to c) towards growing fan
// angle and the detector's angular sampling: the voxel at r is seen at fan angle
// gamma = atan2(e . (r - s), c . (r - s)), column a = gamma / dgamma + centre, and the weight is
// 1 / |r - s|^2 (mm^-2).
//
// Along one voxel row (x = x0 + ix dx, y and z fixed) every homogeneous coordinate above (a w, b w,
// w; e . (r - s), c . (r - s)) is linear in ix: the drivers compute base + ix * slope per view and
// row in double (ct_projective_row, ct_arc_row) and the per-voxel ratios in the lane type V (float or
// double, or a vector of them). The view weight W >= 0 is folded into that linear map: scaling all
// homogeneous coordinates by 1/sqrt(W) leaves the detector position unchanged and turns the distance
// weight 1/w^2 (1/|r - s|^2) into W/w^2 (W/|r - s|^2), at no cost per voxel.
#pragma once

#include <cmath>

#include "kernels/common.h"

namespace recon {

// Depth below which a voxel counts as at or behind the source (w for flat detectors, c . (r - s) in mm
// for arc detectors, after the 1/sqrt(W) scaling): it gets no contribution from that view.
#define RECON_CT_MIN_DEPTH 1e-12f

// ---- per view and voxel row (double) -----------------------------------------------------------------

// Projective row: base[k] + ix * slope[k] is row k of P applied to (x0 + ix dx, y, z, 1), times `scale`
// (1/sqrt(W) for divergent beams, 1 for parallel beams, whose weight W is applied as a constant).
RECON_HOST_DEVICE RECON_INLINE void ct_projective_row(const double* P, double scale, double x0, double dx, double y,
                                                      double z, double* base, double* slope) {
  for (int k = 0; k < 3; ++k) {
    const double* r = P + 4 * k;
    base[k] = scale * (r[0] * x0 + r[1] * y + r[2] * z + r[3]);
    slope[k] = scale * r[0] * dx;
  }
}

// Arc row: base/slope of (across, along) = (e . (r - s), c . (r - s)) / sqrt(W) for r = (x0 + ix dx, y);
// frame f = (c_x, c_y, e_x, e_y).
RECON_HOST_DEVICE RECON_INLINE void ct_arc_row(const double* s, const double* f, double W, double x0, double dx,
                                               double y, double* base, double* slope) {
  const double scale = 1.0 / sqrt(W);
  const double rx = x0 - s[0], ry = y - s[1];
  base[0] = scale * (f[2] * rx + f[3] * ry);
  slope[0] = scale * f[2] * dx;
  base[1] = scale * (f[0] * rx + f[1] * ry);
  slope[1] = scale * f[0] * dx;
}

// ---- per voxel (lane type V: float, double, or a GCC vector of floats) -------------------------------------

// atan(y / x) for x > 0, in (-pi/2, pi/2), in two steps so that a caller can share the division:
// ct_atan_reduce gives num, den and the offset with atan(y / x) = sign(y) (off + atan(num / den)) and
// |num / den| <= tan(pi/8) (atan t = pi/4 + atan((t-1)/(t+1)) = pi/2 - atan(1/t) for t = |y| / x), and
// ct_atan_small evaluates atan(r) on that range by a degree-9 odd polynomial (Cephes atanf's
// coefficients). float lanes: max error 1.6e-7 rad over all angles (tests/test_fbp.py measures it
// against float64 atan2), 1e-4 detector bins at 1 mm / 1 m (dgamma ~ 1e-3 rad), far below the error of
// linear interpolation. double lanes use atan2 (libm): see the double overload of ct_arc_column.
template <typename V>
struct CtAtanReduced {
  V num, den, off;
};

template <typename V>
RECON_HOST_DEVICE RECON_INLINE CtAtanReduced<V> ct_atan_reduce(V y, V x) {
  const V ay = y < 0.0f ? -y : y;
  const auto big = ay > 2.414213562373095f * x;   // |t| > tan(3 pi / 8)
  const auto mid = ay > 0.4142135623730950f * x;  // |t| > tan(pi / 8)
  CtAtanReduced<V> r;
  r.num = big ? -x : (mid ? ay - x : ay);
  r.den = big ? ay : (mid ? ay + x : x);
  r.off = big ? V{} + 1.5707963267948966f : (mid ? V{} + 0.7853981633974483f : V{});
  return r;
}

template <typename V>
RECON_HOST_DEVICE RECON_INLINE V ct_atan_small(V r) {
  const V z = r * r;
  return (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z - 3.33329491539e-1f) * z * r + r;
}

// Flat detector (fan, cone): from the scaled homogeneous coordinates (a w, w) of a voxel, its column
// a and 1/w (the weight is 1/w^2, the row b = (b w) / w). Voxels at or behind the source get a = -1
// (off the detector) and 1/w = 0: no contribution.
template <typename V>
RECON_HOST_DEVICE RECON_INLINE V ct_flat_column(V aw, V w, V* inv_w) {
  const auto front = w > RECON_CT_MIN_DEPTH;
  const V inv = 1.0f / w;
  *inv_w = front ? inv : V{};
  return front ? aw * inv : V{} - 1.0f;
}

// Equiangular detector: column a and weight 1/|r - s|^2 (times W) from the scaled (across, along);
// a = -1 and weight 0 at or behind the source. One division gives both 1/den (of the reduced atan
// argument) and 1/|r - s|^2: inv = 1 / (den |r - s|^2).
template <typename V, typename S>
RECON_HOST_DEVICE RECON_INLINE V ct_arc_column(V across, V along, S inv_dgamma, S centre, V* weight) {
  const auto front = along > RECON_CT_MIN_DEPTH;
  const V l2 = across * across + along * along;
  const CtAtanReduced<V> red = ct_atan_reduce(across, along);
  const V inv = 1.0f / (red.den * l2);
  const V g = red.off + ct_atan_small(red.num * (l2 * inv));
  *weight = front ? red.den * inv : V{};
  return front ? (across < 0.0f ? -g : g) * inv_dgamma + centre : V{} - 1.0f;
}
RECON_HOST_DEVICE RECON_INLINE double ct_arc_column(double across, double along, double inv_dgamma, double centre,
                                                    double* weight) {
  const bool front = along > RECON_CT_MIN_DEPTH;
  *weight = front ? 1.0 / (across * across + along * along) : 0.0;
  return front ? atan2(across, along) * inv_dgamma + centre : -1.0;
}

// Linear interpolation between v0 (t = 0) and v1 (t = 1).
template <typename V>
RECON_HOST_DEVICE RECON_INLINE V ct_lerp(V v0, V v1, V t) {
  return v0 + t * (v1 - v0);
}

// Linear interpolation of row `q` (n samples, centres at 0..n-1) at continuous index a; 0 outside
// [0, n-1] (and for NaN a).
template <typename T, typename R>
RECON_HOST_DEVICE RECON_INLINE T ct_interp1(const T* q, int n, R a) {
  if (!(a >= R(0)) || !(a <= R(n - 1))) return T(0);
  const R fa = floor(a);
  const int i0 = (int)fa;
  const T v1 = i0 + 1 < n ? q[i0 + 1] : T(0);  // t == 0 when i0 == n - 1
  return (T)ct_lerp(R(q[i0]), R(v1), a - fa);
}

// Bilinear interpolation of an (nv, nu) detector image at continuous (b, a); 0 outside
// [0, nv-1] x [0, nu-1].
template <typename T, typename R>
RECON_HOST_DEVICE RECON_INLINE T ct_interp2(const T* q, int nv, int nu, R b, R a) {
  if (!(b >= R(0)) || !(b <= R(nv - 1))) return T(0);
  const R fb = floor(b);
  const int j0 = (int)fb;
  const T r0 = ct_interp1(q + (long)j0 * nu, nu, a);
  const T r1 = j0 + 1 < nv ? ct_interp1(q + (long)(j0 + 1) * nu, nu, a) : T(0);  // t == 0 at the last row
  return (T)ct_lerp(R(r0), R(r1), b - fb);
}

}  // namespace recon
