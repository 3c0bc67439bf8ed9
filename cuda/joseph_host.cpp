// Host parts of the CUDA Joseph projector: HostJosephProjector, which runs
// the per-ray code of joseph_device.cuh in host loops (the emulation the tests compare with the CPU
// projector of recon._core). Compiled by the host C++ compiler.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "joseph_cuda.h"
#include "joseph_device.cuh"

namespace recon {
namespace cuda {

template <typename T>
HostJosephProjector<T>::HostJosephProjector(const JosephSetup& setup) : s_(setup) {
  recon::validate_ct_spec(s_);
}

template <typename T>
int64_t HostJosephProjector<T>::image_size() const { return (int64_t)s_.nx * s_.ny * s_.nz; }
template <typename T>
int64_t HostJosephProjector<T>::sino_size() const { return s_.n_views * s_.det_rows * s_.det_cols; }

template <typename T>
void HostJosephProjector<T>::forward(const T* x, T* y, int64_t batch) const {
  const JosephGeom g = make_joseph_geom(s_);
  const int64_t img = image_size(), sino = sino_size();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < sino; ++r) y[b * sino + r] = joseph_forward_ray<T, int64_t>(g, s_.vectors.data(), x + b * img, r);
}

template <typename T>
void HostJosephProjector<T>::adjoint(const T* y, T* x, int64_t batch) const {
  const JosephGeom g = make_joseph_geom(s_);
  const int64_t img = image_size(), sino = sino_size();
  const int64_t nl = sino * joseph_nsub(g);
  std::fill(x, x + batch * img, T(0));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t li = 0; li < nl; ++li)
      joseph_adjoint_subray<joseph::JosephAdjoint, T, int64_t>(g, s_.vectors.data(), y + b * sino, x + b * img, li);
}

template class HostJosephProjector<float>;
template class HostJosephProjector<double>;

}  // namespace cuda
}  // namespace recon
