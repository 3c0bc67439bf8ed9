// Plan-time (host-only) set-up of the ES spreading kernel: parameters from the tolerance,
// Horner coefficients, and the kernel's Fourier transform for the deconvolution step.
// Used by the CPU plan and handed, as plain arrays, to the CUDA module.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/es_kernel.h"

namespace recon {

constexpr int kMinWidth = 2;
constexpr int kMaxWidth = 16;
constexpr int kMaxDegree = 22;

struct EsKernel {
  int width = 0;         // grid points per dimension touched by one sample
  double beta = 0.0;     // shape parameter
  double upsampfac = 2;  // oversampling factor sigma of the fine grid
  int degree = 0;        // Horner polynomial degree
  std::vector<double> horner;  // (degree + 1) x width, highest power first
};

// A double as printf's %g (std::to_string prints 1e-6 as "0.000001" and 1e-9 as "0.000000").
inline std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Shape parameter beta for width w at oversampling sigma (Barnett et al. 2019, Sec. 3-4):
// sigma = 2: beta = c(w) * w with c = 2.20, 2.26, 2.38, 2.30 for w = 2, 3, 4, >= 5;
// otherwise beta = 0.97 * pi * w * (1 - 1/(2 sigma)).
inline double es_beta(int w, double sigma) {
  if (std::fabs(sigma - 2.0) < 1e-12) return (w == 2 ? 2.20 : w == 3 ? 2.26 : w == 4 ? 2.38 : 2.30) * w;
  return 0.97 * M_PI * w * (1.0 - 0.5 / sigma);
}

inline double es_aliasing_error(int w, double beta, double sigma);  // below

// Kernel for a relative tolerance `tol` at oversampling `sigma`: the narrowest width whose
// estimated aliasing error (es_aliasing_error) is <= tol, plus `width_margin`.
inline EsKernel es_choose(double tol, double sigma, int width_margin = 0) {
  if (!(tol > 0.0) || !(tol < 1.0)) throw std::invalid_argument("tol must lie in (0, 1), got " + fmt_g(tol));
  if (!(sigma >= 1.2) || !(sigma <= 3.0))
    throw std::invalid_argument("upsampfac must lie in [1.2, 3], got " + fmt_g(sigma));
  int w = 0;
  static std::mutex cache_mutex;
  static std::map<std::pair<int, double>, double> cache;  // (w, sigma) -> estimated error
  auto estimate = [&](int cand) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto key = std::make_pair(cand, sigma);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    return cache[key] = es_aliasing_error(cand, es_beta(cand, sigma), sigma);
  };
  for (int cand = kMinWidth; cand <= kMaxWidth; ++cand)
    if (estimate(cand) <= tol) {
      w = cand;
      break;
    }
  // The estimate bottoms out near 1e-12 (quadrature rounding); beyond, one digit per point of width.
  if (w == 0 && std::fabs(sigma - 2.0) < 1e-12 && tol >= 1e-15) w = (int)std::ceil(std::log10(1.0 / tol)) + 2;
  w += width_margin;
  if (w == 0 || w > kMaxWidth)
    throw std::invalid_argument("tolerance " + fmt_g(tol) + " at upsampfac " + fmt_g(sigma) +
                                " needs a kernel wider than " + std::to_string(kMaxWidth) +
                                " points; use upsampfac=2 or a larger tol");
  EsKernel k;
  k.upsampfac = sigma;
  k.width = w;
  k.beta = es_beta(w, sigma);
  return k;
}

// Solve the small dense system A c = b (n x n, row-major) by Gaussian elimination with partial
// pivoting in long double (the monomial basis on Chebyshev nodes is mildly ill-conditioned).
inline std::vector<long double> solve_dense(std::vector<long double> A, std::vector<long double> b, int n) {
  for (int col = 0; col < n; ++col) {
    int piv = col;
    for (int r = col + 1; r < n; ++r)
      if (std::fabs((double)A[r * n + col]) > std::fabs((double)A[piv * n + col])) piv = r;
    if (piv != col) {
      for (int c = 0; c < n; ++c) std::swap(A[col * n + c], A[piv * n + c]);
      std::swap(b[col], b[piv]);
    }
    for (int r = col + 1; r < n; ++r) {
      long double f = A[r * n + col] / A[col * n + col];
      for (int c = col; c < n; ++c) A[r * n + c] -= f * A[col * n + c];
      b[r] -= f * b[col];
    }
  }
  std::vector<long double> x(n);
  for (int r = n - 1; r >= 0; --r) {
    long double s = b[r];
    for (int c = r + 1; c < n; ++c) s -= A[r * n + c] * x[c];
    x[r] = s / A[r * n + r];
  }
  return x;
}

