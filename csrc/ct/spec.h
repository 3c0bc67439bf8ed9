// The CT projector geometry shared by the CPU projector (csrc/ct/projector.h) and the CUDA one
// (cuda/joseph_cuda.h): one struct, one mapping from Python-side shapes, one validation.
// Header-only plain C++ (no OpenMP, no CUDA), so both modules compile it.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/joseph.h"

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

// From the Python-side description: image_shape / voxel_size ([nz,] ny, nx), det_shape ([rows,] cols),
// `vectors` n_views rows of vec_len(kind) values. Throws std::invalid_argument on wrong entry counts
// or sizes outside [1, 2^30]; validate_ct_spec checks the rest.
inline CtProjectorSpec make_ct_spec(int kind, const double* vectors, int64_t n_views, int64_t n_values,
                                    const std::vector<int64_t>& image_shape, const std::vector<double>& voxel_size,
                                    const std::vector<int64_t>& det_shape, int subsample) {
  const size_t nd = kind == 3 ? 3 : 2;
  if (image_shape.size() != nd || voxel_size.size() != nd)
    throw std::invalid_argument("image_shape and voxel_size: expected " + std::to_string(nd) + " entries");
  if (det_shape.size() != nd - 1) throw std::invalid_argument("det_shape: expected " + std::to_string(nd - 1) + " entries");
  for (auto n : image_shape)
    if (n < 1 || n > (int64_t(1) << 30)) throw std::invalid_argument("image_shape: sizes must lie in [1, 2^30]");
  for (auto n : det_shape)
    if (n < 1 || n > (int64_t(1) << 30)) throw std::invalid_argument("det_shape: sizes must lie in [1, 2^30]");
  CtProjectorSpec s;
  s.kind = kind;
  s.n_views = n_views;
  s.nx = (int)image_shape[nd - 1];
  s.ny = (int)image_shape[nd - 2];
  s.nz = nd == 3 ? (int)image_shape[0] : 1;
  s.vx = voxel_size[nd - 1];
  s.vy = voxel_size[nd - 2];
  s.vz = nd == 3 ? voxel_size[0] : 1.0;
  s.det_cols = (int)det_shape[nd - 2];
  s.det_rows = nd == 3 ? (int)det_shape[0] : 1;
  s.subsample = subsample;
  s.vectors.assign(vectors, vectors + n_values);
  return s;
}

// Throws std::invalid_argument with a message naming the bad field.
inline void validate_ct_spec(const CtProjectorSpec& s) {
  if (s.kind < 0 || s.kind > 3) throw std::invalid_argument("kind must be 0 (parallel2d), 1 (fan flat), 2 (fan arc) or 3 (cone flat)");
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
  for (int64_t i = 0; i < s.n_views; ++i) {
    const double* v = s.vectors.data() + i * L;
    if (s.kind == joseph::PARALLEL2D && !(v[0] * v[0] + v[1] * v[1] > 0))
      throw std::invalid_argument("vectors: zero ray direction at view " + std::to_string(i));
    if (!(v[L == 6 ? 4 : 6] * v[L == 6 ? 4 : 6] + v[L == 6 ? 5 : 7] * v[L == 6 ? 5 : 7] > 0))
      throw std::invalid_argument("vectors: zero detector u vector at view " + std::to_string(i));
    if (s.kind == joseph::FAN_ARC && !((v[2] - v[0]) * (v[2] - v[0]) + (v[3] - v[1]) * (v[3] - v[1]) > 0))
      throw std::invalid_argument("vectors: arc detector centre coincides with the source at view " + std::to_string(i));
  }
  const int64_t npad = (int64_t)(s.nx + 3) * (s.ny + 3) * (nd == 3 ? s.nz + 3 : 1);
  if (npad > (int64_t(1) << 40)) throw std::invalid_argument("image_shape: image too large");
  if (s.n_views * s.det_rows * s.det_cols > (int64_t(1) << 40)) throw std::invalid_argument("det_shape: too many rays");
}

}  // namespace recon
