// CPU loop drivers of the Joseph projector; all weights come from csrc/kernels/joseph.h.

// Before any include (functions with different target options do not inline into each other).
// GCC's default tuning for recent Intel cores avoids AVX2/AVX-512 gathers; the Joseph loops are
// gather-bound and run ~2x faster with them (measured on this project's Xeon). Tuning only: the
// instruction set still comes from -march.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("tune=skylake-avx512")
#endif
#include "ct/projector.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/joseph.h"

namespace recon {

using joseph::Grid;
using joseph::Line;

namespace {

int resolve_threads(int nthreads) { return nthreads > 0 ? nthreads : omp_get_max_threads(); }

Grid make_grid(const CtProjectorSpec& s) {
  Grid g;
  g.n[0] = s.nx;
  g.n[1] = s.ny;
  g.n[2] = s.nz;
  g.v[0] = s.vx;
  g.v[1] = s.vy;
  g.v[2] = s.vz;
  return g;
}

// The line of sub-ray `sub` (0 .. S*S-1 in 3D, 0 .. S-1 in 2D) of detector bin (row, col) of view.
template <typename T>
inline Line<T> ray_line(const CtProjectorSpec& s, const Grid& g, int nd, int64_t view, int row, int col, int sub) {
  return joseph::subray_line<T>(s.kind, nd, s.subsample, s.det_rows, s.det_cols,
                                s.vectors.data() + view * joseph::vec_len(s.kind), g, row, col, sub);
}

// Zero-padded copies (pad 1 before, 2 after on every axis) for the forward:
// P1: [z][y][x] order, P2: [z][x][y] order (x and y swapped) so that y-driven rays step contiguously.
template <typename T>
void make_padded(const T* x, const CtProjectorSpec& s, int nd, T* P1, T* P2, int nt) {
  const int64_t px = s.nx + 3, py = s.ny + 3, pz = nd == 3 ? s.nz + 3 : 1;
  const int64_t zoff = nd == 3 ? 1 : 0;
  const int64_t nslab = pz;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t zp = 0; zp < nslab; ++zp) {
    T* a = P1 + zp * py * px;
    T* b = P2 + zp * px * py;
    std::fill(a, a + py * px, T(0));
    std::fill(b, b + px * py, T(0));
    const int64_t z = zp - zoff;
    if (z < 0 || z >= s.nz) continue;
    const T* src = x + z * (int64_t)s.ny * s.nx;
    for (int64_t yy = 0; yy < s.ny; ++yy) {
      const T* row = src + yy * s.nx;
      std::copy(row, row + s.nx, a + (yy + 1) * px + 1);
      for (int64_t xx = 0; xx < s.nx; ++xx) b[(xx + 1) * py + yy + 1] = row[xx];
    }
  }
}

template <typename T, typename Idx>
T forward_line(const Line<T>& L, const CtProjectorSpec& s, int nd, const T* P1, const T* P2) {
  using joseph::JosephForward;
  const Idx px = s.nx + 3, py = s.ny + 3;
  T acc = T(0);
  const int k0 = L.k0, k1 = L.k1;
  if (nd == 2) {
    if (L.axis == 0) {  // x-driven: P1 [y][x], taps in y
      const Idx off = px + 1, s1 = px;
      const int n1 = s.ny;
#pragma omp simd reduction(+ : acc)
      for (int k = k0; k < k1; ++k) joseph::step2d_padded<JosephForward>(L, k, n1, P1, off, Idx(1), s1, acc);
    } else {  // y-driven: P2 [x][y], taps in x
      const Idx off = py + 1, s1 = py;
      const int n1 = s.nx;
#pragma omp simd reduction(+ : acc)
      for (int k = k0; k < k1; ++k) joseph::step2d_padded<JosephForward>(L, k, n1, P2, off, Idx(1), s1, acc);
    }
  } else {
    const Idx plane = px * py;
    if (L.axis == 0) {  // taps (y, z) in P1 [z][y][x]
      const Idx off = plane + px + 1;
      const int n1 = s.ny, n2 = s.nz;
#pragma omp simd reduction(+ : acc)
      for (int k = k0; k < k1; ++k)
        joseph::step3d_padded<JosephForward>(L, k, n1, n2, P1, off, Idx(1), px, plane, acc);
    } else if (L.axis == 1) {  // taps (x, z) in P2 [z][x][y]
      const Idx off = plane + py + 1;
      const int n1 = s.nx, n2 = s.nz;
#pragma omp simd reduction(+ : acc)
      for (int k = k0; k < k1; ++k)
        joseph::step3d_padded<JosephForward>(L, k, n1, n2, P2, off, Idx(1), py, plane, acc);
    } else {  // z-driven: taps (x, y) in P1
      const Idx off = plane + px + 1;
      const int n1 = s.nx, n2 = s.ny;
#pragma omp simd reduction(+ : acc)
      for (int k = k0; k < k1; ++k)
        joseph::step3d_padded<JosephForward>(L, k, n1, n2, P1, off, plane, Idx(1), px, acc);
    }
  }
  return acc * L.step;
}

template <typename T, typename Idx>
void forward_impl(const CtProjectorSpec& s, const T* x, T* y, int64_t batch, int nt) {
  const int nd = s.kind == joseph::CONE_FLAT ? 3 : 2;
  const Grid g = make_grid(s);
  const int64_t npad = (int64_t)(s.nx + 3) * (s.ny + 3) * (nd == 3 ? s.nz + 3 : 1);
  std::vector<T> P1(npad), P2(npad);
  const int64_t img = (int64_t)s.nx * s.ny * s.nz;
  const int64_t sino = s.n_views * s.det_rows * s.det_cols;
  const int nsub = nd == 3 ? s.subsample * s.subsample : s.subsample;
  const int64_t nwork = s.n_views * s.det_rows;
  for (int64_t b = 0; b < batch; ++b) {
    make_padded(x + b * img, s, nd, P1.data(), P2.data(), nt);
    T* yb = y + b * sino;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t w = 0; w < nwork; ++w) {
      const int64_t view = w / s.det_rows;
      const int row = (int)(w % s.det_rows);
      T* out = yb + w * s.det_cols;
      for (int col = 0; col < s.det_cols; ++col) {
        T sum = T(0);
        for (int sub = 0; sub < nsub; ++sub) {
          const Line<T> L = ray_line<T>(s, g, nd, view, row, col, sub);
          if (L.k0 < L.k1) sum += forward_line<T, Idx>(L, s, nd, P1.data(), P2.data());
        }
        out[col] = sum;
      }
    }
  }
}

