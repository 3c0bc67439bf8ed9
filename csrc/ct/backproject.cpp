// Loop drivers for the analytic CT backprojector; the per-voxel maths is in
// csrc/kernels/ct_backproject.h.
//
// Work is split into tiles of kTileRows voxel rows (one z slice), handed to the OpenMP threads
// dynamically. A thread sums every view into its tile's accumulators (kTileRows x nx values: they stay
// in L1/L2 while the views pass over them; the filtered row of one view is read once per tile and
// stays in L1 for the tile's rows) and then adds the tile to the output. Each voxel's sum runs over the
// views in order whatever the number of threads: results do not depend on it (no atomics).
//
// Per view and row the detector coordinates are ratios of linear functions of the voxel index
// (csrc/kernels/ct_backproject.h): the linear maps are set up in double, the voxels are evaluated in
// the data's precision. float data on a CPU with AVX-512 (RECON_NATIVE builds, -march=native) runs 16
// voxels per step: the row's detector samples are fetched by two loads and two permutes when the 16
// voxels fall within 31 consecutive bins (they do whenever a voxel is narrower than about two bins),
// by gathers otherwise. Other builds and float64 data run the same lane functions one voxel at a time
// (an `omp simd` loop the compiler may vectorise).
#include "ct/backproject.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/ct_backproject.h"

namespace recon {
namespace {

enum class Beam { Parallel, Flat, Cone, Arc };

constexpr int kLanes = 16;     // voxels per AVX-512 step; accumulator rows are padded to a multiple
constexpr int kTileRows = 8;   // voxel rows per work item

// The linear maps of one (view, voxel row) in the lane precision S: value k at voxel ix is
// base[k] + ix * slope[k]. Parallel: k = 0 the column (weight: the view weight); flat: k = 0 a w,
// k = 2 w; cone: k = 0, 1, 2 = a w, b w, w; arc: k = 0, 1 = across, along.
template <typename S>
struct RowMap {
  S base[3], slope[3];
  S view_weight;        // parallel beams only (divergent beams carry it in the scaling)
  S inv_dgamma, centre; // arc only
  bool front;           // every voxel of the (padded) row is in front of the source
};

// Detector column a (row b for cone beams) and weight of the voxels at indices x along the row; a = -1
// (off the detector) and weight 0 behind the source.
template <Beam B, typename V, typename S>
RECON_INLINE V column_at(const RowMap<S>& m, V x, V* b, V* weight) {
  if constexpr (B == Beam::Parallel) {
    *weight = V{} + m.view_weight;
    return m.base[0] + x * m.slope[0];
  } else if constexpr (B == Beam::Arc) {
    return ct_arc_column(m.base[0] + x * m.slope[0], m.base[1] + x * m.slope[1], m.inv_dgamma, m.centre, weight);
  } else {
    V inv_w;
    const V a = ct_flat_column(m.base[0] + x * m.slope[0], m.base[2] + x * m.slope[2], &inv_w);
    if constexpr (B == Beam::Cone) *b = (m.base[1] + x * m.slope[1]) * inv_w;
    *weight = inv_w * inv_w;
    return a;
  }
}

// One voxel at a time (float64 data, builds without AVX-512).
template <Beam B, typename T>
void accumulate_row_portable(const T* q, int nv, int nu, const RowMap<T>& m, int64_t nx, T* acc) {
#pragma omp simd
  for (int64_t ix = 0; ix < nx; ++ix) {
    T b = 0, weight;
    const T a = column_at<B>(m, (T)ix, &b, &weight);
    const T v = B == Beam::Cone ? ct_interp2(q, nv, nu, b, a) : ct_interp1(q, nu, a);
    acc[ix] += weight * v;
  }
}

#if defined(__AVX512F__)

RECON_INLINE int first_lane(__m512i v) { return _mm_cvtsi128_si32(_mm512_castsi512_si128(v)); }
RECON_INLINE int last_lane(__m512i v) { return _mm_extract_epi32(_mm512_extracti32x4_epi32(v, 3), 3); }

// min(max(v, 0), hi); NaN -> 0 (max returns its second operand when the first is NaN).
RECON_INLINE __m512 clamp_index(__m512 v, __m512 hi) {
  return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), hi);
}

// The first `count` of 16 floats at p (count may be <= 0 or > 16); zeros after them. Nothing past
// p + count is read.
RECON_INLINE __m512 load_first(const float* p, int count) {
  if (count >= kLanes) return _mm512_loadu_ps(p);
  if (count <= 0) return _mm512_setzero_ps();
  return _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1u), p);
}

