// DeviceNufftPlan: plan building on the device (stencil starts and Horner variables in double,
// counting sort by bin: atomics on bin counts, CUB exclusive scan, scatter; sub-problems) and the
// four execution steps with their argument checks. Also the device queries of recon._cuda.
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cstring>
#include <vector>

#include "nufft_cuda.h"
#include "device_util.cuh"
#include "nufft_kernels.cuh"

namespace recon {
namespace cuda {

// ---- device queries ------------------------------------------------------------------------------

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_count_error() {
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
    cudaGetLastError();
    return "no CUDA driver found (libcuda.so.1 cannot be loaded)";
  }
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess) return n > 0 ? "" : "no CUDA device";
  cudaGetLastError();
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

void check_device_index(int device) {
  const int n = device_count();
  if (device < 0 || device >= n)
    throw std::invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                                " visible)");
}

std::string device_name(int device) {
  check_device_index(device);
  cudaDeviceProp prop;
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return std::string(prop.name);
}

std::pair<int, int> compute_capability(int device) {
  check_device_index(device);
  int major = 0, minor = 0;
  check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute");
  return {major, minor};
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

// ---- helpers -------------------------------------------------------------------------------------

namespace {

template <typename T>
__global__ void k_plan_points(const double* __restrict__ coord, int64_t M, NufftGeom g, int* __restrict__ raw_start,
                              T* __restrict__ raw_z, int* __restrict__ bin_of, int* __restrict__ rank,
                              int* __restrict__ bin_count, int* __restrict__ bad) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < M; j += (int64_t)gridDim.x * blockDim.x) {
    int s[3];
    T z[3];
    int bin;
    if (!plan_point<T>(coord + j * g.dim, g, s, z, &bin)) {
      atomicOr(bad, 1);
      bin_of[j] = -1;
      continue;
    }
    for (int a = 0; a < g.dim; ++a) {
      raw_start[a * M + j] = s[a];
      raw_z[a * M + j] = z[a];
    }
    bin_of[j] = bin;
    rank[j] = atomicAdd(bin_count + bin, 1);
  }
}

template <typename T>
__global__ void k_scatter(int64_t M, int dim, const int* __restrict__ bin_of, const int* __restrict__ rank,
                          const int* __restrict__ bin_offset, const int* __restrict__ raw_start,
                          const T* __restrict__ raw_z, int* __restrict__ order, int* __restrict__ start,
                          T* __restrict__ z) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < M; j += (int64_t)gridDim.x * blockDim.x) {
    const int p = bin_offset[bin_of[j]] + rank[j];
    order[p] = (int)j;
    for (int a = 0; a < dim; ++a) {
      start[a * M + p] = raw_start[a * M + j];
      z[a * M + p] = raw_z[a * M + j];
    }
  }
}

// nsub[b] = ceil(count[b] / maxsub) for b < nbins; nsub[nbins] = 0 (so the exclusive scan's last
// entry is the total).
__global__ void k_count_sub(int nbins, const int* __restrict__ bin_offset, int maxsub, int* __restrict__ nsub) {
  for (int b = blockIdx.x * blockDim.x + threadIdx.x; b <= nbins; b += gridDim.x * blockDim.x) {
    if (b == nbins) {
      nsub[b] = 0;
    } else {
      const int cnt = bin_offset[b + 1] - bin_offset[b];
      nsub[b] = (cnt + maxsub - 1) / maxsub;
    }
  }
}

__global__ void k_fill_sub(int nbins, const int* __restrict__ bin_offset, const int* __restrict__ sub_offset,
                           int maxsub, int* __restrict__ sub_bin, int* __restrict__ sub_start) {
  for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < nbins; b += gridDim.x * blockDim.x) {
    const int first = sub_offset[b], count = sub_offset[b + 1] - sub_offset[b];
    for (int i = 0; i < count; ++i) {
      sub_bin[first + i] = b;
      sub_start[first + i] = bin_offset[b] + i * maxsub;
    }
  }
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(b, int64_t(1) << 20));
}

