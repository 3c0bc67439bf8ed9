// Per-ray bodies of the CUDA Joseph projector (HOST_DEVICE): every weight comes from
// csrc/kernels/joseph.h (make_line, taps, step2d/3d_bounded), the same functions as the CPU
// projector (csrc/ct/projector.cpp). The CUDA kernels (joseph_cuda.cu) run them one thread per ray
// (forward: gather along the ray; adjoint: scatter with atomics, the exact transpose);
// joseph_host.cpp runs them in host loops (the emulation the tests compare with the CPU projector).
//
// Image (batch, [nz,] ny, nx) C order: voxel (z, r, c) at z*ny*nx + r*nx + c. Index axes of joseph.h:
// 0 = x (column c, stride 1), 1 = y (row r, stride nx), 2 = z (slice, stride nx*ny).
// Sinogram (batch, n_views, [det_rows,] det_cols).
#pragma once

#include <stdint.h>

#include "kernels/common.h"
#include "kernels/joseph.h"

namespace recon {
namespace cuda {

struct JosephGeom {
  int kind;      // joseph::Kind
  int nd;        // 2 or 3
  int64_t n_views;
  int det_rows;  // 1 in 2D
  int det_cols;
  int subsample; // sub-rays per bin along each detector axis
  joseph::Grid g;  // n = (nx, ny, nz), v = (vx, vy, vz)
};

// Geometry from a JosephSetup (joseph_cuda.h; any struct with its fields).
template <class Setup>
inline JosephGeom make_joseph_geom(const Setup& s) {
  JosephGeom g;
  g.kind = s.kind;
  g.nd = s.kind == joseph::CONE_FLAT ? 3 : 2;
  g.n_views = s.n_views;
  g.det_rows = s.det_rows;
  g.det_cols = s.det_cols;
  g.subsample = s.subsample;
  g.g.n[0] = s.nx;
  g.g.n[1] = s.ny;
  g.g.n[2] = s.nz;
  g.g.v[0] = s.vx;
  g.g.v[1] = s.vy;
  g.g.v[2] = s.vz;
  return g;
}

RECON_HOST_DEVICE RECON_INLINE int joseph_nsub(const JosephGeom& s) {
  return s.nd == 3 ? s.subsample * s.subsample : s.subsample;
}

// Line of sub-ray `sub` of detector bin (row, col) of `view`: joseph::subray_line, the function the
// CPU projector uses too.
template <typename T>
RECON_HOST_DEVICE RECON_INLINE joseph::Line<T> joseph_subray(const JosephGeom& s, const double* vectors,
                                                              int64_t view, int row, int col, int sub) {
  return joseph::subray_line<T>(s.kind, s.nd, s.subsample, s.det_rows, s.det_cols,
                                vectors + view * joseph::vec_len(s.kind), s.g, row, col, sub);
}

// Strides of a line's driving axis (sk) and interpolation axes (s1, s2; sizes n1, n2) in the
// unpadded image, per joseph.h's axis convention (axis 0: f1 = y, f2 = z; 1: f1 = x, f2 = z;
// 2: f1 = x, f2 = y).
template <typename Idx>
RECON_HOST_DEVICE RECON_INLINE void joseph_strides(const JosephGeom& s, int axis, int* n1, int* n2, Idx* sk, Idx* s1,
                                                   Idx* s2) {
  const Idx nx = s.g.n[0], ny = s.g.n[1];
  const Idx plane = nx * ny;
  if (axis == 0) {
    *sk = 1; *s1 = nx; *s2 = plane; *n1 = s.g.n[1]; *n2 = s.g.n[2];
  } else if (axis == 1) {
    *sk = nx; *s1 = 1; *s2 = plane; *n1 = s.g.n[0]; *n2 = s.g.n[2];
  } else {
    *sk = plane; *s1 = 1; *s2 = nx; *n1 = s.g.n[0]; *n2 = s.g.n[1];
  }
}

// Forward value of detector bin `ray` (flat index over views, rows, cols) of one batch item:
// sum over sub-rays of step * sum_k (interpolation weights x image), zero outside the image.
template <typename T, typename Idx>
RECON_HOST_DEVICE RECON_INLINE T joseph_forward_ray(const JosephGeom& s, const double* vectors, const T* x,
                                                    int64_t ray) {
  const int64_t per_view = (int64_t)s.det_rows * s.det_cols;
  const int64_t view = ray / per_view;
  const int row = (int)((ray % per_view) / s.det_cols);
  const int col = (int)(ray % s.det_cols);
  const int nsub = joseph_nsub(s);
  T sum = T(0);
  for (int sub = 0; sub < nsub; ++sub) {
    const joseph::Line<T> L = joseph_subray<T>(s, vectors, view, row, col, sub);
    if (!(L.k0 < L.k1)) continue;
    int n1, n2;
    Idx sk, s1, s2;
    joseph_strides<Idx>(s, L.axis, &n1, &n2, &sk, &s1, &s2);
    T acc = T(0);
    if (s.nd == 2) {
      for (int k = L.k0; k < L.k1; ++k)
        joseph::step2d_bounded<joseph::JosephForward>(L, k, n1, 0, n1, x, sk, s1, acc);
    } else {
      for (int k = L.k0; k < L.k1; ++k)
        joseph::step3d_bounded<joseph::JosephForward>(L, k, n1, 0, n1, n2, 0, n2, x, sk, s1, s2, acc);
    }
    sum += acc * L.step;
  }
  return sum;
}

// Adjoint contribution of sub-ray `li` (flat over rays x sub-rays) of one batch item: every voxel
// the forward reads with weight w receives w * step * y[ray] through Policy (atomic on the GPU).
template <class Policy, typename T, typename Idx>
RECON_HOST_DEVICE RECON_INLINE void joseph_adjoint_subray(const JosephGeom& s, const double* vectors, const T* y,
                                                          T* x, int64_t li) {
  const int nsub = joseph_nsub(s);
  const int64_t ray = li / nsub;
  const int sub = (int)(li % nsub);
  const T yv = y[ray];
  if (yv == T(0)) return;
  const int64_t per_view = (int64_t)s.det_rows * s.det_cols;
  const int64_t view = ray / per_view;
  const int row = (int)((ray % per_view) / s.det_cols);
  const int col = (int)(ray % s.det_cols);
  const joseph::Line<T> L = joseph_subray<T>(s, vectors, view, row, col, sub);
  if (!(L.k0 < L.k1)) return;
  T val = yv * L.step;
  int n1, n2;
  Idx sk, s1, s2;
  joseph_strides<Idx>(s, L.axis, &n1, &n2, &sk, &s1, &s2);
  if (s.nd == 2) {
    for (int k = L.k0; k < L.k1; ++k) joseph::step2d_bounded<Policy>(L, k, n1, 0, n1, x, sk, s1, val);
  } else {
    for (int k = L.k0; k < L.k1; ++k) joseph::step3d_bounded<Policy>(L, k, n1, 0, n1, n2, 0, n2, x, sk, s1, s2, val);
  }
}

#if defined(__CUDACC__)
// The adjoint policy on the GPU: joseph::JosephAdjoint's "vol[v] += w * val", atomically (a voxel
// receives from many rays at once). Zero weights (taps outside the image) are skipped.
struct JosephAtomicAdjoint {
  template <typename T, typename Idx>
  __device__ __forceinline__ static void apply(T* vol, Idx v, T w, T& val) {
    if (w != T(0)) atomicAdd(vol + v, w * val);
  }
};
#endif

}  // namespace cuda
}  // namespace recon
