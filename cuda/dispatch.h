// Run-time kernel width and dimension -> compile-time template arguments.
// Op<W, D, T>::run(args...) is called for W in 2..16 and D in {2, 3}.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace recon {
namespace cuda {

template <template <int, int, typename> class Op, typename T, typename... A>
void dispatch_width_dim(int width, int dim, A&&... args) {
  if (dim != 2 && dim != 3) throw std::logic_error("recon._cuda: unsupported dimension " + std::to_string(dim));
  switch (width) {
#define RECON_CUDA_CASE(WV)                          \
  case WV:                                           \
    if (dim == 2)                                    \
      Op<WV, 2, T>::run(std::forward<A>(args)...);   \
    else                                             \
      Op<WV, 3, T>::run(std::forward<A>(args)...);   \
    return;
    RECON_CUDA_CASE(2) RECON_CUDA_CASE(3) RECON_CUDA_CASE(4) RECON_CUDA_CASE(5) RECON_CUDA_CASE(6)
    RECON_CUDA_CASE(7) RECON_CUDA_CASE(8) RECON_CUDA_CASE(9) RECON_CUDA_CASE(10) RECON_CUDA_CASE(11)
    RECON_CUDA_CASE(12) RECON_CUDA_CASE(13) RECON_CUDA_CASE(14) RECON_CUDA_CASE(15) RECON_CUDA_CASE(16)
#undef RECON_CUDA_CASE
    default:
      break;
  }
  throw std::logic_error("recon._cuda: unsupported kernel width " + std::to_string(width));
}

}  // namespace cuda
}  // namespace recon
