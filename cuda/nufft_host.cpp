// Host parts of the CUDA NUFFT that need no CUDA: set-up validation, the bin/method choice, and
// HostNufftPlan, which runs the per-element code of nufft_device.cuh in plain loops (the
// emulation the tests use on machines without a GPU). Compiled by the host C++ compiler.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "dispatch.h"
#include "kernels/es_kernel_setup.h"
#include "nufft_cuda.h"
#include "nufft_device.cuh"

namespace recon {
namespace cuda {

namespace {

std::string join(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += std::to_string(v[i]) + (i + 1 < v.size() ? ", " : "");
  return s + ")";
}

int64_t tile_cells_for(const std::vector<int>& bins, const NufftSetup& s) {
  int64_t cells = 1;
  for (int a = 0; a < s.dim; ++a) cells *= std::min<int64_t>(bins[a], s.grid_shape[a]) + s.width - 1;
  return cells;
}

}  // namespace

void validate_setup(const NufftSetup& s, int64_t num_points) {
  if (s.dim != 2 && s.dim != 3) throw std::invalid_argument("dimension must be 2 or 3, got " + std::to_string(s.dim));
  if ((int)s.image_shape.size() != s.dim || (int)s.grid_shape.size() != s.dim)
    throw std::invalid_argument("image_shape and grid_shape must have " + std::to_string(s.dim) + " entries, got " +
                                join(s.image_shape) + " and " + join(s.grid_shape));
  if (s.width < kMinWidth || s.width > kMaxWidth)
    throw std::invalid_argument("kernel width must lie in [2, 16], got " + std::to_string(s.width));
  if (s.degree < 0 || s.degree > kMaxDegree)
    throw std::invalid_argument("Horner degree must lie in [0, " + std::to_string(kMaxDegree) + "], got " +
                                std::to_string(s.degree));
  if ((int64_t)s.horner.size() != (int64_t)(s.degree + 1) * s.width)
    throw std::invalid_argument("horner: expected (degree + 1) * width = " + std::to_string((s.degree + 1) * s.width) +
                                " values, got " + std::to_string(s.horner.size()));
  int64_t sumN = 0, grid = 1;
  for (int a = 0; a < s.dim; ++a) {
    const int64_t N = s.image_shape[a], n = s.grid_shape[a];
    if (N < 1 || N > (int64_t(1) << 30)) throw std::invalid_argument("image_shape entries must lie in [1, 2^30], got " + join(s.image_shape));
    if (n < N || n < 2 * s.width || n > (int64_t(1) << 30))
      throw std::invalid_argument("grid_shape " + join(s.grid_shape) + " must be >= image_shape " + join(s.image_shape) +
                                  " and >= 2 * width = " + std::to_string(2 * s.width) + " per axis");
    sumN += N;
    grid *= n;
  }
  if (grid > (int64_t(1) << 40)) throw std::invalid_argument("fine grid too large: " + join(s.grid_shape));
  if ((int64_t)s.deconv.size() != sumN)
    throw std::invalid_argument("deconv: expected " + std::to_string(sumN) + " factors (sum of image_shape), got " +
                                std::to_string(s.deconv.size()));
  for (double v : s.horner)
    if (!std::isfinite(v)) throw std::invalid_argument("horner: coefficients must be finite");
  for (double v : s.deconv)
    if (!std::isfinite(v)) throw std::invalid_argument("deconv: factors must be finite");
  if (!std::isfinite(s.scale) || !(s.scale > 0)) throw std::invalid_argument("scale must be finite and > 0");
  if (s.spread_method != "auto" && s.spread_method != "sm" && s.spread_method != "gm")
    throw std::invalid_argument("spread_method must be 'auto', 'sm' or 'gm', got '" + s.spread_method + "'");
  if (!s.bin_shape.empty()) {
    if ((int)s.bin_shape.size() != s.dim)
      throw std::invalid_argument("bin_shape must be empty or have " + std::to_string(s.dim) + " entries");
    for (int a = 0; a < s.dim; ++a)
      if (s.bin_shape[a] < 1) throw std::invalid_argument("bin_shape entries must be >= 1");
  }
  if (s.max_subproblem < 1) throw std::invalid_argument("max_subproblem must be >= 1");
  if (num_points < 0 || num_points > (int64_t)0x7fffffff - 1)
    throw std::invalid_argument("number of points per trajectory must lie in [0, 2^31 - 2] on the GPU, got " +
                                std::to_string(num_points));
}

BinChoice choose_bins(const NufftSetup& s, int real_bytes, int64_t smem_default, int64_t smem_optin) {
  const int D = s.dim;
  const int64_t coef_bytes = (int64_t)(((s.degree + 1) * s.width + 1) & ~1) * real_bytes;
  auto bytes_of = [&](const std::vector<int>& b) { return coef_bytes + 2 * real_bytes * tile_cells_for(b, s); };
  BinChoice c;
  std::vector<int> bins = s.bin_shape;
  const bool given = !bins.empty();
  if (!given) bins = D == 2 ? std::vector<int>{32, 32} : std::vector<int>{8, 8, 8};
  for (int a = 0; a < D; ++a) bins[a] = (int)std::min<int64_t>(bins[a], s.grid_shape[a]);
  std::vector<int> sort_bins = bins;  // bins for "gm": sorting only (locality)
  if (s.spread_method == "gm") {
    c.bins = bins;
    c.method = "gm";
    return c;
  }
  if (!given) {
    const int min_bin = D == 2 ? 8 : 4;
    while (bytes_of(bins) > smem_default) {
      int a_max = -1;
      for (int a = 0; a < D; ++a)
        if (bins[a] > min_bin && (a_max < 0 || bins[a] > bins[a_max])) a_max = a;
      if (a_max < 0) break;
      bins[a_max] = std::max(min_bin, bins[a_max] / 2);
    }
  }
  const int64_t need = bytes_of(bins);
  if (need <= smem_optin) {
    c.bins = bins;
    c.method = "sm";
    c.tile_bytes = need;
    return c;
  }
  if (s.spread_method == "sm")
    throw std::invalid_argument("spread_method='sm': a bin tile needs " + std::to_string(need) +
                                " bytes of shared memory, more than the " + std::to_string(smem_optin) +
                                " available; use 'auto' or 'gm'");
  c.bins = given ? bins : sort_bins;
  c.method = "gm";
  return c;
}

// ---- HostNufftPlan: the per-element device code in host loops ----------------------------------

template <typename T>
struct HostNufftPlan<T>::Impl {
  NufftSetup s;
  NufftGeom g{};
  int64_t M = 0;
  int64_t ngrid = 1, nimage = 1;
  std::string method;
  std::vector<T> coef, deconv;
  T scale = 1;
  std::vector<int> start[3];
  std::vector<T> z[3];
  std::vector<int> order, bin_offset, sub_bin, sub_start;
};

namespace {

template <int W, int D, typename T>
struct HostSpreadSm {
  static void run(const typename HostNufftPlan<T>::Impl& P, const T* y, T* grid) {
    std::vector<T> tile;
    for (size_t sp = 0; sp < P.sub_bin.size(); ++sp) {
      const int bin = P.sub_bin[sp];
      const TileBox box = tile_box(P.g, bin);
      const int cells = tile_cells(box);
      tile.assign(2 * (size_t)cells, T(0));
      const int p0 = P.sub_start[sp];
      const int p1 = (int)std::min<int64_t>((int64_t)p0 + P.s.max_subproblem, P.bin_offset[bin + 1]);
      for (int p = p0; p < p1; ++p) {
        const int j = P.order[p];
        int s[3] = {0, 0, 0};
        T z[3] = {0, 0, 0};
        for (int a = 0; a < D; ++a) {
          s[a] = P.start[a][p];
          z[a] = P.z[a][p];
        }
        spread_point_to_tile<W, D, T, PlainAdd>(P.coef.data(), P.s.degree, z, s, box, y[2 * j], y[2 * j + 1],
                                                tile.data());
      }
      for (int c = 0; c < cells; ++c) {
        const T re = tile[2 * c], im = tile[2 * c + 1];
        if (re != T(0) || im != T(0)) {
          const int64_t gi = tile_cell_to_grid(P.g, box, c);
          grid[2 * gi] += re;
          grid[2 * gi + 1] += im;
        }
      }
    }
  }
};

template <int W, int D, typename T>
struct HostSpreadGm {
  static void run(const typename HostNufftPlan<T>::Impl& P, const T* y, T* grid) {
    for (int64_t p = 0; p < P.M; ++p) {
      const int j = P.order[p];
      int s[3] = {0, 0, 0};
      T z[3] = {0, 0, 0};
      for (int a = 0; a < D; ++a) {
        s[a] = P.start[a][p];
        z[a] = P.z[a][p];
      }
      spread_point_to_grid<W, D, T, PlainAdd>(P.g, P.coef.data(), P.s.degree, z, s, y[2 * j], y[2 * j + 1], grid);
    }
  }
};

template <int W, int D, typename T>
struct HostInterp {
  static void run(const typename HostNufftPlan<T>::Impl& P, const T* grid, T* y) {
    for (int64_t p = 0; p < P.M; ++p) {
      const int j = P.order[p];
      int s[3] = {0, 0, 0};
      T z[3] = {0, 0, 0};
      for (int a = 0; a < D; ++a) {
        s[a] = P.start[a][p];
        z[a] = P.z[a][p];
      }
      interp_point<W, D, T>(P.g, P.coef.data(), P.s.degree, z, s, grid, &y[2 * j], &y[2 * j + 1]);
    }
  }
};

}  // namespace

template <typename T>
HostNufftPlan<T>::HostNufftPlan(const double* coord, int64_t num_points, const NufftSetup& setup, int64_t smem_bytes)
    : impl_(new Impl) {
  validate_setup(setup, num_points);
  Impl& P = *impl_;
  P.s = setup;
  P.M = num_points;
  const BinChoice bc = choose_bins(setup, (int)sizeof(T), smem_bytes, smem_bytes);
  P.method = bc.method;
  P.s.bin_shape = bc.bins;
  NufftGeom& g = P.g;
  g.dim = setup.dim;
  g.width = setup.width;
  int64_t total_bins = 1;
  for (int a = 0; a < 3; ++a) {
    const bool used = a < setup.dim;
    g.N[a] = used ? (int)setup.image_shape[a] : 1;
    g.n[a] = used ? (int)setup.grid_shape[a] : 1;
    g.bin[a] = used ? bc.bins[a] : 1;
    g.nbins[a] = (g.n[a] + g.bin[a] - 1) / g.bin[a];
    total_bins *= g.nbins[a];
    P.ngrid *= g.n[a];
    P.nimage *= g.N[a];
  }
  if (total_bins > 0x7fffffff - 1) throw std::invalid_argument("too many bins");
  P.coef.assign(setup.horner.begin(), setup.horner.end());
  P.deconv.assign(setup.deconv.begin(), setup.deconv.end());
  P.scale = (T)setup.scale;

  // plan_point per sample, counting sort by bin (rank = arrival order within the bin), scatter
  const int D = setup.dim;
  std::vector<int> bin_of(P.M), rank(P.M), raw_start((size_t)D * P.M);
  std::vector<T> raw_z((size_t)D * P.M);
  std::vector<int> count(total_bins + 1, 0);
  for (int64_t j = 0; j < P.M; ++j) {
    int s[3];
    T z[3];
    int bin;
    if (!plan_point<T>(coord + j * D, g, s, z, &bin))
      throw std::invalid_argument("coordinates must be finite and lie in [-N/2, N/2] (cycles per FOV)");
    for (int a = 0; a < D; ++a) {
      raw_start[a * P.M + j] = s[a];
      raw_z[a * P.M + j] = z[a];
    }
    bin_of[j] = bin;
    rank[j] = count[bin]++;
  }
  P.bin_offset.assign(total_bins + 1, 0);
  for (int64_t b = 0; b < total_bins; ++b) P.bin_offset[b + 1] = P.bin_offset[b] + count[b];
  P.order.resize(P.M);
  for (int a = 0; a < D; ++a) {
    P.start[a].resize(P.M);
    P.z[a].resize(P.M);
  }
  for (int64_t j = 0; j < P.M; ++j) {
    const int p = P.bin_offset[bin_of[j]] + rank[j];
    P.order[p] = (int)j;
    for (int a = 0; a < D; ++a) {
      P.start[a][p] = raw_start[a * P.M + j];
      P.z[a][p] = raw_z[a * P.M + j];
    }
  }
  // sub-problems: bins split into runs of at most max_subproblem samples
  for (int64_t b = 0; b < total_bins; ++b) {
    const int cnt = P.bin_offset[b + 1] - P.bin_offset[b];
    for (int first = 0; first < cnt; first += setup.max_subproblem) {
      P.sub_bin.push_back((int)b);
      P.sub_start.push_back(P.bin_offset[b] + first);
    }
  }
}

template <typename T>
HostNufftPlan<T>::~HostNufftPlan() = default;

template <typename T>
void HostNufftPlan<T>::pad(const T* x, T* grid, int64_t batch) const {
  const Impl& P = *impl_;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < P.ngrid; ++c)
      pad_cell<T>(P.g, P.deconv.data(), P.scale, x + 2 * b * P.nimage, c, &grid[2 * (b * P.ngrid + c)],
                  &grid[2 * (b * P.ngrid + c) + 1]);
}

template <typename T>
void HostNufftPlan<T>::crop(const T* grid, T* x, int64_t batch) const {
  const Impl& P = *impl_;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t e = 0; e < P.nimage; ++e)
      crop_elem<T>(P.g, P.deconv.data(), P.scale, grid + 2 * b * P.ngrid, e, &x[2 * (b * P.nimage + e)],
                   &x[2 * (b * P.nimage + e) + 1]);
}

