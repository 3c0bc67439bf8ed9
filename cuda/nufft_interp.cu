// CUDA interpolation (type 2: fine grid -> samples, one thread per sorted sample) and the
// deconvolve/zero-pad (forward) and crop/deconvolve (adjoint) steps. Per-element code:
// nufft_device.cuh.
#include "dispatch.h"
#include "nufft_kernels.cuh"

namespace recon {
namespace cuda {

namespace {

template <int W, int D, typename T>
__global__ void __launch_bounds__(kThreads) k_interp(DevView<T> v, const T* __restrict__ grid, T* __restrict__ y) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* coef = reinterpret_cast<T*>(smem_raw);
  const int ncoef = (v.degree + 1) * W;
  for (int i = threadIdx.x; i < ncoef; i += blockDim.x) coef[i] = v.coef[i];
  __syncthreads();
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= v.M) return;
  const int64_t b = blockIdx.y;
  const int j = v.order[p];
  int s[3] = {0, 0, 0};
  T z[3] = {0, 0, 0};
#pragma unroll
  for (int a = 0; a < D; ++a) {
    s[a] = v.start[a][p];
    z[a] = v.z[a][p];
  }
  T re, im;
  interp_point<W, D, T>(v.g, coef, v.degree, z, s, grid + 2 * b * v.ngrid, &re, &im);
  T* yb = y + 2 * b * v.M;
  yb[2 * j] = re;
  yb[2 * j + 1] = im;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) k_pad(DevView<T> v, const T* __restrict__ x, T* __restrict__ grid,
                                                  int64_t total) {
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = idx / v.ngrid;
    const int64_t c = idx - b * v.ngrid;
    T re, im;
    pad_cell<T>(v.g, v.deconv, v.scale, x + 2 * b * v.nimage, c, &re, &im);
    grid[2 * idx] = re;
    grid[2 * idx + 1] = im;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) k_crop(DevView<T> v, const T* __restrict__ grid, T* __restrict__ x,
                                                   int64_t total) {
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = idx / v.nimage;
    const int64_t e = idx - b * v.nimage;
    T re, im;
    crop_elem<T>(v.g, v.deconv, v.scale, grid + 2 * b * v.ngrid, e, &re, &im);
    x[2 * idx] = re;
    x[2 * idx + 1] = im;
  }
}

template <int W, int D, typename T>
struct Interp {
  static void run(const DevView<T>& v, const T* grid, T* y, int64_t batch, cudaStream_t st) {
    if (v.M == 0) return;
    const size_t smem = (size_t)v.ncoef_padded * sizeof(T);
    const unsigned blocks = (unsigned)((v.M + kThreads - 1) / kThreads);
    for (int64_t b0 = 0; b0 < batch; b0 += kMaxGridY) {
      const int nb = (int)(batch - b0 < kMaxGridY ? batch - b0 : kMaxGridY);
      dim3 grid_dim(blocks, (unsigned)nb);
      k_interp<W, D, T><<<grid_dim, kThreads, smem, st>>>(v, grid + 2 * b0 * v.ngrid, y + 2 * b0 * v.M);
      check_cuda(cudaGetLastError(), "interpolate launch");
    }
  }
};

unsigned elementwise_blocks(int64_t total) {
  const int64_t b = (total + kThreads - 1) / kThreads;
  return (unsigned)(b < (int64_t(1) << 20) ? (b > 0 ? b : 1) : (int64_t(1) << 20));  // grid-stride beyond
}

}  // namespace

template <typename T>
void launch_interp(const DevView<T>& v, const T* grid, T* y, int64_t batch, cudaStream_t st) {
  if (batch <= 0) return;
  dispatch_width_dim<Interp, T>(v.g.width, v.g.dim, v, grid, y, batch, st);
}

template <typename T>
void launch_pad(const DevView<T>& v, const T* x, T* grid, int64_t batch, cudaStream_t st) {
  const int64_t total = batch * v.ngrid;
  if (total <= 0) return;
  k_pad<T><<<elementwise_blocks(total), kThreads, 0, st>>>(v, x, grid, total);
  check_cuda(cudaGetLastError(), "pad launch");
}

template <typename T>
void launch_crop(const DevView<T>& v, const T* grid, T* x, int64_t batch, cudaStream_t st) {
  const int64_t total = batch * v.nimage;
  if (total <= 0) return;
  k_crop<T><<<elementwise_blocks(total), kThreads, 0, st>>>(v, grid, x, total);
  check_cuda(cudaGetLastError(), "crop launch");
}

template void launch_interp<float>(const DevView<float>&, const float*, float*, int64_t, cudaStream_t);
template void launch_interp<double>(const DevView<double>&, const double*, double*, int64_t, cudaStream_t);
template void launch_pad<float>(const DevView<float>&, const float*, float*, int64_t, cudaStream_t);
template void launch_pad<double>(const DevView<double>&, const double*, double*, int64_t, cudaStream_t);
template void launch_crop<float>(const DevView<float>&, const float*, float*, int64_t, cudaStream_t);
template void launch_crop<double>(const DevView<double>&, const double*, double*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace recon
