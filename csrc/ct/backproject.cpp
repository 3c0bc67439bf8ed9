// Loop drivers (OpenMP over voxel rows) for the analytic CT backprojector; the per-voxel maths is in
// csrc/kernels/ct_backproject.h. Each thread owns whole output rows: no atomics, deterministic sums.
#include "ct/backproject.h"

#include <omp.h>

#include <vector>

#include "kernels/ct_backproject.h"

namespace recon {

template <typename T>
void ct_backproject_projective(const T* q, int64_t nproj, int64_t nv, int64_t nu, const double* P,
                               const double* weights, const int64_t* vol_shape, const double* origin,
                               const double* step, T* out, int nthreads) {
  const int64_t nz = vol_shape[0], ny = vol_shape[1], nx = vol_shape[2];
  const int64_t nrows = nz * ny;
  const int64_t plane = nv * nu;
  if (nthreads <= 0) nthreads = omp_get_max_threads();
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<double> acc(nx);
#pragma omp for schedule(dynamic, 4)
    for (int64_t row = 0; row < nrows; ++row) {
      const int64_t iz = row / ny, iy = row % ny;
      const double z = origin[0] + iz * step[0];
      const double y = origin[1] + iy * step[1];
      for (int64_t ix = 0; ix < nx; ++ix) acc[ix] = 0.0;
      for (int64_t p = 0; p < nproj; ++p) {
        const double* Pp = P + 12 * p;
        const double wp = weights[p];
        if (wp == 0.0) continue;
        const T* qp = q + p * plane;
        for (int64_t ix = 0; ix < nx; ++ix) {
          const double x = origin[2] + ix * step[2];
          double a, b, w;
          if (!ct_project(Pp, x, y, z, &a, &b, &w)) continue;
          const double v = nv == 1 ? (double)ct_interp1(qp, (int)nu, a)
                                   : (double)ct_interp2(qp, (int)nv, (int)nu, b, a);
          acc[ix] += wp * v / (w * w);
        }
      }
      T* o = out + row * nx;
      for (int64_t ix = 0; ix < nx; ++ix) o[ix] += (T)acc[ix];
    }
  }
}

template <typename T>
void ct_backproject_arc2d(const T* q, int64_t nproj, int64_t nu, const double* src, const double* frame,
                          double dgamma, double centre, const double* weights, const int64_t* vol_shape,
                          const double* origin, const double* step, T* out, int nthreads) {
  const int64_t ny = vol_shape[0], nx = vol_shape[1];
  if (nthreads <= 0) nthreads = omp_get_max_threads();
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<double> acc(nx);
#pragma omp for schedule(dynamic, 4)
    for (int64_t iy = 0; iy < ny; ++iy) {
      const double y = origin[0] + iy * step[0];
      for (int64_t ix = 0; ix < nx; ++ix) acc[ix] = 0.0;
      for (int64_t p = 0; p < nproj; ++p) {
        const double wp = weights[p];
        if (wp == 0.0) continue;
        const T* qp = q + p * nu;
        for (int64_t ix = 0; ix < nx; ++ix) {
          const double x = origin[1] + ix * step[1];
          double a, inv_l2;
          if (!ct_arc_project(src + 2 * p, frame + 4 * p, dgamma, centre, x, y, &a, &inv_l2)) continue;
          acc[ix] += wp * inv_l2 * (double)ct_interp1(qp, (int)nu, a);
        }
      }
      T* o = out + iy * nx;
      for (int64_t ix = 0; ix < nx; ++ix) o[ix] += (T)acc[ix];
    }
  }
}

template void ct_backproject_projective<float>(const float*, int64_t, int64_t, int64_t, const double*,
                                               const double*, const int64_t*, const double*, const double*,
                                               float*, int);
template void ct_backproject_projective<double>(const double*, int64_t, int64_t, int64_t, const double*,
                                                const double*, const int64_t*, const double*, const double*,
                                                double*, int);
template void ct_backproject_arc2d<float>(const float*, int64_t, int64_t, const double*, const double*, double,
                                          double, const double*, const int64_t*, const double*, const double*,
                                          float*, int);
template void ct_backproject_arc2d<double>(const double*, int64_t, int64_t, const double*, const double*, double,
                                           double, const double*, const int64_t*, const double*, const double*,
                                           double*, int);

}  // namespace recon