template <typename T>
void HostNufftPlan<T>::interpolate(const T* grid, T* y, int64_t batch) const {
  const Impl& P = *impl_;
  for (int64_t b = 0; b < batch; ++b)
    dispatch_width_dim<HostInterp, T>(P.g.width, P.g.dim, P, grid + 2 * b * P.ngrid, y + 2 * b * P.M);
}

template <typename T>
void HostNufftPlan<T>::spread(const T* y, T* grid, int64_t batch) const {
  const Impl& P = *impl_;
  std::fill(grid, grid + 2 * batch * P.ngrid, T(0));
  for (int64_t b = 0; b < batch; ++b) {
    if (P.method == "sm")
      dispatch_width_dim<HostSpreadSm, T>(P.g.width, P.g.dim, P, y + 2 * b * P.M, grid + 2 * b * P.ngrid);
    else
      dispatch_width_dim<HostSpreadGm, T>(P.g.width, P.g.dim, P, y + 2 * b * P.M, grid + 2 * b * P.ngrid);
  }
}

template <typename T>
int64_t HostNufftPlan<T>::num_points() const { return impl_->M; }
template <typename T>
const NufftSetup& HostNufftPlan<T>::setup() const { return impl_->s; }
template <typename T>
std::vector<int> HostNufftPlan<T>::bin_shape() const { return impl_->s.bin_shape; }
template <typename T>
std::string HostNufftPlan<T>::spread_method() const { return impl_->method; }
template <typename T>
int64_t HostNufftPlan<T>::num_subproblems() const { return (int64_t)impl_->sub_bin.size(); }
template <typename T>
std::vector<int> HostNufftPlan<T>::order() const { return impl_->order; }
template <typename T>
std::vector<int> HostNufftPlan<T>::bin_offsets() const { return impl_->bin_offset; }

template class HostNufftPlan<float>;
template class HostNufftPlan<double>;

}  // namespace cuda
}  // namespace recon
