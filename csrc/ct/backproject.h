// Analytic (voxel-driven, distance-weighted) CT backprojection for FBP/FDK. NOT the adjoint of the
// matched projector (recon.ops.Projector): see csrc/kernels/ct_backproject.h for the maths and
// csrc/ct/backproject.cpp for the loops. float data is evaluated in float32 (detector positions within
// float32 rounding of the float64 path), double data in float64. The view weights must be finite and
// >= 0 (checked by the bindings); views of weight 0 are skipped.
#pragma once

#include <cstdint>

namespace recon {

// out[z, y, x] (+)= sum_p weights[p] / w^2 * q[p](b, a) where (a, b, w) come from the 3x4 matrix
// P[p] applied to the voxel centre (x0 + ix*dx, y0 + iy*dy, z0 + iz*dz) in mm.
//   q: nproj x nv x nu (C order); P: nproj x 12; weights: nproj; vol: nz x ny x nx.
//   origin = (z0, y0, x0), step = (dz, dy, dx). nv == 1 means a 2D (one-row) detector.
template <typename T>
void ct_backproject_projective(const T* q, int64_t nproj, int64_t nv, int64_t nu, const double* P,
                               const double* weights, const int64_t* vol_shape, const double* origin,
                               const double* step, T* out, int nthreads);

// Equiangular fan beam (2D): out[y, x] (+)= sum_p weights[p] / |r - s_p|^2 * q[p](a) with
// a = atan2(e_p . (r - s_p), c_p . (r - s_p)) / dgamma + centre, frame[p] = (c_x, c_y, e_x, e_y).
//   q: nproj x nu; src: nproj x 2 (x, y); frame: nproj x 4; vol: ny x nx; origin = (y0, x0),
//   step = (dy, dx).
template <typename T>
void ct_backproject_arc2d(const T* q, int64_t nproj, int64_t nu, const double* src, const double* frame,
                          double dgamma, double centre, const double* weights, const int64_t* vol_shape,
                          const double* origin, const double* step, T* out, int nthreads);

}  // namespace recon
