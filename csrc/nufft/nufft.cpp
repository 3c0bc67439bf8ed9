#include "nufft/nufft.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "nufft/simd.h"
#include "pocketfft/pocketfft_hdronly.h"

namespace recon {

int64_t fine_grid_size(int64_t N, double sigma, int width) {
  if (N < 1) throw std::invalid_argument("image size must be >= 1, got " + std::to_string(N));
  if (!(sigma >= 1.0) || !(sigma <= 3.0)) throw std::invalid_argument("upsampfac must lie in [1, 3], got " + fmt_g(sigma));
  if (width < 1 || width > 64) throw std::invalid_argument("kernel width must lie in [1, 64], got " + std::to_string(width));
  // checked in double before any integer conversion: sigma * N cannot overflow there
  const double want = std::max(std::ceil(sigma * (double)N), 2.0 * width);
  if (want > (double)kMaxFineGridAxis)
    throw std::invalid_argument("fine grid too large: image size " + std::to_string(N) + " at upsampfac " + fmt_g(sigma) +
                                " needs a fine-grid axis of " + fmt_g(want) + " points, more than the limit " +
                                std::to_string(kMaxFineGridAxis) + " (2^30)");
  const int64_t target = (int64_t)want;
  // the smallest even 2^a 3^b 5^c >= target (a >= 1), by enumeration: at most ~30^3 candidates
  int64_t best = INT64_MAX;
  for (int64_t p5 = 1; p5 < best && p5 <= 2 * (int64_t)kMaxFineGridAxis; p5 *= 5)
    for (int64_t p35 = p5; p35 < best && p35 <= 2 * (int64_t)kMaxFineGridAxis; p35 *= 3) {
      int64_t n = 2 * p35;
      while (n < target) n *= 2;
      best = std::min(best, n);
    }
  return best;
}

namespace {

constexpr int kBlock = 8;  // samples whose kernel weights are evaluated together

// RECON_NUFFT_TIMING=1 prints per-phase wall times to stderr (development aid).
struct PhaseTimer {
  bool on = std::getenv("RECON_NUFFT_TIMING") != nullptr;
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  void lap(const char* what) {
    if (!on) return;
    auto now = std::chrono::steady_clock::now();
    std::fprintf(stderr, "  %-12s %8.3f ms\n", what, std::chrono::duration<double, std::milli>(now - t).count());
    t = now;
  }
};

// Bin edge per dimension: at least the kernel width, small enough that a padded sub-grid stays in
// cache. The last bin along an axis holds >= w - 1 cells (or is whole), so that a padded sub-grid
// wraps around at most once. In 3D a bin spans the whole last axis when its padded sub-grid stays
// within 1 MiB: sub-grids are then added to the fine grid as whole contiguous rows, and the halo
// along that axis disappears (3D 128^3 type 1: 11 % faster at 1e-3, 25 % at 1e-6).
int64_t choose_bin_size(int dim, int axis, int width, int64_t n, int64_t cell_bytes) {
  if (dim == 3 && axis == 2) {
    const int64_t lead = 8 + width - 1;
    if (lead * lead * (n + width + 3) * cell_bytes <= (int64_t(1) << 20)) return n;
  }
  int64_t b = std::max<int64_t>(dim == 2 ? 32 : (axis == 2 ? 32 : 8), width);
  for (;; ++b) {
    const int64_t nb = (n + b - 1) / b, last = n - (nb - 1) * b;
    if (last == b || last >= width - 1 || nb == 1) return b;
  }
}

// Contiguous index blocks of the fine grid that hold the image support along one axis:
// centred positions x in [-floor(N/2), N - 1 - floor(N/2)] taken modulo n.
struct Block {
  int64_t begin, end;
};
std::vector<Block> support_blocks(int64_t N, int64_t n) {
  const int64_t neg = N / 2, pos = N - N / 2;
  std::vector<Block> b;
  b.push_back({0, pos});
  if (neg > 0) b.push_back({n - neg, n});
  return b;
}

// Threads of the plan's counting sort: each needs total_bins counters, so one per 4096 + total_bins
// samples (a few points on a huge grid are sorted by one thread), at most nthreads.
int sort_threads(int nthreads, int64_t M, double total_bins) {
  return (int)std::max(1.0, std::min((double)nthreads, std::floor((double)M / (4096.0 + total_bins))));
}

// The sizes a plan derives from its options, validated, before it allocates anything.
template <typename T>
NufftLayout plan_layout(int dim, const int64_t* image_shape, const NufftOptions& opts) {
  if (dim != 2 && dim != 3) throw std::invalid_argument("NUFFT dimension must be 2 or 3, got " + std::to_string(dim));
  if (opts.width_margin < 0 || opts.width_margin > kMaxWidth)
    throw std::invalid_argument("width_margin must lie in [0, " + std::to_string(kMaxWidth) + "], got " +
                                std::to_string(opts.width_margin));
  if (std::is_same<T, float>::value && opts.tol < 1e-7)
    throw std::invalid_argument("tol below 1e-7 is not reachable in single precision; use complex128");
  NufftLayout L;
  L.kernel = es_choose(opts.tol, opts.upsampfac, opts.width_margin);
  // In float, kernels wider than 9 points lose the requested accuracy to rounding (measured).
  if (std::is_same<T, float>::value && L.kernel.width > 9)
    throw std::invalid_argument("single precision cannot reach tol=" + fmt_g(opts.tol) + " at upsampfac " +
                                fmt_g(opts.upsampfac) + " (kernel width " + std::to_string(L.kernel.width) +
                                " > 9); use upsampfac=2 or complex128");
  for (int a = 0; a < dim; ++a) {
    if (image_shape[a] < 1) throw std::invalid_argument("image shape entries must be >= 1");
    L.N[a] = image_shape[a];
    L.n[a] = fine_grid_size(L.N[a], L.kernel.upsampfac, L.kernel.width);
    L.bin_size[a] = choose_bin_size(dim, a, L.kernel.width, L.n[a], (int64_t)sizeof(std::complex<T>));
    L.nbins[a] = (L.n[a] + L.bin_size[a] - 1) / L.bin_size[a];
    L.grid_points *= (double)L.n[a];
    L.total_bins *= (double)L.nbins[a];
  }
  return L;
}

template <typename T>
NufftMemory layout_memory(const NufftLayout& L, int dim, int64_t M, int nthreads) {
  const double m = (double)M, bins = L.total_bins;
  NufftMemory r;
  r.plan = m * (sizeof(int64_t) + dim * (sizeof(int32_t) + sizeof(T)))   // order_, start_, z_
           + (bins + 1 + std::min(m, bins)) * sizeof(int64_t)            // bin_offset_, spread_bins_
           + m * sizeof(int32_t) + sort_threads(nthreads, M, bins) * bins * sizeof(int64_t)  // sort scratch
           + (double)L.n[0] * sizeof(std::mutex);                         // row_locks_
  for (int a = 0; a < dim; ++a) r.plan += (double)L.N[a] * (sizeof(T) + 2 * sizeof(double));  // deconvolution
  r.grid = (L.grid_points + 192.0 / sizeof(std::complex<T>)) * sizeof(std::complex<T>);  // grid_stride()
  return r;
}

}  // namespace

std::string fmt_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", bytes, units[u]);
  return buf;
}