// Fit psi(start + j - u), j = 0..w-1, as polynomials in z (see es_stencil_start): for the stencil
// point j, t = j - w/2 + (z + 1)/2. The degree grows until the largest error on a fine grid of z
// is below `fit_tol` (or kMaxDegree is reached).
inline void es_fit_horner(EsKernel& k, double fit_tol) {
  const int w = k.width;
  auto psi_at = [&](int j, double z) { return es_kernel_direct(j - 0.5 * w + 0.5 * (z + 1.0), w, k.beta); };
  for (int deg = std::max(2, w - 3);; ++deg) {
    const int n = deg + 1;
    std::vector<long double> V(n * n);
    std::vector<double> nodes(n);
    for (int i = 0; i < n; ++i) nodes[i] = std::cos(M_PI * (i + 0.5) / n);  // Chebyshev nodes
    for (int i = 0; i < n; ++i) {
      long double p = 1.0L;
      for (int c = n - 1; c >= 0; --c) {  // column c holds z^(n-1-c): highest power first
        V[i * n + c] = p;
        p *= nodes[i];
      }
    }
    std::vector<double> coeffs(n * w);
    for (int j = 0; j < w; ++j) {
      std::vector<long double> b(n);
      for (int i = 0; i < n; ++i) b[i] = psi_at(j, nodes[i]);
      std::vector<long double> c = solve_dense(V, b, n);
      for (int d = 0; d < n; ++d) coeffs[d * w + j] = (double)c[d];
    }
    double max_err = 0.0;
    for (int s = 0; s <= 400; ++s) {
      double z = -1.0 + 2.0 * s / 400.0;
      for (int j = 0; j < w; ++j) {
        double v = 0.0;
        for (int d = 0; d < n; ++d) v = v * z + coeffs[d * w + j];
        max_err = std::max(max_err, std::fabs(v - psi_at(j, z)));
      }
    }
    if (max_err <= fit_tol || deg >= std::min(w + 4, kMaxDegree)) {
      k.degree = deg;
      k.horner = std::move(coeffs);
      return;
    }
  }
}