// Exclusive prefix sum of n ints on the device (CUB).
void exclusive_scan(const int* in, int* out, int n, int device, cudaStream_t st) {
  size_t temp_bytes = 0;
  check_cuda(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, in, out, n, st), "cub scan (size)");
  DeviceBuffer temp;
  temp.allocate(std::max<size_t>(temp_bytes, 1), device);
  check_cuda(cub::DeviceScan::ExclusiveSum(temp.ptr, temp_bytes, in, out, n, st), "cub scan");
  check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (scan)");  // temp is freed on return
}

}  // namespace

// ---- the plan ----------------------------------------------------------------------------------------

template <typename T>
struct DeviceNufftPlan<T>::Impl {
  int device = 0;
  int64_t M = 0;
  NufftSetup setup;
  BinChoice bins;
  DeviceBuffer start, z, order, bin_offset, sub_bin, sub_start, coef, deconv;
  DevView<T> view{};
  int64_t bytes = 0;
};

template <typename T>
DeviceNufftPlan<T>::DeviceNufftPlan(int device, const double* coord, int64_t num_points, const NufftSetup& setup,
                                    uintptr_t stream)
    : impl_(new Impl) {
  validate_setup(setup, num_points);
  check_device_index(device);
  DeviceGuard guard(device);
  Impl& P = *impl_;
  P.device = device;
  P.M = num_points;
  P.setup = setup;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);

  int optin = 0;
  check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  P.bins = choose_bins(setup, (int)sizeof(T), std::min<int64_t>(kSmemDefault, optin), optin);
  P.setup.bin_shape = P.bins.bins;

  DevView<T>& v = P.view;
  NufftGeom& g = v.g;
  g.dim = setup.dim;
  g.width = setup.width;
  int64_t total_bins = 1;
  v.ngrid = 1;
  v.nimage = 1;
  for (int a = 0; a < 3; ++a) {
    const bool used = a < setup.dim;
    g.N[a] = used ? (int)setup.image_shape[a] : 1;
    g.n[a] = used ? (int)setup.grid_shape[a] : 1;
    g.bin[a] = used ? P.bins.bins[a] : 1;
    g.nbins[a] = (g.n[a] + g.bin[a] - 1) / g.bin[a];
    total_bins *= g.nbins[a];
    v.ngrid *= g.n[a];
    v.nimage *= g.N[a];
  }
  if (total_bins > 0x7ffffff0) throw std::invalid_argument("too many bins");
  const int nbins = (int)total_bins;
  const int D = setup.dim;
  const int64_t M = num_points;
  v.M = M;
  v.maxsub = setup.max_subproblem;
  v.degree = setup.degree;
  v.ncoef_padded = ((setup.degree + 1) * setup.width + 1) & ~1;
  v.scale = (T)setup.scale;
  v.tile_bytes = P.bins.tile_bytes;

  // constants: Horner coefficients and deconvolution factors in T (as the CPU plan rounds them)
  {
    std::vector<T> c(setup.horner.begin(), setup.horner.end());
    std::vector<T> d(setup.deconv.begin(), setup.deconv.end());
    P.coef.allocate(c.size() * sizeof(T), device);
    P.deconv.allocate(d.size() * sizeof(T), device);
    check_cuda(cudaMemcpyAsync(P.coef.ptr, c.data(), c.size() * sizeof(T), cudaMemcpyHostToDevice, st), "copy horner");
    check_cuda(cudaMemcpyAsync(P.deconv.ptr, d.data(), d.size() * sizeof(T), cudaMemcpyHostToDevice, st), "copy deconv");
    check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (constants)");  // host vectors go out of scope
  }
  v.coef = as<T>(P.coef);
  v.deconv = as<T>(P.deconv);

  P.start.allocate((size_t)D * M * sizeof(int), device);
  P.z.allocate((size_t)D * M * sizeof(T), device);
  P.order.allocate((size_t)M * sizeof(int), device);
  P.bin_offset.allocate((size_t)(nbins + 1) * sizeof(int), device);
  {
    DeviceBuffer d_coord, raw_start, raw_z, bin_of, rank, bin_count, bad;
    d_coord.allocate((size_t)D * M * sizeof(double), device);
    raw_start.allocate((size_t)D * M * sizeof(int), device);
    raw_z.allocate((size_t)D * M * sizeof(T), device);
    bin_of.allocate((size_t)M * sizeof(int), device);
    rank.allocate((size_t)M * sizeof(int), device);
    bin_count.allocate((size_t)(nbins + 1) * sizeof(int), device);
    bad.allocate(sizeof(int), device);
    if (M > 0)
      check_cuda(cudaMemcpyAsync(d_coord.ptr, coord, (size_t)D * M * sizeof(double), cudaMemcpyHostToDevice, st),
                 "copy coordinates");
    check_cuda(cudaMemsetAsync(bin_count.ptr, 0, (size_t)(nbins + 1) * sizeof(int), st), "memset");
    check_cuda(cudaMemsetAsync(bad.ptr, 0, sizeof(int), st), "memset");
    if (M > 0) {
      k_plan_points<T><<<blocks_for(M), kThreads, 0, st>>>(as<double>(d_coord), M, g, as<int>(raw_start),
                                                          as<T>(raw_z), as<int>(bin_of), as<int>(rank),
                                                          as<int>(bin_count), as<int>(bad));
      check_cuda(cudaGetLastError(), "plan_points launch");
    }
    int bad_host = 0;
    check_cuda(cudaMemcpyAsync(&bad_host, bad.ptr, sizeof(int), cudaMemcpyDeviceToHost, st), "copy flag");
    check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (plan points)");
    if (bad_host) throw std::invalid_argument("coordinates must be finite and lie in [-N/2, N/2] (cycles per FOV)");
    exclusive_scan(as<int>(bin_count), as<int>(P.bin_offset), nbins + 1, device, st);
    if (M > 0) {
      k_scatter<T><<<blocks_for(M), kThreads, 0, st>>>(M, D, as<int>(bin_of), as<int>(rank), as<int>(P.bin_offset),
                                                      as<int>(raw_start), as<T>(raw_z), as<int>(P.order),
                                                      as<int>(P.start), as<T>(P.z));
      check_cuda(cudaGetLastError(), "scatter launch");
    }
    check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (scatter)");  // temporaries freed below
  }
  for (int a = 0; a < 3; ++a) {
    v.start[a] = a < D ? as<int>(P.start) + a * M : nullptr;
    v.z[a] = a < D ? as<T>(P.z) + a * M : nullptr;
  }
  v.order = as<int>(P.order);
  v.bin_offset = as<int>(P.bin_offset);

  // sub-problems (shared-memory spreading only)
  v.nsub = 0;
  v.sub_bin = nullptr;
  v.sub_start = nullptr;
  if (P.bins.method == "sm" && M > 0) {
    DeviceBuffer nsub, sub_offset;
    nsub.allocate((size_t)(nbins + 1) * sizeof(int), device);
    sub_offset.allocate((size_t)(nbins + 1) * sizeof(int), device);
    k_count_sub<<<blocks_for(nbins + 1), kThreads, 0, st>>>(nbins, as<int>(P.bin_offset), v.maxsub, as<int>(nsub));
    check_cuda(cudaGetLastError(), "count_sub launch");
    exclusive_scan(as<int>(nsub), as<int>(sub_offset), nbins + 1, device, st);
    int total_sub = 0;
    check_cuda(cudaMemcpyAsync(&total_sub, as<int>(sub_offset) + nbins, sizeof(int), cudaMemcpyDeviceToHost, st),
               "copy sub-problem count");
    check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (sub-problems)");
    P.sub_bin.allocate((size_t)total_sub * sizeof(int), device);
    P.sub_start.allocate((size_t)total_sub * sizeof(int), device);
    if (total_sub > 0) {
      k_fill_sub<<<blocks_for(nbins), kThreads, 0, st>>>(nbins, as<int>(P.bin_offset), as<int>(sub_offset), v.maxsub,
                                                        as<int>(P.sub_bin), as<int>(P.sub_start));
      check_cuda(cudaGetLastError(), "fill_sub launch");
    }
    check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (fill sub-problems)");
    v.nsub = total_sub;
    v.sub_bin = as<int>(P.sub_bin);
    v.sub_start = as<int>(P.sub_start);
  }
  P.bytes = (int64_t)(P.start.bytes + P.z.bytes + P.order.bytes + P.bin_offset.bytes + P.sub_bin.bytes +
                      P.sub_start.bytes + P.coef.bytes + P.deconv.bytes);
}