template <typename T>
NufftMemory nufft_memory(int64_t num_points, int dim, const int64_t* image_shape, const NufftOptions& opts) {
  if (num_points < 0) throw std::invalid_argument("number of points must be >= 0");
  const int nthreads = opts.nthreads > 0 ? opts.nthreads : omp_get_max_threads();
  return layout_memory<T>(plan_layout<T>(dim, image_shape, opts), dim, num_points, nthreads);
}

// Refuses (std::invalid_argument) a plan of M points whose memory exceeds max_bytes (0: no limit) or
// whose fine grid exceeds 2^60 bytes, naming the sizes.
template <typename T>
void check_plan_memory(const NufftLayout& layout, int dim, int64_t M, int nthreads, double max_bytes) {
  const NufftMemory mem = layout_memory<T>(layout, dim, M, nthreads);
  const double need = mem.plan + mem.grid;
  if (mem.grid > std::ldexp(1.0, 60) || (max_bytes > 0 && need > max_bytes)) {
    std::string grid;
    for (int a = 0; a < dim; ++a) grid += (a ? " x " : "") + std::to_string(layout.n[a]);
    throw std::invalid_argument("fine grid too large for the memory: a NUFFT plan for " + std::to_string(M) +
                                " samples on a fine grid of " + grid + " points needs about " + fmt_bytes(need) +
                                " (plan " + fmt_bytes(mem.plan) + ", one fine grid " + fmt_bytes(mem.grid) +
                                "), more than the limit of " +
                                (max_bytes > 0 ? fmt_bytes(max_bytes) : std::string("2^60 bytes")));
  }
}

template <typename T>
NufftPlan<T>::NufftPlan(const double* coord, int64_t num_points, int dim, const int64_t* image_shape,
                        const NufftOptions& opts)
    : layout_(plan_layout<T>(dim, image_shape, opts)) {
  if (num_points < 0) throw std::invalid_argument("number of points must be >= 0");
  PhaseTimer timer;
  nthreads_ = opts.nthreads > 0 ? opts.nthreads : omp_get_max_threads();
  max_bytes_ = opts.max_bytes;
  // Refuse before allocating: what the plan keeps and one fine grid (the least an execution needs).
  check_plan_memory<T>(layout_, dim, num_points, nthreads_, max_bytes_);
  if (layout_.total_bins > INT32_MAX) throw std::invalid_argument("fine grid too large (more than 2^31 bins)");
  dim_ = dim;
  kernel_ = layout_.kernel;
  // Horner fit well below the tolerance, but not below what T can represent.
  const double fit_tol = std::max(opts.tol * 5e-2, std::is_same<T, float>::value ? 1e-8 : 1e-15);
  es_fit_horner(kernel_, fit_tol);
  // Horner rows padded to whole 4-lane chunks with zero coefficients (zero weights beyond w).
  {
    const int w = kernel_.width, wp = simd::padded_width(w);
    horner_.assign((size_t)(kernel_.degree + 1) * wp, T(0));
    horner_dup_.assign((size_t)(kernel_.degree + 1) * 2 * wp, T(0));
    for (int d = 0; d <= kernel_.degree; ++d)
      for (int j = 0; j < w; ++j) {
        horner_[d * wp + j] = (T)kernel_.horner[d * w + j];
        horner_dup_[d * 2 * wp + 2 * j] = horner_dup_[d * 2 * wp + 2 * j + 1] = (T)kernel_.horner[d * w + j];
      }
  }

  timer.lap("kernel");
  double prodN = 1.0;
  for (int a = 0; a < dim; ++a) {
    N_[a] = layout_.N[a];
    n_[a] = layout_.n[a];
    bin_size_[a] = layout_.bin_size[a];
    nbins_[a] = layout_.nbins[a];
    prodN *= (double)N_[a];
    std::vector<double> d = es_deconvolution(kernel_, N_[a], n_[a]);
    deconv_[a].assign(d.begin(), d.end());
  }
  scale_ = (T)(1.0 / std::sqrt(prodN));
  row_locks_.reset(new std::mutex[n_[0]]);
  timer.lap("deconv");
  assign_points(coord, num_points);
}

