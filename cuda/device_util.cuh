// Small CUDA runtime helpers shared by the module's .cu files: device guard, owning device buffer,
// pointer checks (a bad pointer raises ValueError instead of crashing).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "nufft_kernels.cuh"  // check_cuda

namespace recon {
namespace cuda {

int device_count();
void check_device_index(int device);  // std::invalid_argument unless 0 <= device < device_count()

// Makes `device` current for the lifetime of the guard and restores the caller's device after.
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int cur = -1;
    if (prev >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != prev) cudaSetDevice(prev);
  }
};

// Owning device allocation (freed on the device it was allocated on).
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  int device = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void allocate(size_t nbytes, int dev) {
    release();
    device = dev;
    bytes = nbytes;
    if (nbytes > 0) check_cuda(cudaMalloc(&ptr, nbytes), "cudaMalloc");
  }
  void release() {
    if (ptr) {
      int cur = -1;
      cudaGetDevice(&cur);
      if (cur != device) cudaSetDevice(device);
      cudaFree(ptr);
      if (cur >= 0 && cur != device) cudaSetDevice(cur);
      cudaGetLastError();
    }
    ptr = nullptr;
    bytes = 0;
  }
  ~DeviceBuffer() { release(); }
};

template <typename U>
inline U* as(const DeviceBuffer& b) {
  return static_cast<U*>(b.ptr);
}

// Raises ValueError (std::invalid_argument) unless p is device (or managed) memory of `device`,
// aligned for complex T.
inline void check_pointer(uintptr_t p, int device, size_t align, const char* name) {
  if (p == 0) throw std::invalid_argument(std::string(name) + ": null pointer");
  if (p % align != 0)
    throw std::invalid_argument(std::string(name) + ": pointer not aligned to " + std::to_string(align) + " bytes");
  cudaPointerAttributes at;
  const cudaError_t e = cudaPointerGetAttributes(&at, reinterpret_cast<const void*>(p));
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::invalid_argument(std::string(name) + ": not a CUDA pointer (" + cudaGetErrorName(e) + ")");
  }
  if (at.type == cudaMemoryTypeManaged) return;
  if (at.type != cudaMemoryTypeDevice)
    throw std::invalid_argument(std::string(name) + ": expected device memory, got a host pointer");
  if (at.device != device)
    throw std::invalid_argument(std::string(name) + ": memory on CUDA device " + std::to_string(at.device) +
                                ", but the plan lives on device " + std::to_string(device));
}

}  // namespace cuda
}  // namespace recon
