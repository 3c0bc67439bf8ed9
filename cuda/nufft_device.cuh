// Per-thread bodies of the CUDA NUFFT kernels, written as HOST_DEVICE functions.
//
// The CUDA kernels (nufft_spread.cu, nufft_interp.cu, nufft_plan.cu) call these from a CUDA grid;
// nufft_emulate.cpp calls the very same functions from plain host loops, so that the index
// arithmetic (stencil starts, bins, padded bin tiles, periodic wrap, centred pad/crop) is tested on
// machines without a GPU against the CPU plan of recon._core. The weights themselves come from
// csrc/kernels/es_kernel.h (es_stencil_start, es_weights_horner): one source for CPU and GPU.
//
// Layouts (all C order, complex values interleaved (re, im) as in numpy/cupy/torch):
//   image  x: (batch, N0, N1[, N2])      fine grid: (batch, n0, n1[, n2])      samples y: (batch, M)
// 2D problems use axes 0 and 1 and set N2 = n2 = 1, bin2 = nbins2 = 1.
#pragma once

#include <stdint.h>

#include "kernels/common.h"
#include "kernels/es_kernel.h"

namespace recon {
namespace cuda {

// Geometry of one NUFFT plan, passed by value to every kernel.
struct NufftGeom {
  int dim;        // 2 or 3
  int width;      // kernel width W (grid points per axis)
  int N[3];       // image shape (1 for unused axes)
  int n[3];       // fine-grid shape (1 for unused axes); n[a] >= 2 W on used axes
  int bin[3];     // bin edge per axis (1 for unused axes)
  int nbins[3];   // ceil(n / bin) (1 for unused axes)
};

// Origin and extent of the padded tile of one bin: grid points o[a] .. o[a] + e[a] - 1 (before the
// periodic wrap), e[a] = min(bin, n - o) + W - 1 covers every stencil of every sample in the bin.
struct TileBox {
  int o[3];
  int e[3];
};

template <typename T>
RECON_HOST_DEVICE RECON_INLINE T ldg(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

// Accumulation policies: the kernels accumulate with atomics, the host emulation with plain adds.
struct PlainAdd {
  template <typename T>
  RECON_HOST_DEVICE RECON_INLINE static void add(T* p, T v) { *p += v; }
};
#if defined(__CUDACC__)
struct AtomicAdd {
  template <typename T>
  __device__ __forceinline__ static void add(T* p, T v) { atomicAdd(p, v); }
};
#endif

// ---- plan time ---------------------------------------------------------------------------------

// Stencil starts (wrapped into [0, n)), Horner variables and bin index of one sample whose
// coordinates (cycles per FOV) are k[0..dim). The same formula as the CPU plan (nufft.cpp):
// u = k * n / N in double, es_stencil_start, start mod n. Returns false for a coordinate that is
// NaN or outside [-N/2, N/2].
template <typename T>
RECON_HOST_DEVICE RECON_INLINE bool plan_point(const double* k, const NufftGeom& g, int* start, T* z, int* bin) {
  int b = 0;
  for (int a = 0; a < g.dim; ++a) {
    const double ka = k[a];
    const double half = 0.5 * (double)g.N[a];
    if (!(ka >= -half && ka <= half)) return false;
    const double u = ka * (double)g.n[a] / (double)g.N[a];
    T za;
    long long s = es_stencil_start<T>(u, g.width, &za);
    s %= g.n[a];
    if (s < 0) s += g.n[a];
    start[a] = (int)s;
    z[a] = za;
    b = b * g.nbins[a] + (int)s / g.bin[a];
  }
  *bin = b;
  return true;
}

// Padded tile of bin `bin` (bin index in C order over the used axes).
RECON_HOST_DEVICE RECON_INLINE TileBox tile_box(const NufftGeom& g, int bin) {
  TileBox t;
  int rem = bin;
  for (int a = 2; a >= 0; --a) {
    if (a >= g.dim) {
      t.o[a] = 0;
      t.e[a] = 1;
      continue;
    }
    const int i = rem % g.nbins[a];
    rem /= g.nbins[a];
    t.o[a] = i * g.bin[a];
    const int inside = g.n[a] - t.o[a];
    t.e[a] = (g.bin[a] < inside ? g.bin[a] : inside) + g.width - 1;
  }
  return t;
}

RECON_HOST_DEVICE RECON_INLINE int tile_cells(const TileBox& t) { return t.e[0] * t.e[1] * t.e[2]; }

// Flat fine-grid index (within one batch item) of tile cell `c` (C order over the tile extents),
// wrapped periodically: o + local < n + W - 1 < 2 n, so one wrap suffices.
RECON_HOST_DEVICE RECON_INLINE int64_t tile_cell_to_grid(const NufftGeom& g, const TileBox& t, int c) {
  const int c2 = c % t.e[2];
  const int r = c / t.e[2];
  const int c1 = r % t.e[1];
  const int c0 = r / t.e[1];
  const int g0 = wrap_once(t.o[0] + c0, g.n[0]);
  const int g1 = wrap_once(t.o[1] + c1, g.n[1]);
  const int g2 = g.dim == 3 ? wrap_once(t.o[2] + c2, g.n[2]) : 0;
  return ((int64_t)g0 * g.n[1] + g1) * (int64_t)g.n[2] + g2;
}

// ---- spreading (type 1) ------------------------------------------------------------------------

// Loops: the innermost (last-axis) loop is unrolled (its weights stay in registers); the outer
// loops are not, to keep the 2 x 15 widths x 2 precisions of every kernel quick to compile.

// Add the W^D stencil of one sample (value cr + i ci, stencil starts s[], Horner variables z[])
// into the tile of its bin (interleaved complex, extents t.e). The sample's start lies inside the
// bin, so its stencil lies inside the tile: no wrap here.
#pragma nv_exec_check_disable
template <int W, int D, typename T, class Add>
RECON_HOST_DEVICE RECON_INLINE void spread_point_to_tile(const T* coef, int degree, const T* z, const int* s,
                                                         const TileBox& t, T cr, T ci, T* tile) {
  T k0[W], k1[W];
  es_weights_horner<W>(coef, degree, z[0], k0);
  es_weights_horner<W>(coef, degree, z[1], k1);
  const int l0 = s[0] - t.o[0], l1 = s[1] - t.o[1];
  if constexpr (D == 2) {
    T row[2 * W];
#pragma unroll
    for (int j = 0; j < W; ++j) {
      row[2 * j] = cr * k1[j];
      row[2 * j + 1] = ci * k1[j];
    }
#pragma unroll 1
    for (int i = 0; i < W; ++i) {
      T* dst = tile + 2 * ((l0 + i) * t.e[1] + l1);
      const T f = k0[i];
#pragma unroll
      for (int q = 0; q < 2 * W; ++q) Add::add(dst + q, f * row[q]);
    }
  } else {
    T k2[W];
    es_weights_horner<W>(coef, degree, z[2], k2);
    const int l2 = s[2] - t.o[2];
    T row[2 * W];
#pragma unroll
    for (int j = 0; j < W; ++j) {
      row[2 * j] = cr * k2[j];
      row[2 * j + 1] = ci * k2[j];
    }
#pragma unroll 1
    for (int i = 0; i < W; ++i) {
#pragma unroll 1
      for (int j = 0; j < W; ++j) {
        T* dst = tile + 2 * (((l0 + i) * t.e[1] + l1 + j) * t.e[2] + l2);
        const T f = k0[i] * k1[j];
#pragma unroll
        for (int q = 0; q < 2 * W; ++q) Add::add(dst + q, f * row[q]);
      }
    }
  }
}

// Add the stencil of one sample straight into the fine grid of one batch item (global-memory
// method: used when a bin's tile does not fit in shared memory).
#pragma nv_exec_check_disable
template <int W, int D, typename T, class Add>
RECON_HOST_DEVICE RECON_INLINE void spread_point_to_grid(const NufftGeom& g, const T* coef, int degree, const T* z,
                                                         const int* s, T cr, T ci, T* grid) {
  T k0[W], k1[W];
  es_weights_horner<W>(coef, degree, z[0], k0);
  es_weights_horner<W>(coef, degree, z[1], k1);
  const int n0 = g.n[0], n1 = g.n[1], n2 = g.n[2];
  if constexpr (D == 2) {
    T row[2 * W];
#pragma unroll
    for (int j = 0; j < W; ++j) {
      row[2 * j] = cr * k1[j];
      row[2 * j + 1] = ci * k1[j];
    }
#pragma unroll 1
    for (int i = 0; i < W; ++i) {
      const int64_t base = (int64_t)wrap_once(s[0] + i, n0) * n1;
      const T f = k0[i];
#pragma unroll
      for (int j = 0; j < W; ++j) {
        T* dst = grid + 2 * (base + wrap_once(s[1] + j, n1));
        Add::add(dst, f * row[2 * j]);
        Add::add(dst + 1, f * row[2 * j + 1]);
      }
    }
  } else {
    T k2[W];
    es_weights_horner<W>(coef, degree, z[2], k2);
    T row[2 * W];
#pragma unroll
    for (int l = 0; l < W; ++l) {
      row[2 * l] = cr * k2[l];
      row[2 * l + 1] = ci * k2[l];
    }
#pragma unroll 1
    for (int i = 0; i < W; ++i) {
      const int64_t b0 = (int64_t)wrap_once(s[0] + i, n0) * n1;
#pragma unroll 1
      for (int j = 0; j < W; ++j) {
        const int64_t base = (b0 + wrap_once(s[1] + j, n1)) * n2;
        const T f = k0[i] * k1[j];
#pragma unroll
        for (int l = 0; l < W; ++l) {
          T* dst = grid + 2 * (base + wrap_once(s[2] + l, n2));
          Add::add(dst, f * row[2 * l]);
          Add::add(dst + 1, f * row[2 * l + 1]);
        }
      }
    }
  }
}

// ---- interpolation (type 2) --------------------------------------------------------------------

// y = sum over the stencil of grid * weight for one sample, from the fine grid of one batch item.
template <int W, int D, typename T>
RECON_HOST_DEVICE RECON_INLINE void interp_point(const NufftGeom& g, const T* coef, int degree, const T* z,
                                                 const int* s, const T* __restrict__ grid, T* re, T* im) {
  T k0[W], k1[W];
  es_weights_horner<W>(coef, degree, z[0], k0);
  es_weights_horner<W>(coef, degree, z[1], k1);
  const int n0 = g.n[0], n1 = g.n[1], n2 = g.n[2];
  T ar = 0, ai = 0;
  if constexpr (D == 2) {
#pragma unroll 1
    for (int i = 0; i < W; ++i) {
      const T* row = grid + 2 * ((int64_t)wrap_once(s[0] + i, n0) * n1);
      T rr = 0, ri = 0;
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const int c = 2 * wrap_once(s[1] + j, n1);
        rr += k1[j] * ldg(row + c);
        ri += k1[j] * ldg(row + c + 1);
      }
      ar += k0[i] * rr;
      ai += k0[i] * ri;
    }
  } else {
    T k2[W];
    es_weights_horner<W>(coef, degree, z[2], k2);
    int c2[W];
#pragma unroll
    for (int l = 0; l < W; ++l) c2[l] = 2 * wrap_once(s[2] + l, n2);
#pragma unroll 1
    for (int i = 0; i < W; ++i) {
      const int64_t b0 = (int64_t)wrap_once(s[0] + i, n0) * n1;
#pragma unroll 1
      for (int j = 0; j < W; ++j) {
        const T* row = grid + 2 * ((b0 + wrap_once(s[1] + j, n1)) * n2);
        T rr = 0, ri = 0;
#pragma unroll
        for (int l = 0; l < W; ++l) {
          rr += k2[l] * ldg(row + c2[l]);
          ri += k2[l] * ldg(row + c2[l] + 1);
        }
        const T f = k0[i] * k1[j];
        ar += f * rr;
        ai += f * ri;
      }
    }
  }
  *re = ar;
  *im = ai;
}

// ---- deconvolution, zero-padding and cropping (centred positions, as nufft.cpp) -----------------

// Image index along one axis of fine-grid index gi, or -1 where gi lies outside the image support.
// Image index i sits at centred position x = i - floor(N/2), stored at fine-grid index x mod n.
RECON_HOST_DEVICE RECON_INLINE int grid_to_image_index(int gi, int N, int n) {
  const int neg = N / 2, pos = N - N / 2;
  if (gi < pos) return gi + neg;
  if (gi >= n - neg) return gi - n + neg;
  return -1;
}

// Fine-grid index of image index i along one axis (the inverse of grid_to_image_index).
RECON_HOST_DEVICE RECON_INLINE int image_to_grid_index(int i, int N, int n) { return (i - N / 2 + n) % n; }

// Deconvolution and scale factor of image element (i0, i1, i2), rounded like nufft.cpp:
// (scale * d0 * d1) [* d2]. deconv holds the factors of axis 0, then axis 1 (then axis 2).
template <typename T>
RECON_HOST_DEVICE RECON_INLINE T deconv_factor(const NufftGeom& g, const T* deconv, T scale, int i0, int i1, int i2) {
  const T f01 = scale * ldg(deconv + i0) * ldg(deconv + g.N[0] + i1);
  return g.dim == 3 ? f01 * ldg(deconv + g.N[0] + g.N[1] + i2) : f01;
}

// Value of fine-grid cell c (flat, one batch item) after deconvolving and zero-padding image x
// (one batch item): x[i] * factor(i) on the image support, 0 elsewhere.
template <typename T>
RECON_HOST_DEVICE RECON_INLINE void pad_cell(const NufftGeom& g, const T* deconv, T scale, const T* x, int64_t c,
                                             T* re, T* im) {
  const int c2 = (int)(c % g.n[2]);
  const int64_t r = c / g.n[2];
  const int c1 = (int)(r % g.n[1]);
  const int c0 = (int)(r / g.n[1]);
  const int i0 = grid_to_image_index(c0, g.N[0], g.n[0]);
  const int i1 = grid_to_image_index(c1, g.N[1], g.n[1]);
  const int i2 = g.dim == 3 ? grid_to_image_index(c2, g.N[2], g.n[2]) : 0;
  if (i0 < 0 || i1 < 0 || i2 < 0) {
    *re = 0;
    *im = 0;
    return;
  }
  const T f = deconv_factor(g, deconv, scale, i0, i1, i2);
  const int64_t xi = ((int64_t)i0 * g.N[1] + i1) * g.N[2] + i2;
  *re = ldg(x + 2 * xi) * f;
  *im = ldg(x + 2 * xi + 1) * f;
}

// Value of image element e (flat, one batch item) cropped from fine grid `grid` and deconvolved.
template <typename T>
RECON_HOST_DEVICE RECON_INLINE void crop_elem(const NufftGeom& g, const T* deconv, T scale, const T* grid, int64_t e,
                                              T* re, T* im) {
  const int i2 = (int)(e % g.N[2]);
  const int64_t r = e / g.N[2];
  const int i1 = (int)(r % g.N[1]);
  const int i0 = (int)(r / g.N[1]);
  const int g0 = image_to_grid_index(i0, g.N[0], g.n[0]);
  const int g1 = image_to_grid_index(i1, g.N[1], g.n[1]);
  const int g2 = g.dim == 3 ? image_to_grid_index(i2, g.N[2], g.n[2]) : 0;
  const T f = deconv_factor(g, deconv, scale, i0, i1, i2);
  const int64_t gi = ((int64_t)g0 * g.n[1] + g1) * g.n[2] + g2;
  *re = ldg(grid + 2 * gi) * f;
  *im = ldg(grid + 2 * gi + 1) * f;
}

}  // namespace cuda
}  // namespace recon
