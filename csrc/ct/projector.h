// Matched CT projector (Joseph's method) on the CPU: loops over csrc/kernels/joseph.h.
// Forward: ray-driven, OpenMP over (view, detector row), SIMD over the steps of each ray, reading
// zero-padded copies of the image laid out so that every ray steps through contiguous memory.
// Adjoint: the same rays and weights; each thread owns a slab of image rows (2D) or slices (3D)
// and writes only there (no atomics, no per-thread image copies, deterministic); SIMD over the
// steps of a ray (distinct voxels per step, so the scatter has no conflicts).
#pragma once

#include <cstdint>
#include <vector>

namespace recon {

struct CtProjectorSpec {
  int kind = 0;            // joseph::Kind
  int64_t n_views = 0;
  int det_rows = 1;        // 1 for 2D geometries
  int det_cols = 0;
  int nx = 0, ny = 0, nz = 1;   // image sizes (nz = 1 in 2D)
  double vx = 1, vy = 1, vz = 1;  // voxel sizes (mm)
  int subsample = 1;       // sub-rays per bin along each detector axis
  std::vector<double> vectors;  // n_views * vec_len(kind), mm
};

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