// ---- adjoint --------------------------------------------------------------------------------
// The adjoint visits the same (ray, step) pairs with the same weights as the forward.
// 2D: a chunk of CH consecutive steps of one ray hits voxels (tap rows i(k), i(k)+1) x (steps k);
// the steps are contiguous in memory (x-driven rays write an accumulator [y][x], y-driven rays a
// transposed one [x][y], both 64-byte aligned with rows padded to whole chunks), so the chunk is
// written row by row with aligned SIMD read-modify-writes, one per tap row it touches (measured
// ~1.5x faster than a scatter per tap). 3D: one SIMD lane per step, scattered (a ray never visits
// a voxel twice, so lanes never collide). Rows outside the thread's slab or the image are skipped:
// those weights belong to other threads or to the zero padding.
constexpr int CH = 16;

// 2D: chunk [kc, kc + len) of line L; taps along an axis of n1 voxels with row stride s1 in `out`,
// rows restricted to [lo, hi) (within [0, n1)); out + kc is the first lane of row 0.
template <typename T, bool Full>
inline void adjoint_chunk_2d(const Line<T>& L, int kc, int la, int lb, int n1, int lo, int hi, T* out, int64_t s1,
                             T val) {
  using joseph::JosephAdjoint;
  int ii[CH];
  T w0[CH], w1[CH];
#pragma omp simd simdlen(CH)
  for (int l = 0; l < CH; ++l) {
    const int kk = Full ? l : (l < la ? la : (l < lb ? l : lb - 1));
    T t;
    joseph::taps(L.a1 + L.b1 * (T)(kc + kk), n1, &ii[l], &t);
    w0[l] = T(1) - t;
    w1[l] = t;
  }
  // taps are monotone in k: the chunk's rows span the end lanes' rows
  const int e0 = Full ? 0 : la, e1 = Full ? CH - 1 : lb - 1;
  const int ra = std::max(std::min(ii[e0], ii[e1]), lo);
  const int rb = std::min(std::max(ii[e0], ii[e1]) + 1, hi - 1);
  for (int j = ra; j <= rb; ++j) {
    T* row = out + j * s1 + kc;
    if (Full) {
#pragma omp simd simdlen(CH)
      for (int l = 0; l < CH; ++l)
        JosephAdjoint::apply(row, l, ii[l] == j ? w0[l] : (ii[l] + 1 == j ? w1[l] : T(0)), val);
    } else {
#pragma omp simd simdlen(CH)
      for (int l = 0; l < CH; ++l)
        if (l >= la && l < lb) JosephAdjoint::apply(row, l, ii[l] == j ? w0[l] : (ii[l] + 1 == j ? w1[l] : T(0)), val);
    }
  }
}

