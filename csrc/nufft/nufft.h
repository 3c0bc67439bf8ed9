// CPU NUFFT plan (type 2 = forward, type 1 = adjoint) in 2D and 3D.
//
// Convention (recon/conventions.py is the one home; summary): coordinates k in cycles per field of
// view, shape (M, d), range [-N/2, N/2]; image positions x_a = n_a - floor(N_a/2);
//   forward:  y_j = (1/sqrt(prod N)) sum_n f[n] exp(-2 pi i sum_a k_ja x_a / N_a)
//   adjoint:  its exact conjugate transpose.
//
// Pipeline. forward: deconvolve into a zeroed fine grid (size sigma * N, 2-3-5 smooth), FFT,
// interpolate with the ES kernel. adjoint: spread, inverse FFT, deconvolve. Both read the same
// per-sample weights (csrc/kernels/es_kernel.h), the same deconvolution factors and FFTs in
// mirrored order, so the pair is an exact adjoint up to floating-point rounding.
//
// Plan time (once per trajectory): kernel parameters and Horner coefficients, per-sample stencil
// start indices and local variables (computed in double), samples sorted into bins. Spreading runs
// bin-parallel (heaviest bins first) into per-thread sub-grids; each sub-grid is added to the fine
// grid slab by slab under a per-slab lock: no atomics, no barriers between bins.
#pragma once

#include <array>
#include <complex>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/es_kernel_setup.h"

namespace recon {

// std::vector whose resize leaves new elements uninitialised (ints and floats), so that large
// per-sample arrays are first touched by the threads that fill them, not zeroed serially.
template <typename T>
struct default_init_allocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = default_init_allocator<U>;
  };
  using std::allocator<T>::allocator;
  template <typename U>
  void construct(U* p) noexcept {
    ::new ((void*)p) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new ((void*)p) U(std::forward<Args>(args)...);
  }
};
template <typename T>
using uninit_vector = std::vector<T, default_init_allocator<T>>;

struct NufftOptions {
  double tol = 1e-6;
  double upsampfac = 2.0;  // sigma of the fine grid
  int nthreads = 0;        // 0: OpenMP's default
  int width_margin = 0;    // extra kernel width beyond the tolerance rule
  double max_bytes = 0;    // refuse (std::invalid_argument) a plan whose NufftMemory plan + build + grid
                           // exceeds this many bytes, before allocating; 0: no limit
};

// Memory of a plan, estimated from its options before anything is allocated (bytes, as doubles so
// that huge sizes cannot overflow).
struct NufftMemory {
  double plan = 0;  // kept by the plan: per-sample arrays, bins, sort scratch, deconvolution, locks
  double grid = 0;  // one fine grid of an execution; a batch uses up to batch_chunk() grids
};

// The sizes a plan derives from its options and image shape (validated), before allocating.
struct NufftLayout {
  EsKernel kernel;  // width and beta (the Horner coefficients are fitted by the plan)
  int64_t N[3] = {1, 1, 1}, n[3] = {1, 1, 1}, bin_size[3] = {1, 1, 1}, nbins[3] = {1, 1, 1};
  double grid_points = 1, total_bins = 1;  // doubles: products of huge axes cannot overflow
};

// Validates the options and sizes exactly as the plan does (std::invalid_argument) and estimates
// its memory.
template <typename T>
NufftMemory nufft_memory(int64_t num_points, int dim, const int64_t* image_shape, const NufftOptions& opts);

// "1.5 GiB": bytes in binary units, for messages.
std::string fmt_bytes(double bytes);

template <typename T>
class NufftPlan {
 public:
  using cplx = std::complex<T>;

  // coord: M x d row-major, cycles per FOV (validated by the caller and again here).
  NufftPlan(const double* coord, int64_t num_points, int dim, const int64_t* image_shape,
            const NufftOptions& opts);

  // A new trajectory (M x d, same rules as the constructor) for the same image, tolerance and threads:
  // re-sorts the points, keeping the kernel, deconvolution and buffers (no allocation when M does not
  // grow). On error (coordinates out of range, memory) the plan keeps its previous points.
  void set_points(const double* coord, int64_t num_points);

  // Type 2. x: batch x prod(N) (C order); y: batch x M.
  void forward(const cplx* x, cplx* y, int64_t batch);
  // Type 1. y: batch x M; x: batch x prod(N).
  void adjoint(const cplx* y, cplx* x, int64_t batch);

  // Fine-grid primitives (no FFT, no deconvolution), e.g. for density compensation:
  // spread: grid (prod n) = sum_j y_j psi(grid - u_j); interpolate: y_j = sum_g grid[g] psi(g - u_j).
  void spread_to_grid(const cplx* y, cplx* grid);
  void interpolate_from_grid(const cplx* grid, cplx* y);

