// Device-side view of a NUFFT plan and the launchers of the CUDA kernels (CUDA sources only).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "nufft_device.cuh"

namespace recon {
namespace cuda {

// Plain-pointer view of a device plan, passed by value to every kernel.
template <typename T>
struct DevView {
  NufftGeom g;
  int64_t M;          // samples
  int64_t ngrid;      // prod n (one batch item)
  int64_t nimage;     // prod N (one batch item)
  const int* start[3];  // sorted: stencil start per axis (wrapped into [0, n))
  const T* z[3];        // sorted: Horner variable per axis
  const int* order;     // sorted position -> sample index
  const int* bin_offset;  // (total bins + 1)
  const int* sub_bin;     // sub-problem -> bin
  const int* sub_start;   // sub-problem -> first sorted position
  int64_t nsub;           // number of sub-problems
  int maxsub;             // samples per sub-problem at most
  const T* coef;          // (degree + 1) * W Horner coefficients
  int degree;
  int ncoef_padded;       // coefficients rounded up to an even count (keeps the tile 2T-aligned)
  const T* deconv;        // N0 + N1 (+ N2) deconvolution factors
  T scale;
  int64_t tile_bytes;     // dynamic shared memory of one spreading sub-problem ("sm")
};

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error
    throw std::runtime_error(std::string("recon._cuda: ") + what + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
  }
}

constexpr int kThreads = 256;          // threads per block of every kernel
constexpr int kMaxGridY = 65535;       // batch items per launch (gridDim.y)
constexpr int64_t kSmemDefault = 48 * 1024;

// Launchers (nufft_spread.cu, nufft_interp.cu). Batch loops over chunks of kMaxGridY inside.
template <typename T>
void launch_spread(const DevView<T>& v, bool shared_memory, const T* y, T* grid, int64_t batch, cudaStream_t st);
template <typename T>
void launch_interp(const DevView<T>& v, const T* grid, T* y, int64_t batch, cudaStream_t st);
template <typename T>
void launch_pad(const DevView<T>& v, const T* x, T* grid, int64_t batch, cudaStream_t st);
template <typename T>
void launch_crop(const DevView<T>& v, const T* grid, T* x, int64_t batch, cudaStream_t st);

}  // namespace cuda
}  // namespace recon
