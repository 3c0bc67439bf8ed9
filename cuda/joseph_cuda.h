// Host-side interface of the CUDA Joseph projector (plain C++, no CUDA headers).
// Same geometry description as the CPU projector (csrc/ct/projector.h: CtProjectorSpec fields).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace recon {
namespace cuda {

struct JosephSetup {
  int kind = 0;               // 0 parallel2d, 1 fan flat, 2 fan arc, 3 cone flat (joseph::Kind)
  int64_t n_views = 0;
  int det_rows = 1, det_cols = 0;
  int nx = 0, ny = 0, nz = 1;
  double vx = 1, vy = 1, vz = 1;
  int subsample = 1;
  std::vector<double> vectors;  // n_views * (6 or 12)
};

void validate_joseph(const JosephSetup& s);  // std::invalid_argument naming the bad field

template <typename T>
class DeviceJosephProjector {
 public:
  DeviceJosephProjector(int device, const JosephSetup& setup, uintptr_t stream);
  ~DeviceJosephProjector();
  DeviceJosephProjector(const DeviceJosephProjector&) = delete;
  DeviceJosephProjector& operator=(const DeviceJosephProjector&) = delete;
  // Asynchronous on `stream`. forward: y (batch, sino) = A x (batch, image);
  // adjoint: x (batch, image) = A^T y (batch, sino) (zeroes x first; atomics).
  void forward(uintptr_t x, uintptr_t y, int64_t batch, uintptr_t stream) const;
  void adjoint(uintptr_t y, uintptr_t x, int64_t batch, uintptr_t stream) const;
  int device() const;
  int64_t image_size() const;
  int64_t sino_size() const;
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

template <typename T>
class HostJosephProjector {
 public:
  explicit HostJosephProjector(const JosephSetup& setup);
  void forward(const T* x, T* y, int64_t batch) const;
  void adjoint(const T* y, T* x, int64_t batch) const;
  int64_t image_size() const;
  int64_t sino_size() const;

 private:
  JosephSetup s_;
};

}  // namespace cuda
}  // namespace recon