// Where 16 voxels sample a detector row of n bins: bin i = floor(a) and fraction t (a clamped into
// [0, n-1]), the lanes with a inside [0, n-1], and whether all lanes lie in the 31-bin window
// [first, first + 30] (needs a monotone along the lanes: every voxel in front of the source).
struct Columns16 {
  __m512i i;
  __m512 t;
  __mmask16 in;
  bool window;
  int first;
};

RECON_INLINE Columns16 columns16(__m512 a, int n, bool monotone) {
  const __m512 hi = _mm512_set1_ps((float)(n - 1));
  Columns16 c;
  c.in = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GE_OQ) & _mm512_cmp_ps_mask(a, hi, _CMP_LE_OQ);
  const __m512 ac = clamp_index(a, hi);
  c.i = _mm512_cvttps_epi32(ac);  // floor: ac >= 0
  c.t = ac - _mm512_cvtepi32_ps(c.i);
  const int i0 = first_lane(c.i), i15 = last_lane(c.i);
  c.first = std::min(i0, i15);
  c.window = monotone && std::abs(i15 - i0) <= 30;
  return c;
}

// Detector row q (n bins) linearly interpolated at the columns. Lanes off the detector hold the value
// at the nearest edge (finite): the caller masks them with Columns16::in.
RECON_INLINE __m512 row16(const float* q, int n, const Columns16& c) {
  __m512 v0, v1;
  if (c.window) {  // bins first .. first + 31 (zeros past the row's end: read only where t == 0 or masked)
    const float* p = q + c.first;
    const int left = n - c.first;
    const __m512 lo = load_first(p, left), hi = load_first(p + kLanes, left - kLanes);
    const __m512i k = _mm512_sub_epi32(c.i, _mm512_set1_epi32(c.first));
    v0 = _mm512_permutex2var_ps(lo, k, hi);
    v1 = _mm512_permutex2var_ps(lo, _mm512_add_epi32(k, _mm512_set1_epi32(1)), hi);
  } else {
    const __m512i i1 = _mm512_min_epi32(_mm512_add_epi32(c.i, _mm512_set1_epi32(1)), _mm512_set1_epi32(n - 1));
    v0 = _mm512_i32gather_ps(c.i, q, 4);
    v1 = _mm512_i32gather_ps(i1, q, 4);
  }
  return ct_lerp(v0, v1, c.t);
}

// Most detector rows (plus one) that image16 reads by windows for 16 voxels; more go through gathers.
constexpr int kMaxRowSpan = 3;

// Detector image q (nv x nu, nv * nu < 2^31) bilinearly interpolated at rows b and the columns; *in
// narrows to the lanes on the detector (the others hold finite values).
RECON_INLINE __m512 image16(const float* q, int nv, int nu, const Columns16& c, __m512 b, __mmask16* in) {
  const __m512 hi = _mm512_set1_ps((float)(nv - 1));
  *in = c.in & _mm512_cmp_ps_mask(b, _mm512_setzero_ps(), _CMP_GE_OQ) & _mm512_cmp_ps_mask(b, hi, _CMP_LE_OQ);
  if (!*in) return _mm512_setzero_ps();
  const __m512 bc = clamp_index(b, hi);
  const __m512i j = _mm512_cvttps_epi32(bc);
  const __m512 tb = bc - _mm512_cvtepi32_ps(j);
  const int j0 = first_lane(j), j15 = last_lane(j);
  const int jlo = std::min(j0, j15), span = std::abs(j15 - j0);
  if (c.window && span <= kMaxRowSpan) {  // b monotone too: lanes on rows jlo .. jlo + span (+ 1)
    const auto row = [&](int jj) { return jj < nv ? row16(q + (int64_t)jj * nu, nu, c) : _mm512_setzero_ps(); };
    __m512 below = row(jlo), above = row(jlo + 1);
    __m512 r0 = below, r1 = above;
    for (int k = 1; k <= span; ++k) {
      below = above;
      above = row(jlo + k + 1);
      const __mmask16 here = _mm512_cmpeq_epi32_mask(j, _mm512_set1_epi32(jlo + k));
      r0 = _mm512_mask_mov_ps(r0, here, below);
      r1 = _mm512_mask_mov_ps(r1, here, above);
    }
    return ct_lerp(r0, r1, tb);
  }
  const __m512i one = _mm512_set1_epi32(1), width = _mm512_set1_epi32(nu);
  const __m512i i1 = _mm512_min_epi32(_mm512_add_epi32(c.i, one), _mm512_set1_epi32(nu - 1));
  const __m512i o0 = _mm512_mullo_epi32(j, width);
  const __m512i o1 = _mm512_mullo_epi32(_mm512_min_epi32(_mm512_add_epi32(j, one), _mm512_set1_epi32(nv - 1)), width);
  const __m512 v00 = _mm512_i32gather_ps(_mm512_add_epi32(o0, c.i), q, 4);
  const __m512 v01 = _mm512_i32gather_ps(_mm512_add_epi32(o0, i1), q, 4);
  const __m512 v10 = _mm512_i32gather_ps(_mm512_add_epi32(o1, c.i), q, 4);
  const __m512 v11 = _mm512_i32gather_ps(_mm512_add_epi32(o1, i1), q, 4);
  return ct_lerp(ct_lerp(v00, v01, c.t), ct_lerp(v10, v11, c.t), tb);
}