template <typename T>
void NufftPlan<T>::set_points(const double* coord, int64_t num_points) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (num_points < 0) throw std::invalid_argument("number of points must be >= 0");
  check_plan_memory<T>(layout_, dim_, num_points, nthreads_, max_bytes_);
  assign_points(coord, num_points);
}

// Everything that depends on the points: bins, the sort, stencil starts and local variables. The
// arrays keep their capacity, so a new trajectory of no more points than before allocates nothing.
// Coordinates are checked before any member changes: on error the plan keeps its previous points.
template <typename T>
void NufftPlan<T>::assign_points(const double* coord, int64_t M) {
  PhaseTimer timer;
  const int dim = dim_;
  // Stencil start and local variable of sample j along axis a, in double (the same arithmetic in
  // both passes below, so the bin a sample is sorted into is the bin its stencil starts in).
  auto stencil = [&](int64_t j, int a, T* z) -> int64_t {
    const double u = coord[j * dim + a] * (double)n_[a] / (double)N_[a];
    long long s = es_stencil_start<T>(u, kernel_.width, z) % n_[a];
    return s < 0 ? s + n_[a] : s;
  };

  // Pass 1: range check and bin index per sample.
  const int64_t total_bins = nbins_[0] * nbins_[1] * nbins_[2];
  bin_of_.resize(M);
  int bad = 0;
#pragma omp parallel for num_threads(nthreads_) schedule(static) reduction(| : bad)
  for (int64_t j = 0; j < M; ++j) {
    int64_t bin = 0;
    for (int a = 0; a < dim; ++a) {
      const double k = coord[j * dim + a], half = 0.5 * (double)N_[a];
      if (!(k >= -half && k <= half)) {  // also catches NaN
        bad = 1;
        break;
      }
      T z;
      bin = bin * nbins_[a] + stencil(j, a, &z) / bin_size_[a];
    }
    bin_of_[j] = (int32_t)bin;
  }
  if (bad) throw std::invalid_argument("coordinates must be finite and lie in [-N/2, N/2] (cycles per FOV)");
  M_ = M;
  timer.lap("bin");

  // Stable counting sort by bin, threaded: each thread counts its contiguous chunk of samples, and
  // places them after the samples of the chunks before it in every bin. One parallel region whose
  // chunks are cut by the team size OpenMP actually gives (OMP_THREAD_LIMIT or OMP_DYNAMIC may give
  // fewer threads than asked).
  {
    const int team = sort_threads(nthreads_, M_, (double)total_bins);
    sort_counts_.resize((size_t)team * total_bins);  // the team is at most this large
    int64_t* counts = sort_counts_.data();
    const int32_t* bin_of = bin_of_.data();
    bin_offset_.assign(total_bins + 1, 0);
    order_.resize(M_);
#pragma omp parallel num_threads(team)
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t* c = counts + (size_t)t * total_bins;
      std::fill(c, c + total_bins, int64_t(0));
      const int64_t lo = M_ * t / nt, hi = M_ * (t + 1) / nt;
      for (int64_t j = lo; j < hi; ++j) c[bin_of[j]]++;
#pragma omp barrier
#pragma omp single
      {
        int64_t run = 0;
        for (int64_t b = 0; b < total_bins; ++b) {
          bin_offset_[b] = run;
          for (int u = 0; u < nt; ++u) {
            const int64_t cnt = counts[(size_t)u * total_bins + b];
            counts[(size_t)u * total_bins + b] = run;  // becomes thread u's fill position
            run += cnt;
          }
        }
        bin_offset_[total_bins] = run;
      }  // implicit barrier
      for (int64_t j = lo; j < hi; ++j) order_[c[bin_of[j]]++] = j;
    }
  }
  timer.lap("sort");

  // Pass 2: stencil starts and local variables in sorted order.
  for (int a = 0; a < dim; ++a) {
    start_[a].resize(M_);
    z_[a].resize(M_);
  }
#pragma omp parallel for num_threads(nthreads_) schedule(static)
  for (int64_t p = 0; p < M_; ++p) {
    for (int a = 0; a < dim; ++a) start_[a][p] = (int32_t)stencil(order_[p], a, &z_[a][p]);
  }

  timer.lap("permute");
  // Non-empty bins, heaviest first (longest-processing-time-first keeps the threads balanced when
  // a few bins hold many samples, e.g. the centre of k-space for radial trajectories).
  spread_bins_.clear();
  for (int64_t b = 0; b < total_bins; ++b)
    if (bin_offset_[b + 1] > bin_offset_[b]) spread_bins_.push_back(b);
  std::stable_sort(spread_bins_.begin(), spread_bins_.end(), [&](int64_t a, int64_t b) {
    return bin_offset_[a + 1] - bin_offset_[a] > bin_offset_[b + 1] - bin_offset_[b];
  });
  timer.lap("bins");
}

// ---- kernel weights for a block of samples ------------------------------------------------------

