// Host parts of the CUDA Joseph projector: argument validation and HostJosephProjector, which runs
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

void validate_joseph(const JosephSetup& s) {
  if (s.kind < 0 || s.kind > 3)
    throw std::invalid_argument("kind must be 0 (parallel2d), 1 (fan flat), 2 (fan arc) or 3 (cone flat)");
  const int nd = s.kind == joseph::CONE_FLAT ? 3 : 2;
  if (s.n_views < 1) throw std::invalid_argument("vectors: need at least one view");
  if (s.det_cols < 1 || s.det_rows < 1) throw std::invalid_argument("det_shape: sizes must be >= 1");
  if (nd == 2 && s.det_rows != 1) throw std::invalid_argument("det_shape: 2D geometries have one detector row");
  if (s.nx < 1 || s.ny < 1 || s.nz < 1) throw std::invalid_argument("image_shape: sizes must be >= 1");
  if (nd == 2 && s.nz != 1) throw std::invalid_argument("image_shape: 2D geometries take (ny, nx)");
  if (!(s.vx > 0 && s.vy > 0 && s.vz > 0) || !std::isfinite(s.vx) || !std::isfinite(s.vy) || !std::isfinite(s.vz))
    throw std::invalid_argument("voxel_size: must be positive and finite");
  if (s.subsample < 1 || s.subsample > 16) throw std::invalid_argument("subsample: must lie in [1, 16]");
  const int64_t L = joseph::vec_len(s.kind);
  if ((int64_t)s.vectors.size() != s.n_views * L)
    throw std::invalid_argument("vectors: expected " + std::to_string(s.n_views * L) + " values (n_views x " +
                                std::to_string(L) + "), got " + std::to_string(s.vectors.size()));
  for (double v : s.vectors)
    if (!std::isfinite(v)) throw std::invalid_argument("vectors: contains NaN or Inf");
  if ((int64_t)s.nx * s.ny * s.nz > (int64_t(1) << 40)) throw std::invalid_argument("image_shape: image too large");
  if (s.n_views * s.det_rows * s.det_cols > (int64_t(1) << 40)) throw std::invalid_argument("det_shape: too many rays");
}

template <typename T>
HostJosephProjector<T>::HostJosephProjector(const JosephSetup& setup) : s_(setup) {
  validate_joseph(s_);
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