// All steps [k0, k1) of a 2D line in row chunks (chunk starts aligned to CH in k).
template <typename T>
inline void adjoint_chunks_2d(const Line<T>& L, int k0, int k1, int n1, int lo, int hi, T* out, int64_t s1, T val) {
  for (int kc = k0 - k0 % CH; kc < k1; kc += CH) {
    const int la = std::max(0, k0 - kc), lb = std::min(CH, k1 - kc);
    if (la == 0 && lb == CH)
      adjoint_chunk_2d<T, true>(L, kc, 0, CH, n1, lo, hi, out, s1, val);
    else
      adjoint_chunk_2d<T, false>(L, kc, la, lb, n1, lo, hi, out, s1, val);
  }
}

// Sub-range [kA, kB) of [kA, kB) on which lo + 0.5 <= a + b k <= hi - 1.5 holds with a wide margin,
// so that both taps floor(f), floor(f) + 1 lie in [lo, hi): there the bounds need no checking.
inline void inner_range(double a, double b, int lo, int hi, int* kA, int* kB) {
  const double flo = lo + 0.5, fhi = hi - 1.5;
  if (fhi < flo) {
    *kB = *kA;
    return;
  }
  if (b == 0.0) {
    if (!(a >= flo && a <= fhi)) *kB = *kA;
    return;
  }
  const double ka = (flo - a) / b, kb = (fhi - a) / b;
  const double kl = std::ceil(std::min(ka, kb)), kh = std::floor(std::max(ka, kb)) + 1.0;
  if (kl > (double)*kA) *kA = kl > (double)*kB ? *kB : (int)kl;
  if (kh < (double)*kB) *kB = kh < (double)*kA ? *kA : (int)kh;
}

// Runs `masked` on [k0, kA) and [kB, k1) and `inner` on [kA, kB) (all of [k0, k1) masked if empty).
template <class Masked, class Inner>
inline void split_loop(int k0, int k1, int kA, int kB, Masked&& masked, Inner&& inner) {
  if (kA >= kB) {
    masked(k0, k1);
    return;
  }
  masked(k0, kA);
  inner(kA, kB);
  masked(kB, k1);
}

// Scatter form: one SIMD lane per step (a ray never visits a voxel twice, so lanes never collide).
// Steps whose taps all lie in [lo, hi) x image use the unchecked step (the forward's), the others
// bounded taps (weight 0 outside). 2D: taps along an axis of n1 voxels with stride s1, steps with
// stride sk.
template <typename T, typename Idx>
RECON_INLINE void adjoint_scatter_3d(const Line<T>& L, int k0, int k1, int n1, int lo1, int hi1, int n2, int lo2, int hi2,
                               T* out, Idx sk, Idx s1, Idx s2, T val) {
  using joseph::JosephAdjoint;
  int kA = k0, kB = k1;
  inner_range((double)L.a1, (double)L.b1, lo1, hi1, &kA, &kB);
  inner_range((double)L.a2, (double)L.b2, lo2, hi2, &kA, &kB);
  split_loop(
      k0, k1, kA, kB,
      [&](int a, int b) {
#pragma omp simd
        for (int k = a; k < b; ++k)
          joseph::step3d_bounded<JosephAdjoint>(L, k, n1, lo1, hi1, n2, lo2, hi2, out, sk, s1, s2, val);
      },
      [&](int a, int b) {
#pragma omp simd
        for (int k = a; k < b; ++k) joseph::step3d_padded<JosephAdjoint>(L, k, n1, n2, out, Idx(0), sk, s1, s2, val);
      });
}