// Weights of kBlock samples along one axis, transposed: out[j * kBlock + q] is the weight of
// stencil point j for sample q (j < W). These are the Horner polynomials of csrc/kernels/es_kernel.h
// (same coefficients, row stride Wp), vectorised across the kBlock samples: W independent chains
// of `deg` multiply-adds, one vector instruction per (j, degree) for all samples of the block.
template <int W, typename T>
static inline void weights_block(const T* __restrict__ hc, int deg, const T* __restrict__ z, T* __restrict__ out) {
  using V = typename simd::Vec8<T>::type;
  static_assert(kBlock == 8, "weights_block vectorises over 8 samples");
  constexpr int Wp = simd::padded_width(W);
  const V zv = simd::load<V>(z);
  V acc[W];
  for (int j = 0; j < W; ++j) acc[j] = V{} + hc[j];
  for (int d = 1; d <= deg; ++d) {
    const T* c = hc + d * Wp;
    for (int j = 0; j < W; ++j) acc[j] = acc[j] * zv + c[j];
  }
  for (int j = 0; j < W; ++j) simd::store(out + j * kBlock, acc[j]);
}

// Weights of one sample along the last axis as interleaved complex rows, in registers:
// out[cc] lanes = (k_0, k_0, k_1, k_1, ...), zero beyond W. The same Horner polynomials as
// weights_block (coefficients duplicated per lane pair), evaluated for one sample across the row.
template <typename D, int NC, typename T>
static inline void row_weights(const T* __restrict__ hdup, int deg, T z, D* __restrict__ out) {
  constexpr int L = sizeof(D) / sizeof(T);
  for (int cc = 0; cc < NC; ++cc) out[cc] = simd::load<D>(hdup + L * cc);
  for (int d = 1; d <= deg; ++d) {
    const T* c = hdup + d * L * NC;
    for (int cc = 0; cc < NC; ++cc) out[cc] = out[cc] * z + simd::load<D>(c + L * cc);
  }
}

// The complex value c repeated across the lanes of D: (re, im, re, im, ...).
template <typename D, typename T>
static inline D splat_complex(const std::complex<T>& c) {
  constexpr int L = sizeof(D) / sizeof(T);
  if constexpr (sizeof(T) == 4) {  // one 64-bit lane pattern: a single broadcast instruction
    typedef uint64_t Du __attribute__((vector_size(sizeof(D))));
    uint64_t bits;
    std::memcpy(&bits, &c, sizeof(bits));
    const Du v = Du{} + bits;  // integer lanes: the bit pattern is copied exactly
    D out;
    std::memcpy(&out, &v, sizeof(D));
    return out;
  } else {
    D out;
    for (int t = 0; t < L; t += 2) {
      out[t] = c.real();
      out[t + 1] = c.imag();
    }
    return out;
  }
}

// ---- spreading (adjoint / type 1) -------------------------------------------------------------