template <typename T>
DeviceNufftPlan<T>::~DeviceNufftPlan() = default;

template <typename T>
void DeviceNufftPlan<T>::pad(uintptr_t x, uintptr_t grid, int64_t batch, uintptr_t stream) const {
  const Impl& P = *impl_;
  if (batch < 0) throw std::invalid_argument("batch must be >= 0");
  if (batch == 0) return;
  DeviceGuard guard(P.device);
  check_pointer(x, P.device, 2 * sizeof(T), "x");
  check_pointer(grid, P.device, 2 * sizeof(T), "grid");
  launch_pad<T>(P.view, reinterpret_cast<const T*>(x), reinterpret_cast<T*>(grid), batch,
                reinterpret_cast<cudaStream_t>(stream));
}

template <typename T>
void DeviceNufftPlan<T>::crop(uintptr_t grid, uintptr_t x, int64_t batch, uintptr_t stream) const {
  const Impl& P = *impl_;
  if (batch < 0) throw std::invalid_argument("batch must be >= 0");
  if (batch == 0) return;
  DeviceGuard guard(P.device);
  check_pointer(grid, P.device, 2 * sizeof(T), "grid");
  check_pointer(x, P.device, 2 * sizeof(T), "x");
  launch_crop<T>(P.view, reinterpret_cast<const T*>(grid), reinterpret_cast<T*>(x), batch,
                 reinterpret_cast<cudaStream_t>(stream));
}

