// The only file of the CUDA module that knows pybind11: module recon._cuda.
//
// Device functions take raw device pointers and CUDA stream handles as Python ints (from
// __cuda_array_interface__ / cupy's .data.ptr and torch's .data_ptr() / .cuda_stream); the module
// links only the CUDA runtime (statically), never libtorch or cupy. Python (recon/ops/nufft_cuda.py)
// checks shapes, dtypes, contiguity and devices first; C++ re-checks what it can cheaply (pointer
// kind, device and alignment; sizes of host buffers). Errors raise ValueError / RuntimeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <complex>
#include <string>
#include <vector>

#include "joseph_cuda.h"
#include "nufft_cuda.h"

namespace py = pybind11;
using namespace recon::cuda;

#ifndef RECON_CUDA_ARCHITECTURES
#define RECON_CUDA_ARCHITECTURES "unknown"
#endif

namespace {

std::vector<double> to_vector(const py::array& a, const char* name) {
  py::array_t<double, py::array::c_style | py::array::forcecast> d(a);
  (void)name;
  return std::vector<double>(d.data(), d.data() + d.size());
}

const double* checked_coord(const py::array_t<double, py::array::c_style>& coord, int dim) {
  if (coord.ndim() != 2 || coord.shape(1) != dim)
    throw py::value_error("coord: expected shape (M, " + std::to_string(dim) + ") float64, got ndim " +
                          std::to_string(coord.ndim()));
  return coord.data();
}

NufftSetup make_setup(const std::vector<int64_t>& image_shape, const std::vector<int64_t>& grid_shape, int width,
                      const py::array& horner, const std::vector<py::array>& deconv, double scale,
                      const std::string& spread_method, const std::vector<int>& bin_shape, int max_subproblem) {
  NufftSetup s;
  s.dim = (int)image_shape.size();
  s.image_shape = image_shape;
  s.grid_shape = grid_shape;
  s.width = width;
  if (horner.ndim() != 2 || horner.shape(1) != width)
    throw py::value_error("horner: expected shape (degree + 1, width=" + std::to_string(width) + ")");
  s.degree = (int)horner.shape(0) - 1;
  s.horner = to_vector(horner, "horner");
  if ((int)deconv.size() != s.dim)
    throw py::value_error("deconv: expected one array per image axis (" + std::to_string(s.dim) + ")");
  for (int a = 0; a < s.dim; ++a) {
    if (deconv[a].ndim() != 1 || deconv[a].shape(0) != image_shape[a])
      throw py::value_error("deconv[" + std::to_string(a) + "]: expected shape (" + std::to_string(image_shape[a]) + ",)");
    std::vector<double> d = to_vector(deconv[a], "deconv");
    s.deconv.insert(s.deconv.end(), d.begin(), d.end());
  }
  s.scale = scale;
  s.spread_method = spread_method;
  s.bin_shape = bin_shape;
  s.max_subproblem = max_subproblem;
  return s;
}

template <typename T>
void bind_device_plan(py::module_& m, const char* name, const char* dtype) {
  using Plan = DeviceNufftPlan<T>;
  const std::string doc = std::string("CUDA NUFFT plan (") + dtype +
                          ") over one trajectory on one device; steps take device pointers and a stream handle.";
  py::class_<Plan>(m, name, doc.c_str())
      .def(py::init([](int device, const py::array_t<double, py::array::c_style>& coord,
                       const std::vector<int64_t>& image_shape, const std::vector<int64_t>& grid_shape, int width,
                       const py::array& horner, const std::vector<py::array>& deconv, double scale,
                       const std::string& spread_method, const std::vector<int>& bin_shape, int max_subproblem,
                       uintptr_t stream) {
             NufftSetup s = make_setup(image_shape, grid_shape, width, horner, deconv, scale, spread_method, bin_shape,
                                       max_subproblem);
             const double* c = checked_coord(coord, s.dim);
             const int64_t M = coord.shape(0);
             py::gil_scoped_release release;
             return new Plan(device, c, M, s, stream);
           }),
           py::arg("device"), py::arg("coord"), py::arg("image_shape"), py::arg("grid_shape"), py::arg("width"),
           py::arg("horner"), py::arg("deconv"), py::arg("scale"), py::arg("spread_method") = "auto",
           py::arg("bin_shape") = std::vector<int>{}, py::arg("max_subproblem") = 1024, py::arg("stream") = 0)
      .def(
          "pad",
          [](const Plan& p, uintptr_t x, uintptr_t grid, int64_t batch, uintptr_t stream) {
            py::gil_scoped_release release;
            p.pad(x, grid, batch, stream);
          },
          py::arg("x"), py::arg("grid"), py::arg("batch"), py::arg("stream"),
          "Deconvolve and zero-pad images (batch, *N) into fine grids (batch, *n) (writes every cell).")
      .def(
          "interpolate",
          [](const Plan& p, uintptr_t grid, uintptr_t y, int64_t batch, uintptr_t stream) {
            py::gil_scoped_release release;
            p.interpolate(grid, y, batch, stream);
          },
          py::arg("grid"), py::arg("y"), py::arg("batch"), py::arg("stream"),
          "Interpolate samples (batch, M) from fine grids (batch, *n).")
      .def(
          "spread",
          [](const Plan& p, uintptr_t y, uintptr_t grid, int64_t batch, uintptr_t stream) {
            py::gil_scoped_release release;
            p.spread(y, grid, batch, stream);
          },
          py::arg("y"), py::arg("grid"), py::arg("batch"), py::arg("stream"),
          "Zero fine grids (batch, *n) and spread samples (batch, M) onto them.")
      .def(
          "crop",
          [](const Plan& p, uintptr_t grid, uintptr_t x, int64_t batch, uintptr_t stream) {
            py::gil_scoped_release release;
            p.crop(grid, x, batch, stream);
          },
          py::arg("grid"), py::arg("x"), py::arg("batch"), py::arg("stream"),
          "Crop fine grids (batch, *n) to images (batch, *N) and deconvolve.")
      .def_property_readonly("device", &Plan::device)
      .def_property_readonly("num_points", &Plan::num_points)
      .def_property_readonly("image_shape", [](const Plan& p) { return p.setup().image_shape; })
      .def_property_readonly("grid_shape", [](const Plan& p) { return p.setup().grid_shape; })
      .def_property_readonly("width", [](const Plan& p) { return p.setup().width; })
      .def_property_readonly("degree", [](const Plan& p) { return p.setup().degree; })
      .def_property_readonly("bin_shape", &Plan::bin_shape)
      .def_property_readonly("spread_method", &Plan::spread_method)
      .def_property_readonly("num_subproblems", &Plan::num_subproblems)
      .def_property_readonly("device_bytes", &Plan::device_bytes);
}

template <typename T>
T* host_buffer(const py::array& a, const char* name, int64_t unit, bool writeable) {
  using C = std::complex<T>;
  if (!py::isinstance<py::array_t<C>>(a) || !a.dtype().is(py::dtype::of<C>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<C>())) +
                         ", got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  if (unit == 0 ? a.size() != 0 : a.size() % unit != 0)
    throw py::value_error(std::string(name) + ": size " + std::to_string(a.size()) + " is not a multiple of " +
                          std::to_string(unit));
  return reinterpret_cast<T*>(const_cast<void*>(a.data()));
}

template <typename T>
void bind_host_plan(py::module_& m, const char* name) {
  using Plan = HostNufftPlan<T>;
  py::class_<Plan>(m, name,
                   "Host emulation of the CUDA NUFFT plan: the same per-element code in host loops (for tests).")
      .def(py::init([](const py::array_t<double, py::array::c_style>& coord, const std::vector<int64_t>& image_shape,
                       const std::vector<int64_t>& grid_shape, int width, const py::array& horner,
                       const std::vector<py::array>& deconv, double scale, const std::string& spread_method,
                       const std::vector<int>& bin_shape, int max_subproblem, int64_t smem_bytes) {
             NufftSetup s = make_setup(image_shape, grid_shape, width, horner, deconv, scale, spread_method, bin_shape,
                                       max_subproblem);
             const double* c = checked_coord(coord, s.dim);
             return new Plan(c, coord.shape(0), s, smem_bytes);
           }),
           py::arg("coord"), py::arg("image_shape"), py::arg("grid_shape"), py::arg("width"), py::arg("horner"),
           py::arg("deconv"), py::arg("scale"), py::arg("spread_method") = "auto",
           py::arg("bin_shape") = std::vector<int>{}, py::arg("max_subproblem") = 1024,
           py::arg("smem_bytes") = 48 * 1024)
      .def("pad",
           [](const Plan& p, const py::array& x, py::array& grid) {
             int64_t nimg = 1, ng = 1;
             for (auto v : p.setup().image_shape) nimg *= v;
             for (auto v : p.setup().grid_shape) ng *= v;
             const T* xp = host_buffer<T>(x, "x", nimg, false);
             T* gp = host_buffer<T>(grid, "grid", ng, true);
             const int64_t batch = x.size() / nimg;
             if (grid.size() != batch * ng) throw py::value_error("grid: expected " + std::to_string(batch * ng) + " elements");
             p.pad(xp, gp, batch);
           }, py::arg("x"), py::arg("grid"))
      .def("crop",
           [](const Plan& p, const py::array& grid, py::array& x) {
             int64_t nimg = 1, ng = 1;
             for (auto v : p.setup().image_shape) nimg *= v;
             for (auto v : p.setup().grid_shape) ng *= v;
             const T* gp = host_buffer<T>(grid, "grid", ng, false);
             T* xp = host_buffer<T>(x, "x", nimg, true);
             const int64_t batch = grid.size() / ng;
             if (x.size() != batch * nimg) throw py::value_error("x: expected " + std::to_string(batch * nimg) + " elements");
             p.crop(gp, xp, batch);
           }, py::arg("grid"), py::arg("x"))
      .def("interpolate",
           [](const Plan& p, const py::array& grid, py::array& y) {
             int64_t ng = 1;
             for (auto v : p.setup().grid_shape) ng *= v;
             const T* gp = host_buffer<T>(grid, "grid", ng, false);
             const int64_t batch = grid.size() / ng;
             T* yp = host_buffer<T>(y, "y", p.num_points(), true);
             if (y.size() != batch * p.num_points())
               throw py::value_error("y: expected " + std::to_string(batch * p.num_points()) + " elements");
             p.interpolate(gp, yp, batch);
           }, py::arg("grid"), py::arg("y"))
      .def("spread",
           [](const Plan& p, const py::array& y, py::array& grid) {
             int64_t ng = 1;
             for (auto v : p.setup().grid_shape) ng *= v;
             T* gp = host_buffer<T>(grid, "grid", ng, true);
             const int64_t batch = grid.size() / ng;
             const T* yp = host_buffer<T>(y, "y", p.num_points(), false);
             if (y.size() != batch * p.num_points())
               throw py::value_error("y: expected " + std::to_string(batch * p.num_points()) + " elements");
             p.spread(yp, gp, batch);
           }, py::arg("y"), py::arg("grid"))
      .def_property_readonly("num_points", &Plan::num_points)
      .def_property_readonly("image_shape", [](const Plan& p) { return p.setup().image_shape; })
      .def_property_readonly("grid_shape", [](const Plan& p) { return p.setup().grid_shape; })
      .def_property_readonly("bin_shape", &Plan::bin_shape)
      .def_property_readonly("spread_method", &Plan::spread_method)
      .def_property_readonly("num_subproblems", &Plan::num_subproblems)
      .def_property_readonly("order", &Plan::order)
      .def_property_readonly("bin_offsets", &Plan::bin_offsets);
}

// The mapping of _core.JosephProjector (csrc/ct/spec.h): image_shape/voxel_size ([nz,] ny, nx),
// det_shape ([rows,] cols).
JosephSetup make_joseph_setup(int kind, const py::array_t<double, py::array::c_style>& vectors,
                              const std::vector<int64_t>& image_shape, const std::vector<double>& voxel_size,
                              const std::vector<int64_t>& det_shape, int subsample) {
  if (vectors.ndim() != 2) throw py::value_error("vectors: expected shape (n_views, 6 or 12)");
  return recon::make_ct_spec(kind, vectors.data(), vectors.shape(0), vectors.size(), image_shape, voxel_size, det_shape,
                      subsample);
}

template <typename T>
void bind_device_joseph(py::module_& m, const char* name) {
  using P = DeviceJosephProjector<T>;
  py::class_<P>(m, name, "CUDA Joseph projector (matched) on one device; takes device pointers and a stream handle.")
      .def(py::init([](int device, int kind, const py::array_t<double, py::array::c_style>& vectors,
                       const std::vector<int64_t>& image_shape, const std::vector<double>& voxel_size,
                       const std::vector<int64_t>& det_shape, int subsample, uintptr_t stream) {
             JosephSetup js = make_joseph_setup(kind, vectors, image_shape, voxel_size, det_shape, subsample);
             py::gil_scoped_release release;
             return new P(device, js, stream);
           }),
           py::arg("device"), py::arg("kind"), py::arg("vectors"), py::arg("image_shape"), py::arg("voxel_size"),
           py::arg("det_shape"), py::arg("subsample") = 1, py::arg("stream") = 0)
      .def(
          "forward",
          [](const P& p, uintptr_t x, uintptr_t y, int64_t batch, uintptr_t stream) {
            py::gil_scoped_release release;
            p.forward(x, y, batch, stream);
          },
          py::arg("x"), py::arg("y"), py::arg("batch"), py::arg("stream"), "y (batch, sino) = A x (batch, image).")
      .def(
          "adjoint",
          [](const P& p, uintptr_t y, uintptr_t x, int64_t batch, uintptr_t stream) {
            py::gil_scoped_release release;
            p.adjoint(y, x, batch, stream);
          },
          py::arg("y"), py::arg("x"), py::arg("batch"), py::arg("stream"),
          "x (batch, image) = A^T y (batch, sino); zeroes x first.")
      .def_property_readonly("device", &P::device)
      .def_property_readonly("image_size", &P::image_size)
      .def_property_readonly("sino_size", &P::sino_size);
}

template <typename T>
T* real_buffer(const py::array& a, const char* name, bool writeable) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return reinterpret_cast<T*>(const_cast<void*>(a.data()));
}