template <typename T>
template <int W>
void NufftPlan<T>::spread_w(const cplx* y, int nb) {
  constexpr int Wp = simd::padded_width(W);
  using Chunk = simd::RowChunk<T, Wp>;
  using D = typename Chunk::type;  // interleaved complex values of a padded row
  constexpr int L = Chunk::lanes, NC = Wp / Chunk::complex_per_chunk;
  const int deg = kernel_.degree;
  const T* hc = horner_.data();
  const T* hdup = horner_dup_.data();
  const int dim = dim_;
  const int64_t B0 = bin_size_[0], B1 = bin_size_[1], B2 = dim == 3 ? bin_size_[2] : 1;
  const std::array<int64_t, 3> S = subgrid_strides();
  const int64_t S0 = S[0], S1 = S[1], S2 = S[2];
  const int64_t n0 = n_[0], n1 = n_[1], n2 = dim == 3 ? n_[2] : 1;
  const int64_t sub_size = 2 * S0 * S1 * S2;  // reals per sub-grid

  const auto& bins = spread_bins_;
  {
#pragma omp parallel num_threads(nthreads_)
    {
      std::vector<T> subs(sub_size * nb);
#pragma omp for schedule(dynamic, 1)
      for (size_t ib = 0; ib < bins.size(); ++ib) {
        const int64_t b = bins[ib];
        int64_t bi[3] = {0, 0, 0}, rem = b;
        for (int a = dim - 1; a >= 0; --a) {
          bi[a] = rem % nbins_[a];
          rem /= nbins_[a];
        }
        const int64_t o0 = bi[0] * B0, o1 = bi[1] * B1, o2 = dim == 3 ? bi[2] * B2 : 0;
        // extents actually touched (the last bin may be partial)
        const int64_t e0 = std::min(B0, n0 - o0) + W - 1, e1 = std::min(B1, n1 - o1) + W - 1;
        const int64_t e2 = dim == 3 ? std::min(B2, n2 - o2) + W - 1 : 1;
        for (int g = 0; g < nb; ++g)
          std::fill(subs.begin() + g * sub_size, subs.begin() + g * sub_size + 2 * e0 * S1 * S2, T(0));
        alignas(64) T zb[3][kBlock];
        alignas(64) T kb[3][kBlock * W];
        const int64_t pend = bin_offset_[b + 1];
        const T* zlast = z_[dim - 1].data();
        for (int64_t p0 = bin_offset_[b]; p0 < pend; p0 += kBlock) {
          const int np = (int)std::min<int64_t>(kBlock, pend - p0);
          // the samples of the next block are scattered through y: fetch them early
          for (int64_t p = p0 + kBlock; p < std::min(p0 + 2 * kBlock, pend); ++p)
            for (int g = 0; g < nb; ++g) __builtin_prefetch(y + g * M_ + order_[p]);
          for (int a = 0; a + 1 < dim; ++a) {  // the last axis is weighted row-wise below
            for (int q = 0; q < kBlock; ++q) zb[a][q] = q < np ? z_[a][p0 + q] : T(0);
            weights_block<W>(hc, deg, zb[a], kb[a]);
          }
          for (int q = 0; q < np; ++q) {
            const int64_t p = p0 + q;
            const int64_t src_idx = order_[p];
            const T* k0 = kb[0] + q;  // weights of sample q: stride kBlock
            const T* k1 = kb[1] + q;
            D krow[NC];
            row_weights<D, NC>(hdup, deg, zlast[p], krow);
            const int64_t l0 = start_[0][p] - o0, l1 = start_[1][p] - o1;
            const int64_t l2 = dim == 3 ? start_[2][p] - o2 : 0;
            for (int g = 0; g < nb; ++g) {
              const D c = splat_complex<D>(y[g * M_ + src_idx]);
              D row[NC];
              for (int cc = 0; cc < NC; ++cc) row[cc] = krow[cc] * c;
              T* s = subs.data() + g * sub_size;
              if (dim == 2) {
                for (int i = 0; i < W; ++i) {
                  T* dst = s + 2 * ((l0 + i) * S1 + l1);
                  const T f = k0[i * kBlock];
                  for (int cc = 0; cc < NC; ++cc)
                    simd::store(dst + L * cc, simd::load<D>(dst + L * cc) + f * row[cc]);
                }
              } else {
                for (int i = 0; i < W; ++i) {
                  for (int j = 0; j < W; ++j) {
                    T* dst = s + 2 * (((l0 + i) * S1 + l1 + j) * S2 + l2);
                    const T f = k0[i * kBlock] * k1[j * kBlock];
                    for (int cc = 0; cc < NC; ++cc)
                      simd::store(dst + L * cc, simd::load<D>(dst + L * cc) + f * row[cc]);
                  }
                }
              }
            }
          }
        }
        // add the sub-grids into the fine grids, wrapping periodically, one axis-0 slab at a time
        // under that slab's lock (other threads may be adding overlapping padded sub-grids)
        const int64_t rowlen = dim == 3 ? e2 : e1;
        const int64_t last_n = dim == 3 ? n2 : n1;
        const int64_t last_o = dim == 3 ? o2 : o1;
        const int64_t first_run = std::min(rowlen, last_n - last_o);
        const int64_t mid_count = dim == 3 ? e1 : 1;
        for (int64_t i = 0; i < e0; ++i) {
          const int64_t g0 = wrap_once((int)(o0 + i), (int)n0);
          std::lock_guard<std::mutex> slab_lock(row_locks_[g0]);
          for (int g = 0; g < nb; ++g) {
            T* grid = reinterpret_cast<T*>(grid_.data() + g * grid_stride());
            const T* s = subs.data() + g * sub_size;
            for (int64_t j = 0; j < mid_count; ++j) {
              int64_t gbase;
              const T* src;
              if (dim == 3) {
                const int64_t g1 = wrap_once((int)(o1 + j), (int)n1);
                gbase = (g0 * n1 + g1) * n2;
                src = s + 2 * ((i * S1 + j) * S2);
              } else {
                gbase = g0 * n1;
                src = s + 2 * (i * S1);
              }
              T* dst = grid + 2 * (gbase + last_o);
#pragma GCC ivdep
              for (int64_t t = 0; t < 2 * first_run; ++t) dst[t] += src[t];
              if (first_run < rowlen) {  // wrapped tail
                T* dst2 = grid + 2 * gbase;
                const T* src2 = src + 2 * first_run;
                for (int64_t t = 0; t < 2 * (rowlen - first_run); ++t) dst2[t] += src2[t];
              }
            }
          }
        }
      }
    }
  }
}

// ---- interpolation (forward / type 2) ---------------------------------------------------------