// 16 voxels per step; acc holds nx rounded up to a multiple of 16 (the extra lanes are discarded).
template <Beam B>
void accumulate_row_avx512(const float* q, int nv, int nu, const RowMap<float>& m, int64_t nx, float* acc) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t c = 0; c < nx; c += kLanes) {
    const __m512 x = iota + (float)c;
    __m512 b, weight;
    const __m512 a = column_at<B>(m, x, &b, &weight);
    const Columns16 col = columns16(a, nu, m.front);
    if (!col.in) continue;
    __mmask16 in = col.in;
    const __m512 v = B == Beam::Cone ? image16(q, nv, nu, col, b, &in) : row16(q, nu, col);
    _mm512_storeu_ps(acc + c, _mm512_mask3_fmadd_ps(v, weight, _mm512_loadu_ps(acc + c), in));
  }
}

#endif  // __AVX512F__

template <Beam B, typename T>
RECON_INLINE void accumulate_row(const T* q, int nv, int nu, const RowMap<T>& m, int64_t nx, T* acc) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    accumulate_row_avx512<B>(q, nv, nu, m, nx, acc);
    return;
  }
#endif
  accumulate_row_portable<B>(q, nv, nu, m, nx, acc);
}

// Runs tile(iz, iy0, rows, acc, stride) over all tiles of kTileRows rows of the (nz, ny, nx) volume and
// adds each tile's accumulators (rows x stride, zeroed before) to out.
template <typename T, typename Tile>
void for_each_tile(const int64_t* vol_shape, int nthreads, T* out, const Tile& tile) {
  const int64_t nz = vol_shape[0], ny = vol_shape[1], nx = vol_shape[2];
  const int64_t stride = (nx + kLanes - 1) / kLanes * kLanes;
  const int64_t tiles_y = (ny + kTileRows - 1) / kTileRows;
  const int64_t ntiles = nz * tiles_y;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> buf(kTileRows * stride + 64 / sizeof(T));
    T* acc = buf.data();
    while (reinterpret_cast<uintptr_t>(acc) % 64) ++acc;  // cache-line aligned rows
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t iz = t / tiles_y, iy0 = (t % tiles_y) * kTileRows;
      const int rows = (int)std::min<int64_t>(kTileRows, ny - iy0);
      std::fill(acc, acc + rows * stride, T(0));
      tile(iz, iy0, rows, acc, stride);
      for (int r = 0; r < rows; ++r) {
        T* o = out + ((iz * ny) + iy0 + r) * nx;
        const T* s = acc + r * stride;
#pragma omp simd
        for (int64_t ix = 0; ix < nx; ++ix) o[ix] += s[ix];
      }
    }
  }
}

// Rounds the double-precision row map to the lane precision T.
template <typename T>
RowMap<T> lane_map(const double* base, const double* slope, int depth_k, int64_t stride) {
  RowMap<T> m{};
  for (int k = 0; k < 3; ++k) {
    m.base[k] = (T)base[k];
    m.slope[k] = (T)slope[k];
  }
  m.front = depth_k < 0 || (base[depth_k] > RECON_CT_MIN_DEPTH &&
                            base[depth_k] + (double)(stride - 1) * slope[depth_k] > RECON_CT_MIN_DEPTH);
  return m;
}

