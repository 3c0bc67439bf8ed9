// Shared by csrc/ (C++/OpenMP) and cuda/ (CUDA): the per-element maths lives in headers
// under csrc/kernels/ and is written once, as HOST_DEVICE inline functions.
#pragma once

#if defined(__CUDACC__)
#define RECON_HOST_DEVICE __host__ __device__
#define RECON_INLINE __forceinline__
#else
#define RECON_HOST_DEVICE
#define RECON_INLINE inline __attribute__((always_inline))
#endif

#define HOST_DEVICE RECON_HOST_DEVICE

namespace recon {

// Periodic wrap of an index that is at most one period outside [0, n).
RECON_HOST_DEVICE RECON_INLINE int wrap_once(int i, int n) {
  return i < 0 ? i + n : (i >= n ? i - n : i);
}

}  // namespace recon
