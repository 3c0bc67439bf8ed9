// The only file that knows pybind11: module recon._core.
// Every entry point re-checks dtype, shape and contiguity of its buffers (Python checks first and
// gives the friendlier message); a bad call raises ValueError/TypeError, never crashes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "kernels/es_kernel_setup.h"
#include "nufft/nufft.h"
#include "ct/backproject.h"  // CT analytic reconstruction
#include "ct/projector.h"    // CT projectors

namespace py = pybind11;
using namespace recon;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += std::to_string(a.shape(i)) + (i + 1 < a.ndim() ? ", " : "");
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Most OpenMP threads a kernel may use: kThreadsPerCore per core. More only oversubscribes the cores,
// and libgomp aborts (about 6e4 threads) or crashes (about 2e5) when asked for far more.
constexpr int kThreadsPerCore = 4;
int max_threads() {
  static const int cap =  // counted once: hardware_concurrency reads /sys on every call
      kThreadsPerCore * std::max<int>({1, omp_get_num_procs(), (int)std::thread::hardware_concurrency()});
  return cap;
}

// A thread count from Python: 0 means OpenMP's default (capped); negative or above max_threads()
// raises ValueError (taken as int64 so that 2**31 gets this message, not pybind's TypeError).
int checked_threads(int64_t nthreads, const char* what) {
  const int cap = max_threads();
  if (nthreads == 0) return std::min(omp_get_max_threads(), cap);
  if (nthreads < 0 || nthreads > cap)
    throw py::value_error(std::string(what) + ": nthreads must lie in [1, " + std::to_string(cap) + "] (" +
                          std::to_string(kThreadsPerCore) + " per core) or be 0 for the default, got " +
                          std::to_string(nthreads));
  return (int)nthreads;
}

// A memory limit in bytes from Python: finite and >= 0 (0: none).
double checked_max_memory(double v) {
  if (!(v >= 0) || !std::isfinite(v)) throw py::value_error("max_memory must be a finite number of bytes >= 0 (0: no limit)");
  return v;
}

// Largest |element| of a contiguous real array (complex arrays as their real view: the largest |real|
// or |imaginary| part), NaN when an element is NaN or Inf, 0 when empty. One threaded pass without
// temporaries (numpy's isfinite on complex is ~6x slower and allocates): the finiteness check and
// the magnitude the NUFFT rescales by come from the same pass.
// Arrays below kMaxAbsParallel elements are scanned by the calling thread alone (~20 us at the
// threshold): waking a team costs more, and on a loaded machine a spinning team made a 30k-element
// check take milliseconds. (The serial path has its own `omp simd` loop: an `if` clause on the
// parallel loop compiles its false branch without vectorization, 10x slower.)
constexpr int64_t kMaxAbsParallel = int64_t(1) << 18;

template <typename T>
double max_abs_span(const T* p, int64_t n, int nthreads) {
  T m = 0;
  int bad = 0;
  if (n < kMaxAbsParallel || nthreads == 1) {
#pragma omp simd reduction(max : m) reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) {
      const T a = std::fabs(p[i]);
      bad |= !(a <= std::numeric_limits<T>::max());  // NaN and Inf
      m = a > m ? a : m;
    }
  } else {
#pragma omp parallel for simd num_threads(nthreads) schedule(static) reduction(max : m) reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) {
      const T a = std::fabs(p[i]);
      bad |= !(a <= std::numeric_limits<T>::max());  // NaN and Inf
      m = a > m ? a : m;
    }
  }
  return bad ? std::numeric_limits<double>::quiet_NaN() : (double)m;
}

// max_abs_span over a C-contiguous float32/64 or complex64/128 array (`what` names the caller).
double max_abs_of(const py::array& a, int nthreads, const char* what) {
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(what) + ": expected a C-contiguous array");
  const char kind = a.dtype().kind();
  const auto item = a.dtype().itemsize();
  const int64_t n = (int64_t)a.size() * (kind == 'c' ? 2 : 1);
  const bool single = (kind == 'f' && item == 4) || (kind == 'c' && item == 8);
  const bool dbl = (kind == 'f' && item == 8) || (kind == 'c' && item == 16);
  if (!single && !dbl)
    throw py::type_error(std::string(what) + ": expected float32/float64/complex64/complex128, got " +
                         std::string(py::str(a.dtype())));
  py::gil_scoped_release release;  // nothing below touches Python objects
  return single ? max_abs_span(static_cast<const float*>(a.data()), n, nthreads)
                : max_abs_span(static_cast<const double*>(a.data()), n, nthreads);
}