template <Beam B, typename T>
void backproject_projective(const T* q, int64_t nproj, int nv, int nu, const double* P, const double* weights,
                            const int64_t* vol_shape, const double* origin, const double* step, T* out,
                            int nthreads) {
  const int64_t plane = (int64_t)nv * nu, nx = vol_shape[2];
  for_each_tile(vol_shape, nthreads, out, [&](int64_t iz, int64_t iy0, int rows, T* acc, int64_t stride) {
    const double z = origin[0] + (double)iz * step[0];
    for (int64_t p = 0; p < nproj; ++p) {
      const double W = weights[p];
      if (!(W > 0.0)) continue;
      const double scale = B == Beam::Parallel ? 1.0 : 1.0 / std::sqrt(W);
      for (int r = 0; r < rows; ++r) {
        const double y = origin[1] + (double)(iy0 + r) * step[1];
        double base[3], slope[3];
        ct_projective_row(P + 12 * p, scale, origin[2], step[2], y, z, base, slope);
        RowMap<T> m = lane_map<T>(base, slope, B == Beam::Parallel ? -1 : 2, stride);
        m.view_weight = (T)W;
        accumulate_row<B>(q + p * plane, nv, nu, m, nx, acc + r * stride);
      }
    }
  });
}

}  // namespace

template <typename T>
void ct_backproject_projective(const T* q, int64_t nproj, int64_t nv, int64_t nu, const double* P,
                               const double* weights, const int64_t* vol_shape, const double* origin,
                               const double* step, T* out, int nthreads) {
  if (nthreads <= 0) nthreads = omp_get_max_threads();
  bool parallel = true;  // w == 1 for every view: no division per voxel
  for (int64_t p = 0; p < nproj && parallel; ++p) {
    const double* w = P + 12 * p + 8;
    parallel = w[0] == 0.0 && w[1] == 0.0 && w[2] == 0.0 && w[3] == 1.0;
  }
  const auto run = [&](auto beam) {
    backproject_projective<decltype(beam)::value, T>(q, nproj, (int)nv, (int)nu, P, weights, vol_shape, origin,
                                                      step, out, nthreads);
  };
  if (nv > 1)
    run(std::integral_constant<Beam, Beam::Cone>{});
  else if (parallel)
    run(std::integral_constant<Beam, Beam::Parallel>{});
  else
    run(std::integral_constant<Beam, Beam::Flat>{});
}

template <typename T>
void ct_backproject_arc2d(const T* q, int64_t nproj, int64_t nu, const double* src, const double* frame,
                          double dgamma, double centre, const double* weights, const int64_t* vol_shape,
                          const double* origin, const double* step, T* out, int nthreads) {
  if (nthreads <= 0) nthreads = omp_get_max_threads();
  const int64_t shape3[3] = {1, vol_shape[0], vol_shape[1]}, nx = vol_shape[1];
  for_each_tile(shape3, nthreads, out, [&](int64_t, int64_t iy0, int rows, T* acc, int64_t stride) {
    for (int64_t p = 0; p < nproj; ++p) {
      const double W = weights[p];
      if (!(W > 0.0)) continue;
      for (int r = 0; r < rows; ++r) {
        const double y = origin[0] + (double)(iy0 + r) * step[0];
        double base[3] = {0, 0, 0}, slope[3] = {0, 0, 0};
        ct_arc_row(src + 2 * p, frame + 4 * p, W, origin[1], step[1], y, base, slope);
        RowMap<T> m = lane_map<T>(base, slope, 1, stride);
        m.inv_dgamma = (T)(1.0 / dgamma);
        m.centre = (T)centre;
        accumulate_row<Beam::Arc>(q + p * nu, 1, (int)nu, m, nx, acc + r * stride);
      }
    }
  });
}

template void ct_backproject_projective<float>(const float*, int64_t, int64_t, int64_t, const double*,
                                               const double*, const int64_t*, const double*, const double*,
                                               float*, int);
template void ct_backproject_projective<double>(const double*, int64_t, int64_t, int64_t, const double*,
                                                const double*, const int64_t*, const double*, const double*,
                                                double*, int);
template void ct_backproject_arc2d<float>(const float*, int64_t, int64_t, const double*, const double*, double,
                                          double, const double*, const int64_t*, const double*, const double*,
                                          float*, int);
template void ct_backproject_arc2d<double>(const double*, int64_t, int64_t, const double*, const double*, double,
                                           double, const double*, const int64_t*, const double*, const double*,
                                           double*, int);

}  // namespace recon
