// Host-side interface of the CUDA NUFFT (module recon._cuda). Plain C++: no CUDA or pybind11
// headers, so bind_cuda.cpp (the only file that knows pybind11) compiles with the host compiler.
//
// A DeviceNufftPlan holds, on one device, the sorted samples of one trajectory (stencil starts,
// Horner variables, sample order, bin offsets, sub-problems), the Horner coefficients and the
// deconvolution factors of the CPU plan (recon._core.NufftPlan64/128: passed in, so CPU and GPU
// weights are the same by construction). Its four steps take raw device pointers and a CUDA
// stream handle (integers from __cuda_array_interface__ / torch's data_ptr and stream):
//   forward (type 2): pad (deconvolve + zero-pad) -> FFT (caller's library) -> interpolate
//   adjoint (type 1): spread -> inverse FFT (caller's library, unnormalised) -> crop (+ deconvolve)
// HostNufftPlan runs the very same per-element code (nufft_device.cuh) in host loops on host
// buffers: it is how the index arithmetic is tested without a GPU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace recon {
namespace cuda {

// Device queries; device_count() is 0 when there is no driver or no device (never throws).
int device_count();
std::string device_count_error();  // "" when a device is visible, else why not (driver, no device)
std::string device_name(int device);
std::pair<int, int> compute_capability(int device);
int runtime_version();
int driver_version();  // 0 when there is no driver

// Everything a plan needs besides the coordinates; validated by validate_setup().
struct NufftSetup {
  int dim = 0;
  std::vector<int64_t> image_shape;  // N, dim entries
  std::vector<int64_t> grid_shape;   // fine grid n, dim entries, each >= 2 * width
  int width = 0;                     // 2 .. 16
  int degree = 0;                    // Horner degree; horner has (degree + 1) * width values
  std::vector<double> horner;        // highest power first, as es_kernel.h
  std::vector<double> deconv;        // per-axis factors, concatenated: N0 + N1 (+ N2) values
  double scale = 1.0;                // 1 / sqrt(prod N)
  std::string spread_method = "auto";  // "auto", "sm" (shared-memory tiles) or "gm" (global atomics)
  std::vector<int> bin_shape;        // empty: chosen automatically
  int max_subproblem = 1024;         // samples per shared-memory sub-problem
};

void validate_setup(const NufftSetup& s, int64_t num_points);

// Bin shape and spreading method for a setup: per-axis bins whose padded tile of
// (bin + W - 1)^D complex values fits in `smem_bytes` of shared memory; "gm" when even the
// smallest allowed bins do not fit (or when asked for).
struct BinChoice {
  std::vector<int> bins;
  std::string method;
  int64_t tile_bytes = 0;  // shared memory of one sub-problem (tile + coefficients), "sm" only
};
BinChoice choose_bins(const NufftSetup& s, int real_bytes, int64_t smem_default, int64_t smem_optin);

template <typename T>
class DeviceNufftPlan {
 public:
  // coord: host (M, dim) float64, cycles per FOV. Builds the plan on `device` using `stream`
  // (synchronised before returning).
  DeviceNufftPlan(int device, const double* coord, int64_t num_points, const NufftSetup& setup, uintptr_t stream);
  ~DeviceNufftPlan();
  DeviceNufftPlan(const DeviceNufftPlan&) = delete;
  DeviceNufftPlan& operator=(const DeviceNufftPlan&) = delete;

  // Asynchronous on `stream`; pointers are device pointers to interleaved complex T.
  void pad(uintptr_t x, uintptr_t grid, int64_t batch, uintptr_t stream) const;          // (B,N) -> (B,n)
  void interpolate(uintptr_t grid, uintptr_t y, int64_t batch, uintptr_t stream) const;  // (B,n) -> (B,M)
  void spread(uintptr_t y, uintptr_t grid, int64_t batch, uintptr_t stream) const;       // (B,M) -> (B,n), zeroes grid
  void crop(uintptr_t grid, uintptr_t x, int64_t batch, uintptr_t stream) const;         // (B,n) -> (B,N)

  int device() const;
  int64_t num_points() const;
  const NufftSetup& setup() const;
  std::vector<int> bin_shape() const;
  std::string spread_method() const;
  int64_t num_subproblems() const;
  int64_t device_bytes() const;  // plan memory on the device

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

template <typename T>
class HostNufftPlan {
 public:
  HostNufftPlan(const double* coord, int64_t num_points, const NufftSetup& setup, int64_t smem_bytes);
  ~HostNufftPlan();

  void pad(const T* x, T* grid, int64_t batch) const;
  void interpolate(const T* grid, T* y, int64_t batch) const;
  void spread(const T* y, T* grid, int64_t batch) const;
  void crop(const T* grid, T* x, int64_t batch) const;

  int64_t num_points() const;
  const NufftSetup& setup() const;
  std::vector<int> bin_shape() const;
  std::string spread_method() const;
  int64_t num_subproblems() const;
  // sorted order (sorted position -> sample index) and bin offsets, for tests
  std::vector<int> order() const;
  std::vector<int> bin_offsets() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda
}  // namespace recon