template <typename T>
template <int W>
void NufftPlan<T>::interpolate_w(cplx* y, int nb) const {
  constexpr int Wp = simd::padded_width(W);
  using Chunk = simd::RowChunk<T, Wp>;
  using D = typename Chunk::type;
  constexpr int L = Chunk::lanes, NC = Wp / Chunk::complex_per_chunk;
  const int deg = kernel_.degree;
  const T* hc = horner_.data();
  const T* hdup = horner_dup_.data();
  const int dim = dim_;
  const int64_t n0 = n_[0], n1 = n_[1], n2 = dim == 3 ? n_[2] : 1;
  const int64_t nlast = dim == 3 ? n2 : n1;
  const int64_t nblocks = (M_ + kBlock - 1) / kBlock;

#pragma omp parallel for num_threads(nthreads_) schedule(dynamic, 64)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t p0 = blk * kBlock;
    const int np = (int)std::min<int64_t>(kBlock, M_ - p0);
    alignas(64) T zb[3][kBlock];
    alignas(64) T kb[3][kBlock * W];
    for (int a = 0; a < dim; ++a) {
      for (int q = 0; q < kBlock; ++q) zb[a][q] = q < np ? z_[a][p0 + q] : T(0);
      weights_block<W>(hc, deg, zb[a], kb[a]);
    }
    for (int q = 0; q < np; ++q) {
      const int64_t p = p0 + q;
      const T* k0 = kb[0] + q;  // weights of sample q: stride kBlock
      const T* k1 = kb[1] + q;
      const int s0 = start_[0][p], s1 = start_[1][p];
      const T* klast = dim == 3 ? kb[2] + q : k1;
      const int slast = dim == 3 ? start_[2][p] : s1;
      if (slast + Wp <= nlast) {
        // acc = sum over rows of (row weight) * grid row; the last-axis weights are applied once at
        // the end. G grids at a time and two accumulator sets (even/odd rows) give 2*G*NC independent
        // multiply-add chains (one chain per vector would be latency-bound).
        D kkv[NC];
        row_weights<D, NC>(hdup, deg, z_[dim - 1][p], kkv);
        auto run = [&](auto group, int g0) {
          constexpr int G = decltype(group)::value;
          const T* grids[G];
          for (int j = 0; j < G; ++j)
            grids[j] = reinterpret_cast<const T*>(grid_.data() + (g0 + j) * grid_stride()) + 2 * slast;
          D acc[2][G][NC];
          for (int par = 0; par < 2; ++par)
            for (int j = 0; j < G; ++j)
              for (int cc = 0; cc < NC; ++cc) acc[par][j][cc] = D{};
          auto add_row = [&](int par, int64_t base, T f) {
            for (int j = 0; j < G; ++j) {
              const T* r = grids[j] + 2 * base;
              for (int cc = 0; cc < NC; ++cc) acc[par][j][cc] += f * simd::load<D>(r + L * cc);
            }
          };
          if (dim == 2) {
            for (int i = 0; i < W; ++i) add_row(i & 1, wrap_once(s0 + i, (int)n0) * n1, k0[i * kBlock]);
          } else {
            for (int i = 0; i < W; ++i) {
              const int64_t r0 = wrap_once(s0 + i, (int)n0) * n1;
              for (int j = 0; j < W; ++j)
                add_row(j & 1, (r0 + wrap_once(s1 + j, (int)n1)) * n2, k0[i * kBlock] * k1[j * kBlock]);
            }
          }
          for (int j = 0; j < G; ++j) {
            D tot = D{};
            for (int cc = 0; cc < NC; ++cc) tot += (acc[0][j][cc] + acc[1][j][cc]) * kkv[cc];
            T re = 0, im = 0;
            for (int t = 0; t < L; t += 2) {
              re += tot[t];
              im += tot[t + 1];
            }
            y[(g0 + j) * M_ + order_[p]] = cplx(re, im);
          }
        };
        int g = 0;
        for (; g + 4 <= nb; g += 4) run(std::integral_constant<int, 4>{}, g);
        for (; g < nb; ++g) run(std::integral_constant<int, 1>{}, g);
      } else {  // the stencil runs past the end of the last axis: wrap each index
        int lidx[W];
        for (int j = 0; j < W; ++j) lidx[j] = wrap_once(slast + j, (int)nlast);
        for (int g = 0; g < nb; ++g) {
          const T* grid = reinterpret_cast<const T*>(grid_.data() + g * grid_stride());
          T re = 0, im = 0;
          auto add_row = [&](int64_t base, T f) {
            const T* r = grid + 2 * base;
            T rr = 0, ri = 0;
            for (int j = 0; j < W; ++j) {
              rr += klast[j * kBlock] * r[2 * lidx[j]];
              ri += klast[j * kBlock] * r[2 * lidx[j] + 1];
            }
            re += f * rr;
            im += f * ri;
          };
          if (dim == 2) {
            for (int i = 0; i < W; ++i) add_row(wrap_once(s0 + i, (int)n0) * n1, k0[i * kBlock]);
          } else {
            for (int i = 0; i < W; ++i) {
              const int64_t r0 = wrap_once(s0 + i, (int)n0) * n1;
              for (int j = 0; j < W; ++j)
                add_row((r0 + wrap_once(s1 + j, (int)n1)) * n2, k0[i * kBlock] * k1[j * kBlock]);
            }
          }
          y[g * M_ + order_[p]] = cplx(re, im);
        }
      }
    }
  }
}

#define RECON_WIDTH_DISPATCH(W_VAR, CALL)                                               \
  switch (W_VAR) {                                                                      \
    case 2: CALL(2); break;   case 3: CALL(3); break;   case 4: CALL(4); break;         \
    case 5: CALL(5); break;   case 6: CALL(6); break;   case 7: CALL(7); break;         \
    case 8: CALL(8); break;   case 9: CALL(9); break;   case 10: CALL(10); break;       \
    case 11: CALL(11); break; case 12: CALL(12); break; case 13: CALL(13); break;       \
    case 14: CALL(14); break; case 15: CALL(15); break; case 16: CALL(16); break;       \
    default: throw std::logic_error("unsupported kernel width");                       \
  }

template <typename T>
void NufftPlan<T>::spread(const cplx* y, int nb) {
#define RECON_CALL_SPREAD(W) spread_w<W>(y, nb)
  RECON_WIDTH_DISPATCH(kernel_.width, RECON_CALL_SPREAD)
#undef RECON_CALL_SPREAD
}

template <typename T>
void NufftPlan<T>::interpolate(cplx* y, int nb) const {
#define RECON_CALL_INTERP(W) interpolate_w<W>(y, nb)
  RECON_WIDTH_DISPATCH(kernel_.width, RECON_CALL_INTERP)
#undef RECON_CALL_INTERP
}

