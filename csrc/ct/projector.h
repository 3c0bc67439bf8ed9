// Matched CT projector (Joseph's method) on the CPU: loops over csrc/kernels/joseph.h.
// Forward: ray-driven, OpenMP over (view, detector row), SIMD over the steps of each ray, reading
// zero-padded copies of the image laid out so that every ray steps through contiguous memory.
// Adjoint: the same rays and weights; each thread owns a slab of image rows (2D) or slices (3D)
// and writes only there (no atomics, no per-thread image copies, deterministic); SIMD over the
// steps of a ray (distinct voxels per step, so the scatter has no conflicts).
#pragma once

#include <cstdint>
#include <vector>

#include "ct/spec.h"

namespace recon {

class JosephProjector {
 public:
  // Validates the spec; throws std::invalid_argument with a message naming the bad field.
  explicit JosephProjector(CtProjectorSpec spec);

  int ndim() const { return spec_.kind == 3 ? 3 : 2; }
  int64_t image_size() const { return (int64_t)spec_.nx * spec_.ny * spec_.nz; }
  int64_t sino_size() const { return spec_.n_views * spec_.det_rows * spec_.det_cols; }
  const CtProjectorSpec& spec() const { return spec_; }

  // y (batch, sino) = A x (batch, image); x, y C-contiguous. nthreads <= 0: all OpenMP threads.
  template <typename T>
  void forward(const T* x, T* y, int64_t batch, int nthreads) const;
  // x (batch, image) = A^T y (batch, sino).
  template <typename T>
  void adjoint(const T* y, T* x, int64_t batch, int nthreads) const;

 private:
  CtProjectorSpec spec_;
  bool small_index_;  // padded volume indexable with int32
};

}  // namespace recon