template <typename T>
void bind_host_joseph(py::module_& m, const char* name) {
  using P = HostJosephProjector<T>;
  py::class_<P>(m, name, "Host emulation of the CUDA Joseph projector: the same per-ray code in host loops (tests).")
      .def(py::init([](int kind, const py::array_t<double, py::array::c_style>& vectors,
                       const std::vector<int64_t>& image_shape, const std::vector<double>& voxel_size,
                       const std::vector<int64_t>& det_shape, int subsample) {
             return new P(make_joseph_setup(kind, vectors, image_shape, voxel_size, det_shape, subsample));
           }),
           py::arg("kind"), py::arg("vectors"), py::arg("image_shape"), py::arg("voxel_size"), py::arg("det_shape"),
           py::arg("subsample") = 1)
      .def("forward",
           [](const P& p, const py::array& x, py::array& y) {
             const T* xp = real_buffer<T>(x, "x", false);
             T* yp = real_buffer<T>(y, "y", true);
             if (x.size() == 0 || x.size() % p.image_size() != 0)
               throw py::value_error("x: size is not a positive multiple of the image size");
             const int64_t batch = x.size() / p.image_size();
             if (y.size() != batch * p.sino_size()) throw py::value_error("y: wrong size");
             p.forward(xp, yp, batch);
           }, py::arg("x"), py::arg("y"))
      .def("adjoint",
           [](const P& p, const py::array& y, py::array& x) {
             const T* yp = real_buffer<T>(y, "y", false);
             T* xp = real_buffer<T>(x, "x", true);
             if (y.size() == 0 || y.size() % p.sino_size() != 0)
               throw py::value_error("y: size is not a positive multiple of the sinogram size");
             const int64_t batch = y.size() / p.sino_size();
             if (x.size() != batch * p.image_size()) throw py::value_error("x: wrong size");
             p.adjoint(yp, xp, batch);
           }, py::arg("y"), py::arg("x"))
      .def_property_readonly("image_size", &P::image_size)
      .def_property_readonly("sino_size", &P::sino_size);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "recon CUDA kernels (optional module; see docs/cuda.md)";
  m.attr("architectures") = RECON_CUDA_ARCHITECTURES;
  m.def("device_count", &device_count, "Number of visible CUDA devices (0 without a driver or device).");
  m.def("device_status", &device_count_error,
        "Empty when a CUDA device is visible; otherwise why not (e.g. no driver, driver older than the runtime).");
  m.def("device_name", &device_name, py::arg("device"));
  m.def("compute_capability", &compute_capability, py::arg("device"));
  m.def("runtime_version", &runtime_version, "CUDA runtime version the module was built with (e.g. 13000).");
  m.def("driver_version", &driver_version, "CUDA driver version (0 without a driver).");

  bind_device_plan<float>(m, "NufftPlan64", "complex64");
  bind_device_plan<double>(m, "NufftPlan128", "complex128");
  bind_host_plan<float>(m, "HostNufftPlan64");
  bind_host_plan<double>(m, "HostNufftPlan128");

  bind_device_joseph<float>(m, "JosephProjectorF32");
  bind_device_joseph<double>(m, "JosephProjectorF64");
  bind_host_joseph<float>(m, "HostJosephProjectorF32");
  bind_host_joseph<double>(m, "HostJosephProjectorF64");
}
