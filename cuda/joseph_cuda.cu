// CUDA Joseph projector (matched): forward ray-driven (one thread per detector bin, gathering
// along its sub-rays), adjoint ray-driven with atomics into the image (one thread per sub-ray):
// both run joseph_device.cuh over csrc/kernels/joseph.h, so the adjoint is the exact transpose of
// the forward (up to the order of the atomic float additions). Compiled with --fmad=false (see
// CMakeLists.txt) so that no multiply-add contraction can make the two kernels round a weight
// differently.
#include "device_util.cuh"
#include "joseph_cuda.h"
#include "joseph_device.cuh"

namespace recon {
namespace cuda {

namespace {

template <typename T, typename Idx>
__global__ void __launch_bounds__(kThreads) k_joseph_forward(JosephGeom s, const double* __restrict__ vectors,
                                                             const T* __restrict__ x, T* __restrict__ y, int64_t img,
                                                             int64_t sino) {
  const int64_t ray = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (ray >= sino) return;
  const int64_t b = blockIdx.y;
  y[b * sino + ray] = joseph_forward_ray<T, Idx>(s, vectors, x + b * img, ray);
}

template <typename T, typename Idx>
__global__ void __launch_bounds__(kThreads) k_joseph_adjoint(JosephGeom s, const double* __restrict__ vectors,
                                                             const T* __restrict__ y, T* __restrict__ x, int64_t img,
                                                             int64_t sino, int64_t nl) {
  const int64_t li = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (li >= nl) return;
  const int64_t b = blockIdx.y;
  joseph_adjoint_subray<JosephAtomicAdjoint, T, Idx>(s, vectors, y + b * sino, x + b * img, li);
}

}  // namespace

template <typename T>
struct DeviceJosephProjector<T>::Impl {
  int device = 0;
  JosephSetup setup;
  JosephGeom geom{};
  DeviceBuffer vectors;
  int64_t img = 0, sino = 0;
  bool small_index = true;
};

template <typename T>
DeviceJosephProjector<T>::DeviceJosephProjector(int device, const JosephSetup& setup, uintptr_t stream)
    : impl_(new Impl) {
  recon::validate_ct_spec(setup);
  check_device_index(device);
  DeviceGuard guard(device);
  Impl& P = *impl_;
  P.device = device;
  P.setup = setup;
  P.geom = make_joseph_geom(setup);
  P.img = (int64_t)setup.nx * setup.ny * setup.nz;
  P.sino = setup.n_views * setup.det_rows * setup.det_cols;
  P.small_index = P.img < (int64_t(1) << 31) - 1;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  P.vectors.allocate(setup.vectors.size() * sizeof(double), device);
  check_cuda(cudaMemcpyAsync(P.vectors.ptr, setup.vectors.data(), setup.vectors.size() * sizeof(double),
                             cudaMemcpyHostToDevice, st),
             "copy vectors");
  check_cuda(cudaStreamSynchronize(st), "cudaStreamSynchronize (vectors)");
}

template <typename T>
DeviceJosephProjector<T>::~DeviceJosephProjector() = default;

template <typename T>
void DeviceJosephProjector<T>::forward(uintptr_t x, uintptr_t y, int64_t batch, uintptr_t stream) const {
  const Impl& P = *impl_;
  if (batch < 0) throw std::invalid_argument("batch must be >= 0");
  if (batch == 0) return;
  DeviceGuard guard(P.device);
  check_pointer(x, P.device, sizeof(T), "x");
  check_pointer(y, P.device, sizeof(T), "y");
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const unsigned blocks = (unsigned)((P.sino + kThreads - 1) / kThreads);
  for (int64_t b0 = 0; b0 < batch; b0 += kMaxGridY) {
    const int nb = (int)(batch - b0 < kMaxGridY ? batch - b0 : kMaxGridY);
    const T* xb = reinterpret_cast<const T*>(x) + b0 * P.img;
    T* yb = reinterpret_cast<T*>(y) + b0 * P.sino;
    dim3 grid(blocks, (unsigned)nb);
    if (P.small_index)
      k_joseph_forward<T, int><<<grid, kThreads, 0, st>>>(P.geom, as<double>(P.vectors), xb, yb, P.img, P.sino);
    else
      k_joseph_forward<T, int64_t><<<grid, kThreads, 0, st>>>(P.geom, as<double>(P.vectors), xb, yb, P.img, P.sino);
    check_cuda(cudaGetLastError(), "Joseph forward launch");
  }
}

template <typename T>
void DeviceJosephProjector<T>::adjoint(uintptr_t y, uintptr_t x, int64_t batch, uintptr_t stream) const {
  const Impl& P = *impl_;
  if (batch < 0) throw std::invalid_argument("batch must be >= 0");
  if (batch == 0) return;
  DeviceGuard guard(P.device);
  check_pointer(y, P.device, sizeof(T), "y");
  check_pointer(x, P.device, sizeof(T), "x");
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  check_cuda(cudaMemsetAsync(reinterpret_cast<void*>(x), 0, (size_t)(batch * P.img) * sizeof(T), st), "zero the image");
  const int64_t nl = P.sino * joseph_nsub(P.geom);
  const unsigned blocks = (unsigned)((nl + kThreads - 1) / kThreads);
  for (int64_t b0 = 0; b0 < batch; b0 += kMaxGridY) {
    const int nb = (int)(batch - b0 < kMaxGridY ? batch - b0 : kMaxGridY);
    const T* yb = reinterpret_cast<const T*>(y) + b0 * P.sino;
    T* xb = reinterpret_cast<T*>(x) + b0 * P.img;
    dim3 grid(blocks, (unsigned)nb);
    if (P.small_index)
      k_joseph_adjoint<T, int><<<grid, kThreads, 0, st>>>(P.geom, as<double>(P.vectors), yb, xb, P.img, P.sino, nl);
    else
      k_joseph_adjoint<T, int64_t><<<grid, kThreads, 0, st>>>(P.geom, as<double>(P.vectors), yb, xb, P.img, P.sino,
                                                              nl);
    check_cuda(cudaGetLastError(), "Joseph adjoint launch");
  }
}

template <typename T>
int DeviceJosephProjector<T>::device() const { return impl_->device; }
template <typename T>
int64_t DeviceJosephProjector<T>::image_size() const { return impl_->img; }
template <typename T>
int64_t DeviceJosephProjector<T>::sino_size() const { return impl_->sino; }

template class DeviceJosephProjector<float>;
template class DeviceJosephProjector<double>;

}  // namespace cuda
}  // namespace recon