// ---- FFT and deconvolution -------------------------------------------------------------------

template <typename T>
void NufftPlan<T>::fft(cplx* g, bool forward, int threads) {
  using pocketfft::shape_t;
  using pocketfft::stride_t;
  const int d = dim_;
  const ptrdiff_t es = sizeof(cplx);
  shape_t full(n_, n_ + d);
  stride_t strides(d);
  strides[d - 1] = es;
  for (int a = d - 2; a >= 0; --a) strides[a] = strides[a + 1] * (ptrdiff_t)n_[a + 1];

  // Pass along `axis` restricted to the image-support blocks of all axes before it (those are the
  // only non-zero lines on the way in, and the only ones read on the way out). The lines of a pass
  // are split between the OpenMP threads along another axis; each piece is one single-threaded
  // pocketfft call (no second thread pool competing with OpenMP's for the cores).
  struct Piece {
    shape_t shape;
    ptrdiff_t offset;  // in elements
  };
  auto pass = [&](int axis) {
    std::vector<std::vector<Block>> blocks(axis);
    for (int a = 0; a < axis; ++a) blocks[a] = support_blocks(N_[a], n_[a]);
    const int split = axis == d - 1 ? 0 : d - 1;  // rows for the last axis, columns otherwise
    std::vector<Piece> pieces;
    std::vector<size_t> pick(axis, 0);
    while (true) {  // the cartesian product of leading-axis blocks
      shape_t shape(full);
      ptrdiff_t offset = 0;
      for (int a = 0; a < axis; ++a) {
        const Block& bl = blocks[a][pick[a]];
        shape[a] = bl.end - bl.begin;
        offset += (ptrdiff_t)bl.begin * strides[a] / es;
      }
      const ptrdiff_t extent = (ptrdiff_t)shape[split];
      // pieces along the split axis, a few per thread (dynamic schedule: a thread slowed down by
      // the machine does not hold the others up), in whole multiples of 16 lines, which keeps
      // pocketfft's SIMD batches full
      const int parts = threads == 1 ? 1 : 4 * threads;
      const ptrdiff_t step = std::min(extent, ((extent + parts - 1) / parts + 15) / 16 * 16);
      for (ptrdiff_t b = 0; b < extent; b += step) {
        Piece pc{shape, offset + b * strides[split] / es};
        pc.shape[split] = (size_t)std::min(step, extent - b);
        pieces.push_back(pc);
      }
      int a = axis - 1;
      while (a >= 0 && ++pick[a] == blocks[a].size()) pick[a--] = 0;
      if (a < 0) break;
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t i = 0; i < pieces.size(); ++i)
      pocketfft::c2c<T>(pieces[i].shape, strides, strides, {(size_t)axis}, forward, g + pieces[i].offset,
                        g + pieces[i].offset, T(1), 1);
  };
  if (forward) {  // data lives on the support: last axis first
    for (int axis = d - 1; axis >= 0; --axis) pass(axis);
  } else {        // only the support is read afterwards: first axis first
    for (int axis = 0; axis < d; ++axis) pass(axis);
  }
}

template <typename T>
void NufftPlan<T>::image_to_grid(const cplx* x, cplx* grid, int threads) {
  const int64_t N0 = N_[0], N1 = N_[1], N2 = N_[2];
  const int64_t n0 = n_[0], n1 = n_[1], n2 = n_[2];
  const T* d0 = deconv_[0].data();
  const T* d1 = deconv_[1].data();
  const T* d2 = dim_ == 3 ? deconv_[2].data() : nullptr;
  // one fine-grid slab (axis-0 index g0) at a time: zero it, then write the image row that lands
  // there (centred position i0 - N0/2 taken modulo n0), if any
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t g0 = 0; g0 < n0; ++g0) {
    cplx* slab = grid + g0 * n1 * n2;
    std::memset((void*)slab, 0, n1 * n2 * sizeof(cplx));
    const int64_t i0 = g0 < N0 - N0 / 2 ? g0 + N0 / 2 : g0 - n0 + N0 / 2;
    if (i0 < 0 || i0 >= N0) continue;
    for (int64_t i1 = 0; i1 < N1; ++i1) {
      const int64_t g1 = (i1 - N1 / 2 + n1) % n1;
      const T f01 = scale_ * d0[i0] * d1[i1];
      if (dim_ == 2) {
        slab[g1] = x[i0 * N1 + i1] * f01;
      } else {
        const cplx* src = x + (i0 * N1 + i1) * N2;
        cplx* dst = slab + g1 * n2;
        for (int64_t i2 = 0; i2 < N2; ++i2) dst[(i2 - N2 / 2 + n2) % n2] = src[i2] * (f01 * d2[i2]);
      }
    }
  }
}

template <typename T>
void NufftPlan<T>::grid_to_image(const cplx* grid, cplx* x, int threads) const {
  const int64_t N0 = N_[0], N1 = N_[1], N2 = N_[2];
  const int64_t n1 = n_[1], n2 = n_[2];
  const T* d0 = deconv_[0].data();
  const T* d1 = deconv_[1].data();
  const T* d2 = dim_ == 3 ? deconv_[2].data() : nullptr;
#pragma omp parallel for num_threads(threads) collapse(2) schedule(static)
  for (int64_t i0 = 0; i0 < N0; ++i0) {
    for (int64_t i1 = 0; i1 < N1; ++i1) {
      const int64_t g0 = (i0 - N0 / 2 + n_[0]) % n_[0];
      const int64_t g1 = (i1 - N1 / 2 + n1) % n1;
      const T f01 = scale_ * d0[i0] * d1[i1];
      if (dim_ == 2) {
        x[i0 * N1 + i1] = grid[g0 * n1 + g1] * f01;
      } else {
        const cplx* src = grid + (g0 * n1 + g1) * n2;
        cplx* dst = x + (i0 * N1 + i1) * N2;
        for (int64_t i2 = 0; i2 < N2; ++i2) dst[i2] = src[(i2 - N2 / 2 + n2) % n2] * (f01 * d2[i2]);
      }
    }
  }
}