// Gauss-Legendre nodes and weights on [-1, 1] (Newton iteration on P_n).
inline void gauss_legendre(int n, std::vector<double>& x, std::vector<double>& wts) {
  // Nodes and weights are cached per n (plans ask for the same few orders over and over).
  static std::mutex cache_mutex;
  static std::map<int, std::pair<std::vector<double>, std::vector<double>>> cache;
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto it = cache.find(n);
  if (it == cache.end()) {
    std::vector<double> cx(n, 0.0), cw(n, 0.0);
    for (int i = 0; i < n; ++i) {
      double z = std::cos(M_PI * (i + 0.75) / (n + 0.5));
      double dp = 1.0;
      for (int iter = 0; iter < 100; ++iter) {
        double p0 = 1.0, p1 = z;
        for (int k = 2; k <= n; ++k) {
          double p2 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        dp = n * (z * p1 - p0) / (z * z - 1.0);
        double dz = p1 / dp;
        z -= dz;
        if (std::fabs(dz) < 1e-16) break;
      }
      cx[i] = z;
      cw[i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    it = cache.emplace(n, std::make_pair(std::move(cx), std::move(cw))).first;
  }
  x = it->second.first;
  wts = it->second.second;
}

// Quadrature for psihat(xi) = integral of psi(t) cos(2 pi xi t) dt: Gauss-Legendre on [0, w/2]
// (psi is even), nodes t_j and weights f_j = 2 * (node weight) * psi(t_j), so that
// psihat(xi) = sum_j f_j cos(2 pi xi t_j). Shared by es_fourier and es_deconvolution.
inline void es_quadrature(int w, double beta, std::vector<double>& t, std::vector<double>& f) {
  const int q = 200 + 8 * w;
  std::vector<double> gx, gw;
  gauss_legendre(q, gx, gw);
  const double half = 0.5 * w;
  t.resize(q);
  f.resize(q);
  for (int j = 0; j < q; ++j) {
    t[j] = half * 0.5 * (gx[j] + 1.0);
    f[j] = 2.0 * half * 0.5 * gw[j] * es_kernel_direct(t[j], w, beta);
  }
}

// Deconvolution factors along one axis of image size N on a fine grid of size n:
// out[i] = 1 / psihat(x_i / n), x_i = i - floor(N/2) the centred position of image index i,
// psihat(xi) = integral of psi(t) cos(2 pi xi t) dt over |t| < w/2.
inline std::vector<double> es_deconvolution(const EsKernel& k, long long N, long long n) {
  // psihat is even and xi_i = (i - N/2) / n, so only xi = m / n for m = 0..max(N/2, N-1-N/2) are
  // needed. Quadrature of es_quadrature; cos(2 pi m t / n) by rotation across m for all nodes at
  // once (vectorised over the nodes), re-anchored with exact cos/sin every 32 steps.
  const long long c = N / 2, K = std::max(c, N - 1 - c);
  std::vector<double> t, f;
  es_quadrature(k.width, k.beta, t, f);
  const int q = (int)t.size();
  std::vector<double> cr(q), sr(q), cm(q), sm(q);
  for (int j = 0; j < q; ++j) {
    cr[j] = std::cos(2.0 * M_PI * t[j] / double(n));
    sr[j] = std::sin(2.0 * M_PI * t[j] / double(n));
  }
  std::vector<double> psihat(K + 1);
  for (long long m = 0; m <= K; ++m) {
    if (m % 32 == 0) {
      for (int j = 0; j < q; ++j) {
        const double a = 2.0 * M_PI * t[j] * double(m) / double(n);
        cm[j] = std::cos(a);
        sm[j] = std::sin(a);
      }
    }
    double acc = 0.0;
    for (int j = 0; j < q; ++j) acc += f[j] * cm[j];
    psihat[m] = acc;
    for (int j = 0; j < q; ++j) {
      const double c2 = cm[j] * cr[j] - sm[j] * sr[j];
      sm[j] = sm[j] * cr[j] + cm[j] * sr[j];
      cm[j] = c2;
    }
  }
  std::vector<double> out(N);
  for (long long i = 0; i < N; ++i) out[i] = 1.0 / psihat[std::llabs(i - c)];
  return out;
}

// Fourier transform of psi, psihat(xi) = integral of psi(t) cos(2 pi xi t) dt, at several xi,
// by Gauss-Legendre quadrature on [0, w/2] (psi is even).
inline std::vector<double> es_fourier(int w, double beta, const std::vector<double>& xi) {
  std::vector<double> t, f;
  es_quadrature(w, beta, t, f);
  std::vector<double> out(xi.size(), 0.0);
  for (size_t j = 0; j < t.size(); ++j)
    for (size_t i = 0; i < xi.size(); ++i) out[i] += f[j] * std::cos(2.0 * M_PI * xi[i] * t[j]);
  return out;
}

// Estimated worst-case relative error of a NUFFT with this kernel: the aliased energy
// sum_{m != 0} |psihat(xi + m)| / psihat(xi), maximised over the image band |xi| <= 1/(2 sigma).
inline double es_aliasing_error(int w, double beta, double sigma) {
  const int nx = 24;
  std::vector<double> xi;
  for (int i = 0; i <= nx; ++i) {
    const double x = 0.5 / sigma * i / nx;
    xi.push_back(x);
    for (int m = 1; m <= 3; ++m) {
      xi.push_back(x + m);
      xi.push_back(x - m);
    }
  }
  const std::vector<double> ph = es_fourier(w, beta, xi);
  double worst = 0.0;
  for (int i = 0; i <= nx; ++i) {
    double alias = 0.0;
    for (int m = 1; m <= 6; ++m) alias += std::fabs(ph[i * 7 + m]);
    worst = std::max(worst, alias / ph[i * 7]);
  }
  return worst;
}

}  // namespace recon
