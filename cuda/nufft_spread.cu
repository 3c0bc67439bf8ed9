// CUDA spreading (type 1, samples -> fine grid).
//
// "sm": one block per sub-problem (at most maxsub sorted samples of one bin). The block zeroes the
// padded tile of its bin in shared memory, every thread adds the W^D stencils of its samples into
// the tile with shared-memory atomics, and the block then adds the non-zero tile cells into the
// global fine grid with global atomics (periodic wrap). "gm": one thread per sorted sample, global
// atomics straight into the fine grid (for tiles too large for shared memory).
// The per-element code is nufft_device.cuh (also run by the host emulation).
#include "dispatch.h"
#include "nufft_kernels.cuh"

namespace recon {
namespace cuda {

namespace {

template <int W, int D, typename T>
__global__ void __launch_bounds__(kThreads) k_spread_sm(DevView<T> v, const T* __restrict__ y, T* __restrict__ grid) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* coef = reinterpret_cast<T*>(smem_raw);
  T* tile = coef + v.ncoef_padded;
  const int sub = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int bin = v.sub_bin[sub];
  const TileBox box = tile_box(v.g, bin);
  const int cells = tile_cells(box);
  const int ncoef = (v.degree + 1) * W;
  for (int i = threadIdx.x; i < ncoef; i += blockDim.x) coef[i] = v.coef[i];
  for (int i = threadIdx.x; i < 2 * cells; i += blockDim.x) tile[i] = T(0);
  __syncthreads();

  const int p0 = v.sub_start[sub];
  const int64_t bin_end = v.bin_offset[bin + 1];
  const int p1 = (int)((int64_t)p0 + v.maxsub < bin_end ? (int64_t)p0 + v.maxsub : bin_end);
  const T* yb = y + 2 * b * v.M;
  for (int p = p0 + (int)threadIdx.x; p < p1; p += blockDim.x) {
    const int j = v.order[p];
    int s[3] = {0, 0, 0};
    T z[3] = {0, 0, 0};
#pragma unroll
    for (int a = 0; a < D; ++a) {
      s[a] = v.start[a][p];
      z[a] = v.z[a][p];
    }
    spread_point_to_tile<W, D, T, AtomicAdd>(coef, v.degree, z, s, box, yb[2 * j], yb[2 * j + 1], tile);
  }
  __syncthreads();

  T* gb = grid + 2 * b * v.ngrid;
  for (int c = threadIdx.x; c < cells; c += blockDim.x) {
    const T re = tile[2 * c], im = tile[2 * c + 1];
    if (re != T(0) || im != T(0)) {
      const int64_t gi = tile_cell_to_grid(v.g, box, c);
      atomicAdd(gb + 2 * gi, re);
      atomicAdd(gb + 2 * gi + 1, im);
    }
  }
}

template <int W, int D, typename T>
__global__ void __launch_bounds__(kThreads) k_spread_gm(DevView<T> v, const T* __restrict__ y, T* __restrict__ grid) {
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
  const T* yb = y + 2 * b * v.M;
  spread_point_to_grid<W, D, T, AtomicAdd>(v.g, coef, v.degree, z, s, yb[2 * j], yb[2 * j + 1],
                                           grid + 2 * b * v.ngrid);
}

template <int W, int D, typename T>
struct SpreadSm {
  static void run(const DevView<T>& v, const T* y, T* grid, int64_t batch, cudaStream_t st) {
    if (v.nsub == 0) return;
    const size_t smem = (size_t)v.tile_bytes;
    if (smem > (size_t)kSmemDefault)
      check_cuda(cudaFuncSetAttribute(k_spread_sm<W, D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                 "cudaFuncSetAttribute(spread)");
    for (int64_t b0 = 0; b0 < batch; b0 += kMaxGridY) {
      const int nb = (int)(batch - b0 < kMaxGridY ? batch - b0 : kMaxGridY);
      dim3 grid_dim((unsigned)v.nsub, (unsigned)nb);
      k_spread_sm<W, D, T><<<grid_dim, kThreads, smem, st>>>(v, y + 2 * b0 * v.M, grid + 2 * b0 * v.ngrid);
      check_cuda(cudaGetLastError(), "spread (shared-memory) launch");
    }
  }
};

template <int W, int D, typename T>
struct SpreadGm {
  static void run(const DevView<T>& v, const T* y, T* grid, int64_t batch, cudaStream_t st) {
    if (v.M == 0) return;
    const size_t smem = (size_t)v.ncoef_padded * sizeof(T);
    const unsigned blocks = (unsigned)((v.M + kThreads - 1) / kThreads);
    for (int64_t b0 = 0; b0 < batch; b0 += kMaxGridY) {
      const int nb = (int)(batch - b0 < kMaxGridY ? batch - b0 : kMaxGridY);
      dim3 grid_dim(blocks, (unsigned)nb);
      k_spread_gm<W, D, T><<<grid_dim, kThreads, smem, st>>>(v, y + 2 * b0 * v.M, grid + 2 * b0 * v.ngrid);
      check_cuda(cudaGetLastError(), "spread (global-memory) launch");
    }
  }
};

}  // namespace

template <typename T>
void launch_spread(const DevView<T>& v, bool shared_memory, const T* y, T* grid, int64_t batch, cudaStream_t st) {
  if (batch <= 0) return;
  if (shared_memory)
    dispatch_width_dim<SpreadSm, T>(v.g.width, v.g.dim, v, y, grid, batch, st);
  else
    dispatch_width_dim<SpreadGm, T>(v.g.width, v.g.dim, v, y, grid, batch, st);
}

template void launch_spread<float>(const DevView<float>&, bool, const float*, float*, int64_t, cudaStream_t);
template void launch_spread<double>(const DevView<double>&, bool, const double*, double*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace recon
