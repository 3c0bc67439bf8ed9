// Per-element maths of the analytic (voxel-driven, weighted) CT backprojector used by FBP/FDK.
// Written once, HOST_DEVICE, for csrc/ct/backproject.cpp and any CUDA driver.
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
#pragma once

#include <cmath>

#include "kernels/common.h"

namespace recon {

// Linear interpolation of row `q` (n samples, centres at 0..n-1) at continuous index a; 0 outside
// [0, n-1] (and for NaN a).
template <typename T>
RECON_HOST_DEVICE RECON_INLINE T ct_interp1(const T* q, int n, double a) {
  if (!(a >= 0.0) || !(a <= (double)(n - 1))) return T(0);
  const double fa = floor(a);
  const int i0 = (int)fa;
  const double t = a - fa;
  const T v0 = q[i0];
  const T v1 = i0 + 1 < n ? q[i0 + 1] : T(0);  // t == 0 when i0 == n - 1
  return (T)((1.0 - t) * (double)v0 + t * (double)v1);
}

// Bilinear interpolation of an (nv, nu) detector image at continuous (b, a); 0 outside
// [0, nv-1] x [0, nu-1].
template <typename T>
RECON_HOST_DEVICE RECON_INLINE T ct_interp2(const T* q, int nv, int nu, double b, double a) {
  if (!(b >= 0.0) || !(b <= (double)(nv - 1))) return T(0);
  const double fb = floor(b);
  const int j0 = (int)fb;
  const double t = b - fb;
  const T r0 = ct_interp1(q + (long)j0 * nu, nu, a);
  const T r1 = j0 + 1 < nv ? ct_interp1(q + (long)(j0 + 1) * nu, nu, a) : T(0);  // t == 0 at the last row
  return (T)((1.0 - t) * (double)r0 + t * (double)r1);
}

// Projective detector coordinates of point (x, y, z): returns false when the point is at or
// behind the source (w <= 0).
RECON_HOST_DEVICE RECON_INLINE bool ct_project(const double* P, double x, double y, double z, double* a,
                                               double* b, double* w) {
  const double aw = P[0] * x + P[1] * y + P[2] * z + P[3];
  const double bw = P[4] * x + P[5] * y + P[6] * z + P[7];
  const double ww = P[8] * x + P[9] * y + P[10] * z + P[11];
  if (!(ww > 1e-12)) return false;
  *a = aw / ww;
  *b = bw / ww;
  *w = ww;
  return true;
}

// Equiangular fan: column index and 1/|r-s|^2 weight of point (x, y) for source s and the view's
// frame f = (c_x, c_y, e_x, e_y): c the unit direction of the central ray, e the unit vector along
// which the fan angle grows (perpendicular to c).
RECON_HOST_DEVICE RECON_INLINE bool ct_arc_project(const double* s, const double* f, double dgamma,
                                                   double centre, double x, double y, double* a,
                                                   double* inv_l2) {
  const double rx = x - s[0], ry = y - s[1];
  const double along = f[0] * rx + f[1] * ry;
  if (!(along > 1e-12)) return false;
  const double across = f[2] * rx + f[3] * ry;
  *a = atan2(across, along) / dgamma + centre;
  *inv_l2 = 1.0 / (rx * rx + ry * ry);
  return true;
}

}  // namespace recon
