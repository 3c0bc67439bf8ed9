"""Plain sinogram files (``.npy``, HDF5, MATLAB ``.mat``, TIFF stacks) described by a geometry file
(JSON or YAML). Format of the data file detected from its content, not its name.

Geometry file: ``"kind"`` (a :mod:`recon.geometry` class name: ``ParallelBeam2D``, ``FanBeam2D``,
``ConeBeam3D``, ``HelicalConeBeam3D``, ``ParallelVec2D``, ``FanVec2D``, ``ConeVec3D``) and that class's
constructor arguments by name (lengths in mm, angles in radians), read through
:func:`recon.geometry.from_dict`, which names the field in every error. Conveniences:

* ``"angles_deg"`` instead of ``"angles"`` (degrees);
* ``"angles"`` / ``"angles_deg"`` as ``{"start": a, "stop": b, "count": n, "endpoint": false}``
  (``numpy.linspace``) instead of a list.

Optional data fields (removed before the geometry is built):

* ``dataset``: the HDF5 dataset path or ``.mat`` variable (default: the only 2D/3D numeric array);
* ``layout``: the data file's axis order, comma separated: 2D ``"views,bins"`` (default) or
  ``"bins,views"``; 3D any order of ``views``, ``rows``, ``cols`` (default ``"views,rows,cols"``;
  ASTRA's ``"rows,views,cols"``). The sinogram is returned in recon's layout;
* ``units``: ``"line_integrals"`` (default) or ``"counts"``;
* ``blank``, ``dark``: a number, a list, or a file name (relative to the geometry file) of an array in
  recon's layout broadcastable to the sinogram (e.g. ``(bins,)`` per bin, ``(rows, cols)`` per element).

Data files: ``.npy`` (no pickles), HDF5 and MATLAB v7.3 ``.mat`` (HDF5 underneath; only data stored in
the file itself is read: external and soft links, external storage and virtual datasets are refused),
MATLAB v5 ``.mat`` (scipy), TIFF (one page: 2D; a stack of pages: 3D, pages first). ``.mat`` arrays
keep MATLAB's shape (v7.3 data are transposed back from HDF5's reversed order). Sizes are checked
before anything is read; NaN or Inf in the data is an error. Every problem is one
:class:`SinogramFileError` (a ValueError) naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from ..geometry import Geometry, from_dict
from .atomic import atomic_file
from .files import check_input_file, first_line
from .hdf5 import corrupt_guard, member, open_h5, stored_datasets
from .limits import check_read_size, nbytes_of

__all__ = [
    "DATA_FIELDS",
    "UNITS",
    "SinogramFile",
    "SinogramFileError",
    "read_array",
    "read_geometry_file",
    "read_sinogram",
    "write_geometry_file",
]

#: Fields of a geometry file that describe the data, not the geometry.
DATA_FIELDS = ("dataset", "layout", "units", "blank", "dark")
UNITS = ("line_integrals", "counts")
#: Largest geometry file read (bytes).
MAX_GEOMETRY_BYTES = 64 << 20

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class SinogramFileError(ValueError):
    """A sinogram or geometry file that cannot be used (one line naming the file and the field)."""


@dataclasses.dataclass
class SinogramFile:
    """A sinogram read from a plain file: ``sinogram`` float32 in recon's layout (``geometry.sino_shape``),
    ``geometry``, ``units`` (``"line_integrals"`` or ``"counts"``), ``blank``/``dark`` (None, a float or
    a float64 array broadcastable to the sinogram), ``path``."""

    sinogram: np.ndarray
    geometry: Geometry
    units: str = "line_integrals"
    blank: float | np.ndarray | None = None
    dark: float | np.ndarray | None = None
    path: str = ""


# ---- geometry files ------------------------------------------------------------------------------

def _load_text(path: str):
    try:
        check_input_file(path, "geometry file")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such geometry file: {path}") from None
    if os.path.getsize(path) > MAX_GEOMETRY_BYTES:
        raise SinogramFileError(f"{path}: geometry file larger than {MAX_GEOMETRY_BYTES >> 20} MiB")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SinogramFileError(f"{path}: not a text (UTF-8) geometry file") from None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SinogramFileError(f"{path}: not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SinogramFileError(f"{path}: not valid JSON or YAML: {first}") from None


def _angles(path: str, field: str, value, scale: float):
    if isinstance(value, dict):
        unknown = set(value) - {"start", "stop", "count", "endpoint"}
        if unknown or not {"start", "stop", "count"} <= set(value):
            raise SinogramFileError(f"{path}: field '{field}' as a mapping needs start, stop, count (and optional "
                                    f"endpoint), got keys {sorted(value)}")
        count = value["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SinogramFileError(f"{path}: field '{field}.count' must be a positive integer, got {count!r}")
        try:
            a = np.linspace(float(value["start"]), float(value["stop"]), count,
                            endpoint=bool(value.get("endpoint", False)))
        except (TypeError, ValueError):
            raise SinogramFileError(f"{path}: field '{field}' start/stop must be numbers") from None
    else:
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise SinogramFileError(f"{path}: field '{field}' must be a list of numbers") from None
    return a * scale


def read_geometry_file(path) -> tuple[Geometry, dict]:
    """Read a geometry file (JSON or YAML): ``(geometry, data_fields)`` with the optional fields of
    :data:`DATA_FIELDS` present in the file (module docstring)."""
    path = os.fspath(path)
    desc = _load_text(path)
    if not isinstance(desc, dict):
        raise SinogramFileError(f"{path}: a geometry file must hold a mapping with 'kind', got {type(desc).__name__}")
    desc = dict(desc)
    data = {k: desc.pop(k) for k in DATA_FIELDS if k in desc}
    if "angles_deg" in desc:
        if "angles" in desc:
            raise SinogramFileError(f"{path}: give 'angles' (radians) or 'angles_deg' (degrees), not both")
        desc["angles"] = _angles(path, "angles_deg", desc.pop("angles_deg"), math.pi / 180.0)
    elif isinstance(desc.get("angles"), dict):
        desc["angles"] = _angles(path, "angles", desc["angles"], 1.0)
    try:
        geometry = from_dict(desc)
    except (ValueError, TypeError) as exc:
        raise SinogramFileError(f"{path}: {exc}") from None
    return geometry, data


def write_geometry_file(path, geometry: Geometry, **data_fields) -> str:
    """Write ``geometry.to_dict()`` plus optional data fields (:data:`DATA_FIELDS`) as JSON (or YAML
    for a ``.yaml``/``.yml`` name), atomically (:mod:`recon.io.atomic`)."""
    if not isinstance(geometry, Geometry):
        raise TypeError(f"write_geometry_file: expected a recon.geometry Geometry, got {type(geometry).__name__}")
    unknown = set(data_fields) - set(DATA_FIELDS)
    if unknown:
        raise ValueError(f"write_geometry_file: unknown field(s) {sorted(unknown)}; data fields: {DATA_FIELDS}")
    desc = geometry.to_dict()
    desc.update({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data_fields.items()})
    path = os.fspath(path)
    if path.lower().endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(desc, sort_keys=False)
    else:
        text = json.dumps(desc, indent=1)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# ---- data files ------------------------------------------------------------------------------------------

def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(1024)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"MATLAB 7.3 MAT-file") or head[512:520] == _HDF5_MAGIC:
        return "mat73"
    if head.startswith((b"MATLAB 5.0 MAT-file", b"MATLAB")):
        return "mat5"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    raise SinogramFileError(f"{path}: unknown data format (not .npy, HDF5, MATLAB .mat or TIFF)")


def _check_numeric(path: str, what: str, shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind not in "biuf" or dt.kind == "b":
        raise SinogramFileError(f"{path}: {what} has dtype {dt}, not real numbers")
    check_read_size(nbytes_of(shape, 4 + dt.itemsize), f"{path}: {what} of shape {tuple(shape)}",
                    error=SinogramFileError)


def _only(path: str, names: list[str], what: str) -> str:
    if len(names) != 1:
        found = ", ".join(names) if names else "none"
        raise SinogramFileError(f"{path}: name the {what} ('dataset' field): expected exactly one 2D/3D numeric "
                                f"array, found {found}")
    return names[0]


def _read_hdf5(path: str, dataset: str | None, transpose: bool) -> np.ndarray:
    import h5py

    with open_h5(path, SinogramFileError) as f, corrupt_guard(path, SinogramFileError, "sinogram dataset"):
        if dataset is None:
            dataset = _only(path, [n for n, d in stored_datasets(f) if d.ndim in (2, 3) and d.dtype.kind in "iuf"],
                            "dataset")
        obj = member(f, dataset, SinogramFileError, path)
        if obj is None:
            raise SinogramFileError(f"{path}: no dataset '{dataset}'")
        if not isinstance(obj, h5py.Dataset):
            raise SinogramFileError(f"{path}: '{dataset}' is a group, not a dataset")
        _check_numeric(path, f"dataset '{dataset}'", obj.shape, obj.dtype)
        data = obj[()]
    return np.ascontiguousarray(data.T) if transpose else np.asarray(data)


def _read_mat5(path: str, dataset: str | None) -> np.ndarray:
    import scipy.io

    try:
        info = scipy.io.whosmat(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for damaged files
        raise SinogramFileError(f"{path}: not a readable MATLAB file: {first_line(exc)}") from None
    numeric = {n: (s, c) for n, s, c in info if c in ("double", "single", "int8", "uint8", "int16", "uint16",
                                                       "int32", "uint32", "int64", "uint64")}
    if dataset is None:
        dataset = _only(path, [n for n, (s, _) in numeric.items() if len(s) in (2, 3)], "variable")
    if dataset not in numeric:
        raise SinogramFileError(f"{path}: no numeric variable '{dataset}' (variables: {', '.join(n for n, *_ in info)})")
    check_read_size(nbytes_of(numeric[dataset][0], 12), f"{path}: variable '{dataset}'", error=SinogramFileError)
    try:
        data = scipy.io.loadmat(path, variable_names=[dataset])[dataset]
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for damaged files
        raise SinogramFileError(f"{path}: corrupt MATLAB file: {first_line(exc)}") from None
    _check_numeric(path, f"variable '{dataset}'", data.shape, data.dtype)
    return data


def _read_tiff(path: str) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            _check_numeric(path, "TIFF image", series.shape, series.dtype)
            data = series.asarray()
    except SinogramFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for damaged files
        raise SinogramFileError(f"{path}: not a readable TIFF file: {first_line(exc)}") from None
    return np.squeeze(data) if data.ndim > 3 else data


def _read_npy(path: str) -> np.ndarray:
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SinogramFileError(f"{path}: not a readable .npy file: {first_line(exc)}") from None
    _check_numeric(path, "array", mm.shape, mm.dtype)
    return np.array(mm)


def read_array(path, dataset: str | None = None) -> np.ndarray:
    """The numeric array in a ``.npy``, HDF5, ``.mat`` or TIFF file (format from the content;
    ``dataset`` names the HDF5 dataset or MATLAB variable, default: the only 2D/3D numeric array)."""
    path = check_input_file(path)
    kind = _sniff(path)
    if dataset is not None and not isinstance(dataset, str):
        raise SinogramFileError(f"{path}: field 'dataset' must be a string, got {dataset!r}")
    if kind == "npy":
        return _read_npy(path)
    if kind == "tiff":
        return _read_tiff(path)
    if kind == "mat5":
        return _read_mat5(path, dataset)
    return _read_hdf5(path, dataset, transpose=kind == "mat73")


def _layout(where: str, layout, ndim: int) -> tuple[int, ...]:
    axes = ("views", "bins") if ndim == 2 else ("views", "rows", "cols")
    if layout is None:
        return tuple(range(ndim))
    names = [s.strip() for s in layout.split(",")] if isinstance(layout, str) else None
    if names is None or sorted(names) != sorted(axes):
        raise SinogramFileError(f"{where}: field 'layout' must order {', '.join(axes)} (comma separated), "
                                f"got {layout!r}")
    return tuple(names.index(a) for a in axes)


def _level(where: str, field: str, value, base: str, shape) -> float | np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        p = value if os.path.isabs(value) else os.path.join(base, value)
        arr = read_array(p).astype(np.float64)
    elif isinstance(value, bool):
        raise SinogramFileError(f"{where}: field '{field}' must be a number, a list or a file name, got {value!r}")
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise SinogramFileError(f"{where}: field '{field}' must be a number, a list or a file name") from None
    if not np.all(np.isfinite(arr)):
        raise SinogramFileError(f"{where}: field '{field}' contains NaN or Inf")
    try:
        np.broadcast_shapes(arr.shape, tuple(shape))
    except ValueError:
        raise SinogramFileError(f"{where}: field '{field}' of shape {arr.shape} does not broadcast to the sinogram's "
                                f"{tuple(shape)} (recon's layout)") from None
    return float(arr) if arr.ndim == 0 else arr


def read_sinogram(path, geometry, *, dataset: str | None = None, layout: str | None = None,
                  units: str | None = None) -> SinogramFile:
    """Read a sinogram file with its geometry: ``geometry`` is a geometry file (JSON/YAML path), a
    :class:`~recon.geometry.Geometry` or a description dict (:func:`recon.geometry.from_dict`, data
    fields allowed). Keyword arguments override the geometry file's data fields. Returns a
    :class:`SinogramFile` with the sinogram as float32 in ``geometry.sino_shape``."""
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    if isinstance(geometry, Geometry):
        geom, fields = geometry, {}
    elif isinstance(geometry, dict):
        desc = dict(geometry)
        fields = {k: desc.pop(k) for k in DATA_FIELDS if k in desc}
        try:
            geom = from_dict(desc)
        except (ValueError, TypeError) as exc:
            raise SinogramFileError(f"geometry: {exc}") from None
    elif isinstance(geometry, (str, os.PathLike)):
        geom, fields = read_geometry_file(geometry)
        base = os.path.dirname(os.path.abspath(os.fspath(geometry)))
    else:
        raise TypeError(f"read_sinogram: geometry must be a file name, a Geometry or a dict, got "
                        f"{type(geometry).__name__}")
    for k, v in (("dataset", dataset), ("layout", layout), ("units", units)):
        if v is not None:
            fields[k] = v
    u = fields.get("units", "line_integrals")
    if u not in UNITS:
        raise SinogramFileError(f"{path}: field 'units' must be one of {UNITS}, got {u!r}")
    data = read_array(path, fields.get("dataset"))
    if data.ndim != len(geom.sino_shape):
        raise SinogramFileError(f"{path}: the array has shape {data.shape} but a {type(geom).__name__} sinogram is "
                                f"{len(geom.sino_shape)}D {geom.sino_shape}")
    order = _layout(path, fields.get("layout"), data.ndim)
    sino = np.ascontiguousarray(np.transpose(data, order), dtype=np.float32)
    if sino.shape != tuple(geom.sino_shape):
        raise SinogramFileError(f"{path}: the sinogram has shape {sino.shape} in recon's layout (file "
                                f"{data.shape}, layout {fields.get('layout') or 'default'}) but the geometry needs "
                                f"{tuple(geom.sino_shape)}")
    bad = np.flatnonzero(~np.isfinite(sino))
    if bad.size:
        raise SinogramFileError(f"{path}: {bad.size} NaN/Inf value(s), first at index "
                                f"{tuple(int(i) for i in np.unravel_index(bad[0], sino.shape))}")
    blank = _level(path, "blank", fields.get("blank"), base, sino.shape)
    dark = _level(path, "dark", fields.get("dark"), base, sino.shape)
    return SinogramFile(sino, geom, u, blank, dark, path)