  int dim() const { return dim_; }
  int64_t num_points() const { return M_; }
  const EsKernel& kernel() const { return kernel_; }
  std::vector<int64_t> image_shape() const { return {N_, N_ + dim_}; }
  std::vector<int64_t> grid_shape() const { return {n_, n_ + dim_}; }
  int nthreads() const { return nthreads_; }
  const std::vector<T>& deconvolution(int axis) const { return deconv_[axis]; }
  T scale() const { return scale_; }
  int batch_chunk(int64_t batch) const;  // transforms per pass (bounded grid memory)
  double grid_bytes() const { return (double)grid_stride() * sizeof(cplx); }  // one fine grid of a pass
  // Bytes a forward/adjoint of `batch` transforms allocates: the fine grids of a pass (kept by the
  // plan afterwards) and, while spreading, each thread's padded sub-grids (one per grid of the pass).
  double execution_bytes(int64_t batch) const;

 private:
  // nb transforms at once: grids g = 0..nb-1 live at grid_ + g * grid_stride(); samples of
  // transform g at y + g * M. Kernel weights are evaluated once per sample for all nb.
  void spread(const cplx* y, int nb);         // samples -> fine grids (zeroed first)
  void interpolate(cplx* y, int nb) const;    // fine grids -> samples
  // One grid with `threads` threads (1 inside for_each_grid's per-grid parallel loop).
  void fft(cplx* grid, bool forward, int threads);   // pruned to the image support in the first/last passes
  void image_to_grid(const cplx* x, cplx* grid, int threads);  // deconvolve + scale + zero-pad
  void grid_to_image(const cplx* grid, cplx* x, int threads) const;  // crop + deconvolve + scale
  template <typename Work> void for_each_grid(int nb, Work&& work);
  int64_t grid_size() const { return n_[0] * n_[1] * n_[2]; }
  // Distance between the fine grids of a batch: 3 cache lines more than a grid, so that the same
  // cell of different grids falls into different L1/L2 cache sets (grid sizes are often multiples
  // of 4 KiB, and interpolation reads the same rows of every grid).
  int64_t grid_stride() const { return grid_size() + 192 / (int64_t)sizeof(cplx); }
  // Strides of a spreading sub-grid: bin + halo per axis; the last axis has padded_width(W) - W
  // spare cells so that padded rows stay inside.
  std::array<int64_t, 3> subgrid_strides() const;

  void assign_points(const double* coord, int64_t num_points);  // set_points without lock or memory check
  template <int W> void spread_w(const cplx* y, int nb);
  template <int W> void interpolate_w(cplx* y, int nb) const;

  NufftLayout layout_;
  double max_bytes_ = 0;        // NufftOptions::max_bytes, checked again by set_points
  int dim_ = 0;
  int64_t N_[3] = {1, 1, 1};    // image shape (trailing dims 1 when dim_ == 2)
  int64_t n_[3] = {1, 1, 1};    // fine grid shape
  int64_t M_ = 0;
  int nthreads_ = 1;
  EsKernel kernel_;
  std::vector<T> horner_;        // kernel_.horner in T precision, rows padded to Wp
  std::vector<T> horner_dup_;    // the same rows with each coefficient twice (interleaved complex rows)
  T scale_ = 1;                  // 1 / sqrt(prod N)

  // sort scratch, kept so that set_points does not allocate again
  uninit_vector<int32_t> bin_of_;
  uninit_vector<int64_t> sort_counts_;
  // per sample, in sorted order
  uninit_vector<int64_t> order_;   // sorted position -> original sample index
  uninit_vector<int32_t> start_[3];
  uninit_vector<T> z_[3];

  // bins
  int64_t bin_size_[3] = {1, 1, 1};
  int64_t nbins_[3] = {1, 1, 1};
  std::vector<int64_t> bin_offset_;               // into the sorted arrays, size nbins + 1
  std::vector<int64_t> spread_bins_;               // non-empty bins, heaviest first
  std::unique_ptr<std::mutex[]> row_locks_;        // one per axis-0 slab of the fine grid

  std::vector<T> deconv_[3];
  std::vector<cplx> grid_;
  std::mutex mutex_;  // one execution at a time per plan (grid_ is shared workspace)
};

// Largest fine-grid axis a plan accepts (stencil indices are 32-bit): image axes up to about
// 2^30 / upsampfac points.
constexpr int64_t kMaxFineGridAxis = int64_t(1) << 30;

// The 2-3-5-smooth size used for a fine-grid axis: the smallest such even number >= max(sigma*N, 2w).
// std::invalid_argument when it would exceed kMaxFineGridAxis (checked before any integer arithmetic
// that could overflow).
int64_t fine_grid_size(int64_t N, double sigma, int width);

}  // namespace recon