// The adjoint contribution of one line to the slab [lo, hi) of the ownership axis (rows in 2D,
// slices in 3D). x: the image [z][y][x]; xt: the transposed accumulator [x][y] (2D y-driven rays).
template <typename T, typename Idx>
void adjoint_line(const Line<T>& L, const CtProjectorSpec& s, int nd, int lo, int hi, T val, T* x, T* xt, Idx sxa,
                  Idx sxt) {
  int k0 = L.k0, k1 = L.k1;
  const Idx nx = s.nx, ny = s.ny;
  if (nd == 2) {
    if (L.axis == 0) {  // x-driven: steps = columns of x, taps in rows (the slab axis)
      if (!joseph::k_range((double)L.a1, (double)L.b1, lo - 1.0, (double)hi, s.nx, &k0, &k1)) return;
      adjoint_chunks_2d(L, k0, k1, s.ny, lo, hi, x, (int64_t)sxa, val);
    } else {  // y-driven: steps = rows (the slab axis), taps in columns; into xt [x][y]
      k0 = std::max(k0, lo);
      k1 = std::min(k1, hi);
      if (k0 >= k1) return;
      adjoint_chunks_2d(L, k0, k1, s.nx, 0, s.nx, xt, (int64_t)sxt, val);
    }
  } else {
    const Idx plane = nx * ny;
    if (L.axis == 0) {  // taps (y, z); z = slab axis
      if (!joseph::k_range((double)L.a2, (double)L.b2, lo - 1.0, (double)hi, s.nx, &k0, &k1)) return;
      adjoint_scatter_3d<T, Idx>(L, k0, k1, s.ny, 0, s.ny, s.nz, lo, hi, x, Idx(1), nx, plane, val);
    } else if (L.axis == 1) {  // taps (x, z)
      if (!joseph::k_range((double)L.a2, (double)L.b2, lo - 1.0, (double)hi, s.ny, &k0, &k1)) return;
      adjoint_scatter_3d<T, Idx>(L, k0, k1, s.nx, 0, s.nx, s.nz, lo, hi, x, nx, Idx(1), plane, val);
    } else {  // z-driven: slices are the driving axis; taps (x, y)
      k0 = std::max(k0, lo);
      k1 = std::min(k1, hi);
      if (k0 >= k1) return;
      adjoint_scatter_3d<T, Idx>(L, k0, k1, s.nx, 0, s.nx, s.ny, 0, s.ny, x, plane, Idx(1), nx, val);
    }
  }
}