// Checks that `a` has dtype T, is C-contiguous (and writeable if asked) and returns its data pointer.
template <typename T>
T* checked_buffer(const py::array& a, const char* name, bool writeable) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// A projection of finite data overflows only when the true line integrals exceed the dtype's range
// (float32: ~3.4e38): say so instead of returning Inf. One pass over the output, small next to the
// projection itself.
void require_finite_result(const py::array& out, int nthreads, const char* what) {
  if (std::isnan(max_abs_of(out, nthreads, what)))
    throw py::value_error(std::string(what) + ": the result holds Inf or NaN: the input holds NaN/Inf, or the "
                          "result exceeds the range of " + std::string(py::str(out.dtype())) +
                          " (use float64 or scale the data)");
}

template <typename T>
void bind_nufft_plan(py::module_& m, const char* name) {
  using Plan = NufftPlan<T>;
  using C = std::complex<T>;
  py::class_<Plan>(m, name, "NUFFT plan over one trajectory (see recon.ops.Nufft for the convention).")
      .def(py::init([](const py::array& coord, const std::vector<int64_t>& image_shape, double tol, double upsampfac,
                       int64_t nthreads, int width_margin, double max_memory) {
             const double* c = checked_buffer<double>(coord, "coord", false);
             if (coord.ndim() != 2) throw py::value_error("coord: expected shape (M, d), got " + shape_str(coord));
             const int d = (int)coord.shape(1);
             if ((int)image_shape.size() != d)
               throw py::value_error("coord has d=" + std::to_string(d) + " but image_shape has " +
                                     std::to_string(image_shape.size()) + " entries");
             NufftOptions o;
             o.tol = tol;
             o.upsampfac = upsampfac;
             o.nthreads = checked_threads(nthreads, "NufftPlan");
             o.width_margin = width_margin;
             o.max_bytes = checked_max_memory(max_memory);
             py::gil_scoped_release release;
             return new Plan(c, coord.shape(0), d, image_shape.data(), o);
           }),
           py::arg("coord"), py::arg("image_shape"), py::arg("tol"), py::arg("upsampfac") = 2.0,
           py::arg("nthreads") = 0, py::arg("width_margin") = 0, py::arg("max_memory") = 0.0,
           "max_memory: refuse (ValueError) a plan whose estimated memory (memory_estimate) exceeds this "
           "many bytes, before allocating; 0: no limit.")
      .def(
          "set_points",
          [](Plan& p, const py::array& coord) {
            const double* c = checked_buffer<double>(coord, "coord", false);
            if (coord.ndim() != 2 || coord.shape(1) != p.dim())
              throw py::value_error("coord: expected shape (M, " + std::to_string(p.dim()) + "), got " + shape_str(coord));
            py::gil_scoped_release release;
            p.set_points(c, coord.shape(0));
          },
          py::arg("coord"),
          "Re-plan for a new trajectory (M, d) of any M: the kernel, deconvolution and buffers are kept.")
      .def(
          "forward",
          [](Plan& p, const py::array& x, py::array& y) {
            const C* xp = checked_buffer<C>(x, "x", false);
            C* yp = checked_buffer<C>(y, "out", true);
            const auto ishape = p.image_shape();
            int64_t img = 1;
            for (auto v : ishape) img *= v;
            if (x.size() % img != 0 || img == 0)
              throw py::value_error("x: size " + std::to_string(x.size()) + " is not a multiple of the image size");
            const int64_t batch = x.size() / img;
            if (y.size() != batch * p.num_points())
              throw py::value_error("out: expected " + std::to_string(batch * p.num_points()) + " elements");
            py::gil_scoped_release release;
            p.forward(xp, yp, batch);
          },
          py::arg("x"), py::arg("out"), "Type 2 (image -> samples) into `out` (batch, M).")
      .def(
          "adjoint",
          [](Plan& p, const py::array& y, py::array& x) {
            const C* yp = checked_buffer<C>(y, "y", false);
            C* xp = checked_buffer<C>(x, "out", true);
            const auto ishape = p.image_shape();
            int64_t img = 1;
            for (auto v : ishape) img *= v;
            if (p.num_points() == 0 ? false : y.size() % p.num_points() != 0)
              throw py::value_error("y: size is not a multiple of the number of samples");
            const int64_t batch = p.num_points() == 0 ? x.size() / img : y.size() / p.num_points();
            if (x.size() != batch * img) throw py::value_error("out: expected " + std::to_string(batch * img) + " elements");
            py::gil_scoped_release release;
            p.adjoint(yp, xp, batch);
          },
          py::arg("y"), py::arg("out"), "Type 1 (samples -> image) into `out` (batch, *N).")
      .def(
          "spread_to_grid",
          [](Plan& p, const py::array& y, py::array& grid) {
            const C* yp = checked_buffer<C>(y, "y", false);
            C* gp = checked_buffer<C>(grid, "out", true);
            int64_t ng = 1;
            for (auto v : p.grid_shape()) ng *= v;
            if (y.size() != p.num_points()) throw py::value_error("y: expected " + std::to_string(p.num_points()) + " samples");
            if (grid.size() != ng) throw py::value_error("out: expected the fine-grid size " + std::to_string(ng));
            py::gil_scoped_release release;
            p.spread_to_grid(yp, gp);
          },
          py::arg("y"), py::arg("out"), "Spread samples onto the fine grid (no FFT, no deconvolution).")
      .def(
          "interpolate_from_grid",
          [](Plan& p, const py::array& grid, py::array& y) {
            const C* gp = checked_buffer<C>(grid, "grid", false);
            C* yp = checked_buffer<C>(y, "out", true);
            int64_t ng = 1;
            for (auto v : p.grid_shape()) ng *= v;
            if (y.size() != p.num_points()) throw py::value_error("out: expected " + std::to_string(p.num_points()) + " samples");
            if (grid.size() != ng) throw py::value_error("grid: expected the fine-grid size " + std::to_string(ng));
            py::gil_scoped_release release;
            p.interpolate_from_grid(gp, yp);
          },
          py::arg("grid"), py::arg("out"), "Interpolate samples from the fine grid (adjoint of spread_to_grid).")
      .def_property_readonly("kernel_integral", [](const Plan& p) {
        return es_fourier(p.kernel().width, p.kernel().beta, {0.0})[0];
      }, "Integral of the spreading kernel over its support (grid units).")
      .def_property_readonly("horner", [](const Plan& p) {
        const auto& k = p.kernel();
        py::array_t<double> a({k.degree + 1, k.width});
        std::copy(k.horner.begin(), k.horner.end(), a.mutable_data());
        return a;
      }, "Horner coefficients (degree + 1, width), highest power first (see csrc/kernels/es_kernel.h).")
      .def("deconvolution", [](const Plan& p, int axis) {
        if (axis < 0 || axis >= p.dim()) throw py::value_error("axis out of range");
        const auto& d = p.deconvolution(axis);
        py::array_t<T> a((py::ssize_t)d.size());
        std::copy(d.begin(), d.end(), a.mutable_data());
        return a;
      }, py::arg("axis"), "Deconvolution factors 1/psihat along one image axis (length N).")
      .def_static(
          "memory_estimate",
          [](int64_t num_points, const std::vector<int64_t>& image_shape, double tol, double upsampfac,
             int64_t nthreads) {
            NufftOptions o;
            o.tol = tol;
            o.upsampfac = upsampfac;
            o.nthreads = checked_threads(nthreads, "memory_estimate");
            const NufftMemory m = nufft_memory<T>(num_points, (int)image_shape.size(), image_shape.data(), o);
            return py::dict(py::arg("plan") = m.plan, py::arg("grid") = m.grid);
          },
          py::arg("num_points"), py::arg("image_shape"), py::arg("tol"), py::arg("upsampfac") = 2.0,
          py::arg("nthreads") = 0,
          "Bytes a plan would take, without building it: {'plan': what it keeps, 'grid': one fine grid of "
          "an execution}. Validates like the constructor (ValueError).")
      .def("execution_bytes", [](const Plan& p, int64_t batch) {
        if (batch < 0) throw py::value_error("batch must be >= 0");
        return p.execution_bytes(batch);
      }, py::arg("batch"), "Bytes a forward/adjoint of `batch` transforms allocates: the fine grids of a pass "
         "(kept by the plan afterwards) and the spreading threads' sub-grids.")
      .def_property_readonly("scale", &Plan::scale, "1/sqrt(prod N)")
      .def_property_readonly("width", [](const Plan& p) { return p.kernel().width; })
      .def_property_readonly("beta", [](const Plan& p) { return p.kernel().beta; })
      .def_property_readonly("degree", [](const Plan& p) { return p.kernel().degree; })
      .def_property_readonly("upsampfac", [](const Plan& p) { return p.kernel().upsampfac; })
      .def_property_readonly("grid_shape", &Plan::grid_shape)
      .def_property_readonly("image_shape", &Plan::image_shape)
      .def_property_readonly("num_points", &Plan::num_points)
      .def_property_readonly("nthreads", &Plan::nthreads);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "recon CPU kernels (C++17/OpenMP)";

  // ---- NUFFT -----------------------------------------------------------------------------------
  bind_nufft_plan<float>(m, "NufftPlan64");    // complex64
  bind_nufft_plan<double>(m, "NufftPlan128");  // complex128
  m.def(
      "es_kernel_params",
      [](double tol, double upsampfac, int width_margin) {
        EsKernel k = es_choose(tol, upsampfac, width_margin);
        return py::make_tuple(k.width, k.beta);
      },
      py::arg("tol"), py::arg("upsampfac") = 2.0, py::arg("width_margin") = 0,
      "(width, beta) of the ES kernel chosen for a tolerance and oversampling factor.");
  m.def(
      "es_kernel_direct",
      [](double t, int width, double beta) { return es_kernel_direct(t, width, beta); },
      py::arg("t"), py::arg("width"), py::arg("beta"), "ES kernel value at offset t (grid units).");
  m.def("max_threads", &max_threads,
        "Most kernel threads a call accepts: 4 per core (nthreads above it raise ValueError).");
  m.def("fine_grid_size", &fine_grid_size, py::arg("N"), py::arg("upsampfac"), py::arg("width"));
  m.def(
      "all_finite",
      [](const py::array& a, int64_t nthreads) {
        return !std::isnan(max_abs_of(a, checked_threads(nthreads, "all_finite"), "all_finite"));
      },
      py::arg("a"), py::arg("nthreads") = 0,
      "True when a C-contiguous float32/64 or complex64/128 array holds no NaN or Inf.");
  m.def(
      "max_abs",
      [](const py::array& a, int64_t nthreads) {
        return max_abs_of(a, checked_threads(nthreads, "max_abs"), "max_abs");
      },
      py::arg("a"), py::arg("nthreads") = 0,
      "Largest |real| or |imaginary| part of a C-contiguous float32/64 or complex64/128 array; NaN when "
      "it holds NaN or Inf; 0.0 when empty.");

  // ---- CT projectors ---------------------------------------------------------------------------
  // Matched Joseph projector (recon.ops.Projector): image (batch, *image_shape) <-> sinogram
  // (batch, n_views, [rows,] cols). Geometry as per-view ASTRA-style vectors (recon/ct/geometry.py).
  py::class_<JosephProjector>(m, "JosephProjector", "Joseph projector over a vec geometry (see recon.ops.Projector).")
      .def(py::init([](int kind, const py::array& vectors, const std::vector<int64_t>& image_shape,
                       const std::vector<double>& voxel_size, const std::vector<int64_t>& det_shape, int subsample) {
             const double* v = checked_buffer<double>(vectors, "vectors", false);
             if (vectors.ndim() != 2) throw py::value_error("vectors: expected shape (n_views, 6 or 12), got " + shape_str(vectors));
             CtProjectorSpec s = make_ct_spec(kind, v, vectors.shape(0), vectors.size(), image_shape, voxel_size,
                                              det_shape, subsample);
             try {
               return new JosephProjector(std::move(s));
             } catch (const std::invalid_argument& e) {
               throw py::value_error(std::string("JosephProjector: ") + e.what());
             }
           }),
           py::arg("kind"), py::arg("vectors"), py::arg("image_shape"), py::arg("voxel_size"), py::arg("det_shape"),
           py::arg("subsample") = 1)
      .def(
          "forward",
          [](const JosephProjector& p, const py::array& x, py::array& out, int64_t nthreads_arg) {
            const int nthreads = checked_threads(nthreads_arg, "JosephProjector.forward");
            const int64_t img = p.image_size(), sino = p.sino_size();
            if (x.size() == 0 || x.size() % img != 0)
              throw py::value_error("x: size " + std::to_string(x.size()) + " is not a positive multiple of the image size " + std::to_string(img));
            const int64_t batch = x.size() / img;
            if (out.size() != batch * sino) throw py::value_error("out: expected " + std::to_string(batch * sino) + " elements");
            if (x.dtype().is(py::dtype::of<float>())) {
              const float* xp = checked_buffer<float>(x, "x", false);
              float* yp = checked_buffer<float>(out, "out", true);
              py::gil_scoped_release release;
              p.forward<float>(xp, yp, batch, nthreads);
            } else {
              const double* xp = checked_buffer<double>(x, "x", false);
              double* yp = checked_buffer<double>(out, "out", true);
              py::gil_scoped_release release;
              p.forward<double>(xp, yp, batch, nthreads);
            }
            require_finite_result(out, nthreads, "JosephProjector.forward");
          },
          py::arg("x"), py::arg("out"), py::arg("nthreads") = 0, "Line integrals: out (batch, sino) = A x (batch, image).")
      .def(
          "adjoint",
          [](const JosephProjector& p, const py::array& y, py::array& out, int64_t nthreads_arg) {
            const int nthreads = checked_threads(nthreads_arg, "JosephProjector.adjoint");
            const int64_t img = p.image_size(), sino = p.sino_size();
            if (y.size() == 0 || y.size() % sino != 0)
              throw py::value_error("y: size " + std::to_string(y.size()) + " is not a positive multiple of the sinogram size " + std::to_string(sino));
            const int64_t batch = y.size() / sino;
            if (out.size() != batch * img) throw py::value_error("out: expected " + std::to_string(batch * img) + " elements");
            if (y.dtype().is(py::dtype::of<float>())) {
              const float* yp = checked_buffer<float>(y, "y", false);
              float* xp = checked_buffer<float>(out, "out", true);
              py::gil_scoped_release release;
              p.adjoint<float>(yp, xp, batch, nthreads);
            } else {
              const double* yp = checked_buffer<double>(y, "y", false);
              double* xp = checked_buffer<double>(out, "out", true);
              py::gil_scoped_release release;
              p.adjoint<double>(yp, xp, batch, nthreads);
            }
            require_finite_result(out, nthreads, "JosephProjector.adjoint");
          },
          py::arg("y"), py::arg("out"), py::arg("nthreads") = 0, "Exact transpose: out (batch, image) = A^T y (batch, sino).")
      .def_property_readonly("image_size", &JosephProjector::image_size)
      .def_property_readonly("sino_size", &JosephProjector::sino_size);

  // ---- CT analytic reconstruction (FBP/FDK weighted backprojector; NOT the adjoint) ----------------
  m.def(
      "ct_backproject_projective",
      [](const py::array& q, const py::array& P, const py::array& weights, const py::array& origin,
         const py::array& step, py::array& out, int64_t nthreads_arg) {
        const int nthreads = checked_threads(nthreads_arg, "ct_backproject_projective");
        const double* Pp = checked_buffer<double>(P, "P", false);
        const double* wp = checked_buffer<double>(weights, "weights", false);
        const double* op = checked_buffer<double>(origin, "origin", false);
        const double* sp = checked_buffer<double>(step, "step", false);
        if (q.ndim() != 3) throw py::value_error("q: expected shape (nproj, nv, nu), got " + shape_str(q));
        if (out.ndim() != 3) throw py::value_error("out: expected shape (nz, ny, nx), got " + shape_str(out));
        const int64_t np_ = q.shape(0), nv = q.shape(1), nu = q.shape(2);
        if (P.ndim() != 3 || P.shape(0) != np_ || P.shape(1) != 3 || P.shape(2) != 4)
          throw py::value_error("P: expected shape (" + std::to_string(np_) + ", 3, 4), got " + shape_str(P));
        if (weights.ndim() != 1 || weights.shape(0) != np_)
          throw py::value_error("weights: expected shape (" + std::to_string(np_) + ",), got " + shape_str(weights));
        if (origin.size() != 3 || step.size() != 3) throw py::value_error("origin, step: expected 3 values (z, y, x)");
        if (nv < 1 || nu < 1) throw py::value_error("q: empty detector");
        const int64_t vs[3] = {out.shape(0), out.shape(1), out.shape(2)};
        if (q.dtype().is(py::dtype::of<float>())) {
          const float* qp = checked_buffer<float>(q, "q", false);
          float* o = checked_buffer<float>(out, "out", true);
          py::gil_scoped_release release;
          ct_backproject_projective<float>(qp, np_, nv, nu, Pp, wp, vs, op, sp, o, nthreads);
        } else {
          const double* qp = checked_buffer<double>(q, "q", false);
          double* o = checked_buffer<double>(out, "out", true);
          py::gil_scoped_release release;
          ct_backproject_projective<double>(qp, np_, nv, nu, Pp, wp, vs, op, sp, o, nthreads);
        }
      },
      py::arg("q"), py::arg("P"), py::arg("weights"), py::arg("origin"), py::arg("step"), py::arg("out"),
      py::arg("nthreads") = 0,
      "Voxel-driven weighted backprojection (flat/parallel): out += sum_p weights[p]/w^2 q[p](b, a), "
      "(a w, b w, w) = P[p] (x, y, z, 1). Unmatched (not the projector's adjoint).");
  m.def(
      "ct_backproject_arc2d",
      [](const py::array& q, const py::array& src, const py::array& frame, double dgamma, double centre,
         const py::array& weights, const py::array& origin, const py::array& step, py::array& out,
         int64_t nthreads_arg) {
        const int nthreads = checked_threads(nthreads_arg, "ct_backproject_arc2d");
        const double* s = checked_buffer<double>(src, "src", false);
        const double* c = checked_buffer<double>(frame, "frame", false);
        const double* wp = checked_buffer<double>(weights, "weights", false);
        const double* op = checked_buffer<double>(origin, "origin", false);
        const double* sp = checked_buffer<double>(step, "step", false);
        if (q.ndim() != 2) throw py::value_error("q: expected shape (nproj, nu), got " + shape_str(q));
        if (out.ndim() != 2) throw py::value_error("out: expected shape (ny, nx), got " + shape_str(out));
        const int64_t np_ = q.shape(0), nu = q.shape(1);
        if (src.ndim() != 2 || src.shape(0) != np_ || src.shape(1) != 2)
          throw py::value_error("src: expected shape (" + std::to_string(np_) + ", 2), got " + shape_str(src));
        if (frame.ndim() != 2 || frame.shape(0) != np_ || frame.shape(1) != 4)
          throw py::value_error("frame: expected shape (" + std::to_string(np_) + ", 4), got " + shape_str(frame));
        if (weights.ndim() != 1 || weights.shape(0) != np_)
          throw py::value_error("weights: expected shape (" + std::to_string(np_) + ",), got " + shape_str(weights));
        if (origin.size() != 2 || step.size() != 2) throw py::value_error("origin, step: expected 2 values (y, x)");
        if (!(dgamma > 0)) throw py::value_error("dgamma must be positive");
        if (nu < 1) throw py::value_error("q: empty detector");
        const int64_t vs[2] = {out.shape(0), out.shape(1)};
        if (q.dtype().is(py::dtype::of<float>())) {
          const float* qp = checked_buffer<float>(q, "q", false);
          float* o = checked_buffer<float>(out, "out", true);
          py::gil_scoped_release release;
          ct_backproject_arc2d<float>(qp, np_, nu, s, c, dgamma, centre, wp, vs, op, sp, o, nthreads);
        } else {
          const double* qp = checked_buffer<double>(q, "q", false);
          double* o = checked_buffer<double>(out, "out", true);
          py::gil_scoped_release release;
          ct_backproject_arc2d<double>(qp, np_, nu, s, c, dgamma, centre, wp, vs, op, sp, o, nthreads);
        }
      },
      py::arg("q"), py::arg("src"), py::arg("frame"), py::arg("dgamma"), py::arg("centre"), py::arg("weights"),
      py::arg("origin"), py::arg("step"), py::arg("out"), py::arg("nthreads") = 0,
      "Voxel-driven weighted backprojection, equiangular fan: out += sum_p weights[p]/|r-s_p|^2 q[p](a), "
      "a = atan2(e.(r-s), c.(r-s))/dgamma + centre, frame[p] = (c, e). "
      "Unmatched (not the projector's adjoint).");
}
