// The NUFFT spreading kernel: "exponential of semicircle" (ES, Barnett, Magland & af Klinteberg,
// SIAM J. Sci. Comput. 2019), psi(t) = exp(beta * (sqrt(1 - (2t/w)^2) - 1)) for |t| < w/2,
// t in oversampled-grid units, w the width in grid points.
//
// This header is the one source of the per-(sample, grid point) weight, used by the CPU spreader
// and interpolator (csrc/nufft) and the CUDA ones (cuda/): forward and adjoint read the same
// weights, so they are exact adjoints of each other.
//
// Evaluation at run time uses piecewise polynomials (one per stencil point j), fitted at plan time
// by es_fit_horner() in es_kernel_setup.h and evaluated by Horner's rule in the local variable
// z in [-1, 1); the W stencil values for one point are computed together (vectorisable over j).
#pragma once

#include "kernels/common.h"

namespace recon {

// Stencil start and local Horner variable for one sample at oversampled-grid coordinate u
// (any real value; the caller wraps the returned start index periodically).
//   start = ceil(u - w/2): first grid point the kernel touches,
//   z = 2 * (start - u + w/2) - 1, in [-1, 1): local variable of the Horner polynomials.
// The stencil covers grid points start .. start + w - 1 with weights psi(start + j - u).
template <typename R>
RECON_HOST_DEVICE RECON_INLINE long long es_stencil_start(double u, int w, R* z) {
  double s = u - 0.5 * w;
  long long start = (long long)s;          // trunc toward zero
  if ((double)start < s) start += 1;       // ceil
  *z = (R)(2.0 * ((double)start - s) - 1.0);
  return start;
}

// Direct evaluation of psi at offset t (grid units). Reference for fitting and for tests.
RECON_HOST_DEVICE inline double es_kernel_direct(double t, int w, double beta) {
  double x = 2.0 * t / w;
  double r = 1.0 - x * x;
  if (r <= 0.0) return 0.0;
#if defined(__CUDA_ARCH__)
  return exp(beta * (sqrt(r) - 1.0));
#else
  return __builtin_exp(beta * (__builtin_sqrt(r) - 1.0));
#endif
}

// Horner evaluation of all W stencil weights of one sample.
// coeffs: (degree + 1) rows of W values, highest power first: row 0 multiplies z^degree.
template <int W, typename R>
RECON_HOST_DEVICE RECON_INLINE void es_weights_horner(const R* __restrict__ coeffs, int degree, R z,
                                                      R* __restrict__ out) {
#pragma GCC unroll 16
  for (int j = 0; j < W; ++j) out[j] = coeffs[j];
  for (int d = 1; d <= degree; ++d) {
    const R* c = coeffs + d * W;
#pragma GCC ivdep
    for (int j = 0; j < W; ++j) out[j] = out[j] * z + c[j];
  }
}

}  // namespace recon
