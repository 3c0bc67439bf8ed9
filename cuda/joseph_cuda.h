// Host-side interface of the CUDA Joseph projector (plain C++, no CUDA headers).
// Same geometry description as the CPU projector (csrc/ct/projector.h: CtProjectorSpec fields).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ct/spec.h"

namespace recon {
namespace cuda {

// The geometry, its mapping from Python shapes and its validation are the CPU projector's
// (csrc/ct/spec.h: make_ct_spec, validate_ct_spec).
using JosephSetup = CtProjectorSpec;

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