template <typename T, typename Idx>
void adjoint_impl(const CtProjectorSpec& s, const T* y, T* x, int64_t batch, int nt) {
  const int nd = s.kind == joseph::CONE_FLAT ? 3 : 2;
  const Grid g = make_grid(s);
  const int slab_n = nd == 3 ? s.nz : s.ny;
  nt = std::max(1, std::min(nt, slab_n));
  const int64_t nx = s.nx, ny = s.ny, plane = nx * ny;
  const int64_t img = plane * s.nz;
  const int64_t slab_size = img / slab_n;  // elements per row (2D) / slice (3D)
  const int64_t sino = s.n_views * s.det_rows * s.det_cols;
  const int nsub = nd == 3 ? s.subsample * s.subsample : s.subsample;
  const int64_t per_view = (int64_t)s.det_rows * s.det_cols * nsub;
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 18) / per_view);
  std::vector<Line<T>> lines((size_t)(std::min<int64_t>(block, s.n_views) * per_view));
  // 2D: aligned accumulators with rows padded to whole chunks (so row chunks are aligned vectors):
  // xa [y][x] for x-driven rays, xt [x][y] for y-driven rays; summed into x at the end.
  const int64_t sxa = nd == 2 ? (nx + CH - 1) / CH * CH : nx, sxt = nd == 2 ? (ny + CH - 1) / CH * CH : ny;
  const int64_t align = 64 / (int64_t)sizeof(T);
  std::vector<T> acc_buf(nd == 2 ? (size_t)(ny * sxa + nx * sxt + 2 * align) : 0);
  T* xa = nullptr;
  T* xt = nullptr;
  if (nd == 2) {
    xa = acc_buf.data() + (align - ((uintptr_t)acc_buf.data() / sizeof(T)) % align) % align;
    xt = xa + (ny * sxa + align - 1) / align * align;
  }

  for (int64_t b = 0; b < batch; ++b) {
    T* xb = x + b * img;
    const T* yb = y + b * sino;
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      const int T_ = omp_get_num_threads();
      const int lo = (int)((int64_t)slab_n * tid / T_), hi = (int)((int64_t)slab_n * (tid + 1) / T_);
      if (nd == 2) {
        std::fill(xa + lo * sxa, xa + hi * sxa, T(0));
        for (int64_t c = 0; c < nx; ++c) std::fill(xt + c * sxt + lo, xt + c * sxt + hi, T(0));
      } else {
        std::fill(xb + lo * slab_size, xb + hi * slab_size, T(0));
      }
      for (int64_t v0 = 0; v0 < s.n_views; v0 += block) {
        const int64_t nv = std::min(block, s.n_views - v0);
        const int64_t nl = nv * per_view;
#pragma omp for schedule(static)
        for (int64_t li = 0; li < nl; ++li) {
          const int64_t ray = li / nsub;
          const int sub = (int)(li % nsub);
          const int64_t view = v0 + ray / ((int64_t)s.det_rows * s.det_cols);
          const int64_t rc = ray % ((int64_t)s.det_rows * s.det_cols);
          lines[li] = ray_line<T>(s, g, nd, view, (int)(rc / s.det_cols), (int)(rc % s.det_cols), sub);
        }
        if (lo < hi) {
          const int64_t r0 = v0 * s.det_rows * s.det_cols;
          for (int64_t li = 0; li < nl; ++li) {
            const Line<T>& L = lines[li];
            if (L.k0 >= L.k1) continue;
            const T val = yb[r0 + li / nsub] * L.step;
            if (val != T(0)) adjoint_line<T, Idx>(L, s, nd, lo, hi, val, nd == 2 ? xa : xb, xt, (Idx)sxa, (Idx)sxt);
          }
        }
#pragma omp barrier
      }
      // fold the transposed accumulator into the slab this thread owns
      if (nd == 2)
        for (int64_t r = lo; r < hi; ++r)
          for (int64_t c = 0; c < nx; ++c) xb[r * nx + c] = xa[r * sxa + c] + xt[c * sxt + r];
    }
  }
}

}  // namespace

JosephProjector::JosephProjector(CtProjectorSpec spec) : spec_(std::move(spec)) {
  const auto& s = spec_;
  validate_ct_spec(s);
  const int64_t npad = (int64_t)(s.nx + 3) * (s.ny + 3) * (s.kind == joseph::CONE_FLAT ? s.nz + 3 : 1);
  small_index_ = npad < (int64_t(1) << 31) - 16;
}

template <typename T>
void JosephProjector::forward(const T* x, T* y, int64_t batch, int nthreads) const {
  const int nt = resolve_threads(nthreads);
  if (small_index_)
    forward_impl<T, int32_t>(spec_, x, y, batch, nt);
  else
    forward_impl<T, int64_t>(spec_, x, y, batch, nt);
}

template <typename T>
void JosephProjector::adjoint(const T* y, T* x, int64_t batch, int nthreads) const {
  const int nt = resolve_threads(nthreads);
  if (small_index_)
    adjoint_impl<T, int32_t>(spec_, y, x, batch, nt);
  else
    adjoint_impl<T, int64_t>(spec_, y, x, batch, nt);
}

template void JosephProjector::forward<float>(const float*, float*, int64_t, int) const;
template void JosephProjector::forward<double>(const double*, double*, int64_t, int) const;
template void JosephProjector::adjoint<float>(const float*, float*, int64_t, int) const;
template void JosephProjector::adjoint<double>(const double*, double*, int64_t, int) const;

}  // namespace recon