template <typename T>
void DeviceNufftPlan<T>::interpolate(uintptr_t grid, uintptr_t y, int64_t batch, uintptr_t stream) const {
  const Impl& P = *impl_;
  if (batch < 0) throw std::invalid_argument("batch must be >= 0");
  if (batch == 0 || P.M == 0) return;
  DeviceGuard guard(P.device);
  check_pointer(grid, P.device, 2 * sizeof(T), "grid");
  check_pointer(y, P.device, 2 * sizeof(T), "y");
  launch_interp<T>(P.view, reinterpret_cast<const T*>(grid), reinterpret_cast<T*>(y), batch,
                   reinterpret_cast<cudaStream_t>(stream));
}

template <typename T>
void DeviceNufftPlan<T>::spread(uintptr_t y, uintptr_t grid, int64_t batch, uintptr_t stream) const {
  const Impl& P = *impl_;
  if (batch < 0) throw std::invalid_argument("batch must be >= 0");
  if (batch == 0) return;
  DeviceGuard guard(P.device);
  check_pointer(grid, P.device, 2 * sizeof(T), "grid");
  if (P.M > 0) check_pointer(y, P.device, 2 * sizeof(T), "y");
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  check_cuda(cudaMemsetAsync(reinterpret_cast<void*>(grid), 0, (size_t)batch * P.view.ngrid * 2 * sizeof(T), st),
             "zero the fine grid");
  if (P.M == 0) return;
  launch_spread<T>(P.view, P.bins.method == "sm", reinterpret_cast<const T*>(y), reinterpret_cast<T*>(grid), batch, st);
}

template <typename T>
int DeviceNufftPlan<T>::device() const { return impl_->device; }
template <typename T>
int64_t DeviceNufftPlan<T>::num_points() const { return impl_->M; }
template <typename T>
const NufftSetup& DeviceNufftPlan<T>::setup() const { return impl_->setup; }
template <typename T>
std::vector<int> DeviceNufftPlan<T>::bin_shape() const { return impl_->bins.bins; }
template <typename T>
std::string DeviceNufftPlan<T>::spread_method() const { return impl_->bins.method; }
template <typename T>
int64_t DeviceNufftPlan<T>::num_subproblems() const { return impl_->view.nsub; }
template <typename T>
int64_t DeviceNufftPlan<T>::device_bytes() const { return impl_->bytes; }

template class DeviceNufftPlan<float>;
template class DeviceNufftPlan<double>;

}  // namespace cuda
}  // namespace recon