// ---- public execution -------------------------------------------------------------------------

// Transforms per pass: as many as fit in ~256 MiB of fine grids (at least 1, at most 16).
template <typename T>
int NufftPlan<T>::batch_chunk(int64_t batch) const {
  const int64_t bytes = grid_size() * (int64_t)sizeof(cplx);
  const int64_t fit = std::max<int64_t>(1, (int64_t(256) << 20) / std::max<int64_t>(bytes, 1));
  return (int)std::min<int64_t>({batch, fit, 16});
}

template <typename T>
std::array<int64_t, 3> NufftPlan<T>::subgrid_strides() const {
  const int w = kernel_.width, pad = simd::padded_width(w) - w;
  return {bin_size_[0] + w - 1, bin_size_[1] + w - 1 + (dim_ == 2 ? pad : 0),
          dim_ == 3 ? bin_size_[2] + w - 1 + pad : 1};
}

template <typename T>
double NufftPlan<T>::execution_bytes(int64_t batch) const {
  if (batch <= 0) return 0.0;
  const std::array<int64_t, 3> S = subgrid_strides();
  const double sub = (double)S[0] * (double)S[1] * (double)S[2] * sizeof(cplx);
  return batch_chunk(batch) * (grid_bytes() + (double)nthreads_ * sub);
}

// Runs work(g, threads) for the grids g = 0..nb-1: whole grids one per thread while there are at
// least as many grids left as threads (one parallel region, no barriers inside a grid, each grid
// in its thread's cache), the remaining grids one after the other with all threads.
template <typename T>
template <typename Work>
void NufftPlan<T>::for_each_grid(int nb, Work&& work) {
  const int whole = nb - nb % nthreads_;
  if (whole > 0) {
#pragma omp parallel for num_threads(nthreads_) schedule(dynamic, 1)
    for (int g = 0; g < whole; ++g) work(g, 1);
  }
  for (int g = whole; g < nb; ++g) work(g, nthreads_);
}

template <typename T>
void NufftPlan<T>::forward(const cplx* x, cplx* y, int64_t batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t img = N_[0] * N_[1] * N_[2];
  const int nb_max = batch_chunk(batch);
  grid_.resize(grid_stride() * nb_max);
  PhaseTimer timer;
  for (int64_t b0 = 0; b0 < batch; b0 += nb_max) {
    const int nb = (int)std::min<int64_t>(nb_max, batch - b0);
    for_each_grid(nb, [&](int g, int threads) {
      image_to_grid(x + (b0 + g) * img, grid_.data() + g * grid_stride(), threads);
      fft(grid_.data() + g * grid_stride(), true, threads);
    });
    timer.lap("deconv+fft");
    interpolate(y + b0 * M_, nb);
    timer.lap("interpolate");
  }
}

template <typename T>
void NufftPlan<T>::adjoint(const cplx* y, cplx* x, int64_t batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t img = N_[0] * N_[1] * N_[2];
  const int nb_max = batch_chunk(batch);
  grid_.resize(grid_stride() * nb_max);
  PhaseTimer timer;
  for (int64_t b0 = 0; b0 < batch; b0 += nb_max) {
    const int nb = (int)std::min<int64_t>(nb_max, batch - b0);
    {
      cplx* base = grid_.data();
      const int64_t count = grid_stride() * nb;
#pragma omp parallel for num_threads(nthreads_) schedule(static)
      for (int t = 0; t < nthreads_; ++t) {
        const int64_t lo = count * t / nthreads_, hi = count * (t + 1) / nthreads_;
        std::memset((void*)(base + lo), 0, (hi - lo) * sizeof(cplx));
      }
    }
    timer.lap("zero");
    spread(y + b0 * M_, nb);
    timer.lap("spread");
    for_each_grid(nb, [&](int g, int threads) {
      fft(grid_.data() + g * grid_stride(), false, threads);
      grid_to_image(grid_.data() + g * grid_stride(), x + (b0 + g) * img, threads);
    });
    timer.lap("fft+deconv");
  }
}

template <typename T>
void NufftPlan<T>::spread_to_grid(const cplx* y, cplx* grid) {
  std::lock_guard<std::mutex> lock(mutex_);
  grid_.assign(grid_size(), cplx(0));
  spread(y, 1);
  std::copy(grid_.begin(), grid_.begin() + grid_size(), grid);
}

template <typename T>
void NufftPlan<T>::interpolate_from_grid(const cplx* grid, cplx* y) {
  std::lock_guard<std::mutex> lock(mutex_);
  grid_.assign(grid, grid + grid_size());
  interpolate(y, 1);
}

template class NufftPlan<float>;
template class NufftPlan<double>;
template NufftMemory nufft_memory<float>(int64_t, int, const int64_t*, const NufftOptions&);
template NufftMemory nufft_memory<double>(int64_t, int, const int64_t*, const NufftOptions&);

}  // namespace recon
