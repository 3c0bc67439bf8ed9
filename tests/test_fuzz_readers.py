"""Fuzzing the readers and ``recon mri`` (issue #10, "so it cannot come back").

Hypothesis makes corrupt fastMRI, ISMRMRD and DICOM files: truncations at random offsets, bit
flips, datasets of wrong dtypes and shapes, huge declared dimensions (sparse, so the files stay
tiny), out-of-range header fields, missing and extra datasets, malformed XML headers, entity
expansion ("billion laughs") and external entities, external links and external storage. Each file
goes to a worker process (RLIMIT_AS caps its memory; every case has a timeout) that runs the
readers (``read_fastmri``, ``read_ismrmrd``, ``read_raw`` with every view, ``read_dicom_series``)
and ``recon mri`` on it. A case passes when the result is a clear error (``ValueError`` or
``FileNotFoundError`` with a one-line message; ``recon mri``: exit 1 with one ``recon: error:``
line) or a finite result; a crash, hang, traceback of another type, ``MemoryError`` or multi-line
message fails it, and the file is kept for reproduction.

The CI run is bounded (about 20 s). For a longer run::

    RECON_FUZZ=long PYTHONPATH=. python -m pytest -q tests/test_fuzz_readers.py    # 50x the examples
    RECON_FUZZ_EXAMPLES=5000 ...                                                   # or any count
"""

import json
import os
import select
import shutil
import subprocess
import textwrap

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isolated import popen_python, python_env, run_python

from recon.io import build_ismrmrd_header, write_dicom_series, write_ismrmrd

SCALE = 50 if os.environ.get("RECON_FUZZ") == "long" else 1
N = int(os.environ.get("RECON_FUZZ_EXAMPLES", 0))


def _examples(n):
    return N or n * SCALE


FUZZ = settings(deadline=None, derandomize=not (SCALE > 1 or N),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def fuzz(n):
    """Hypothesis settings of one fuzz test: ``n`` examples in CI (times ``SCALE``, or ``N``)."""
    return settings(FUZZ, max_examples=_examples(n))


CASE_TIMEOUT_S = 60
MEMORY_CAP = 3 << 30  # RLIMIT_AS of the worker

WORKER = textwrap.dedent(r"""
    import contextlib, io, json, os, resource, signal, sys, warnings
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
    warnings.simplefilter("ignore")
    import numpy as np
    import recon.io as rio
    from recon.cli import main

    def finite(x):
        return x is None or not isinstance(x, np.ndarray) or x.dtype.kind not in "fc" or np.isfinite(x).all()

    def views(raw):  # raw arrays hold what the file holds; the units of reconstruction are checked
        for name in ("noise", "kspace", "mask", "samples", "trajectory", "calibration", "counters"):
            getattr(raw, name)
        for sl in raw.slices:
            assert finite(np.asarray(sl.kspace)) and (sl.coord is None or finite(sl.coord))
        raw.crop, raw.voxel_size_mm, raw.noise_scale

    def exit_bad(msg):
        raise AssertionError(msg)

    OPS = {
        "fastmri": lambda p: rio.read_fastmri(p).kspace,
        "ismrmrd": lambda p: views(rio.read_ismrmrd(p)),
        "raw": lambda p: views(rio.read_raw(p)),
        "dicom": lambda p: [finite(x) or exit_bad("non-finite DICOM result") for x in rio.read_dicom_series([p])],
    }
    for line in sys.stdin:
        op, path = json.loads(line)
        out = {"ok": True}
        try:
            if op == "cli":
                err = io.StringIO()
                os.environ["RECON_DEBUG"] = "1"  # exceptions propagate: their types are checked below
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    out["rc"] = main(["mri", path, "-o", path + ".out/", "--method", "zf", "-q", "--overwrite"])
            else:
                OPS[op](path)
        except BaseException as exc:
            msg = str(exc)
            out = {"ok": False, "type": type(exc).__name__, "message": msg,
                   "allowed": isinstance(exc, (ValueError, FileNotFoundError)) and "\n" not in msg.strip()}
        print(json.dumps(out), flush=True)
""")


class Worker:
    """One long-lived reader process (imports once); restarted after a crash or a hang."""

    def __init__(self):
        self.p = None

    def _start(self):
        env = python_env(drop=("RECON_MAX_READ_BYTES",), OMP_NUM_THREADS="1", RECON_NUM_THREADS="1")
        self.p = popen_python(WORKER, env, str(MEMORY_CAP), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)

    def run(self, op, path):
        if self.p is None or self.p.poll() is not None:
            self._start()
        self.p.stdin.write(json.dumps([op, str(path)]) + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], CASE_TIMEOUT_S)
        if not ready:
            self.close()
            return {"ok": False, "type": "hang", "message": f"no answer in {CASE_TIMEOUT_S} s", "allowed": False}
        line = self.p.stdout.readline()
        if not line:
            rc = self.p.wait()
            err = self.p.stderr.read()[-2000:]
            self.p = None
            return {"ok": False, "type": "crash", "message": f"worker died (exit {rc}): {err}", "allowed": False}
        return json.loads(line)

    def close(self):
        if self.p is not None:
            self.p.kill()
            self.p.wait()
            self.p = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def keep(tmp_path_factory):
    """Folder for the failing files (their paths are in the failure message): $RECON_FUZZ_FAILURES
    when set (pytest's temporary folders are pruned), else a temporary folder."""
    d = os.environ.get("RECON_FUZZ_FAILURES")
    if d:
        os.makedirs(d, exist_ok=True)
        return __import__("pathlib").Path(d)
    return tmp_path_factory.mktemp("fuzz_failures")


def _check(worker, keep, ops, path):
    for op in ops:
        r = worker.run(op, path)
        if op == "cli" and r["ok"]:
            assert r["rc"] in (0, 1), r
            continue
        if not r["ok"] and not r["allowed"]:
            kept = keep / f"{len(os.listdir(keep))}_{os.path.basename(path)}"
            shutil.copy(path, kept)
            pytest.fail(f"{op} on {kept}: {r['type']}: {r['message'][:500]}")


# ---- seed files --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from fastmri_data import generate_sample

    d = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    crandn = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(np.complex64)  # noqa: E731
    generate_sample(d / "fastmri.h5", num_slices=2, shape=(16, 12), num_coils=2)
    write_ismrmrd(d / "cart.h5", crandn(2, 2, 8, 8), noise=crandn(2, 16))
    ang = np.arange(6) * np.pi / 6
    r = np.arange(8) - 4.0
    coord = np.stack([r[None] * np.sin(ang[:, None]), r[None] * np.cos(ang[:, None])], -1)
    write_ismrmrd(d / "radial.h5", samples=crandn(2, 6, 8), trajectory=coord, image_shape=(8, 8))
    write_dicom_series(d / "dcm", rng.random((1, 8, 8)), (1.0, 1.0, 1.0))
    return Seeds(fastmri=(d / "fastmri.h5").read_bytes(), cart=(d / "cart.h5").read_bytes(),
                 radial=(d / "radial.h5").read_bytes(), dicom=(d / "dcm" / "slice_0000.dcm").read_bytes())


class Seeds(dict):
    """The seed files' bytes (a short repr: Hypothesis prints the arguments of a failing case)."""

    def __init__(self, **files):
        super().__init__(files)

    def __repr__(self):
        return f"Seeds({', '.join(self)})"


OPS = {"fastmri": ("fastmri", "raw"), "cart": ("ismrmrd", "raw"), "radial": ("ismrmrd", "raw"), "dicom": ("dicom",)}


# ---- byte-level damage ---------------------------------------------------------------------------------

@fuzz(250)
@given(kind=st.sampled_from(sorted(OPS)), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=12), truncate=st.booleans())
def test_damaged_bytes(worker, keep, seeds, tmp_path, kind, cut, flips, truncate):
    b = bytearray(seeds[kind])
    for pos, bit in flips:
        b[int(pos * len(b))] ^= 1 << bit
    if truncate:
        b = b[: int(cut * len(b))]
    p = tmp_path / f"{kind}.bin"
    p.write_bytes(bytes(b))
    _check(worker, keep, OPS[kind], p)


# ---- structure-level damage: fastMRI -------------------------------------------------------------------

BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                  + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
                  + ']><ismrmrdHeader>&i;</ismrmrdHeader>')
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                   '<ismrmrdHeader><encoding>&e;</encoding></ismrmrdHeader>')


def _xml(draw_matrix, draw_limits, trajectory):
    enc = tuple(draw_matrix)
    try:
        return build_ismrmrd_header(enc, (100.0, 100.0, 5.0), limits=draw_limits, trajectory=trajectory)
    except (ValueError, TypeError):  # the builder refuses some of what the fuzzer asks for
        return "<ismrmrdHeader/>"


U16 = st.integers(0, 65535)
headers = st.one_of(
    st.builds(_xml, st.tuples(U16, U16, U16), st.one_of(st.none(), st.fixed_dictionaries(
        {"kspace_encoding_step_1": st.tuples(U16, U16, U16)})), st.sampled_from(["cartesian", "radial"])),
    st.sampled_from([BILLION_LAUGHS, EXTERNAL_ENTITY, "", "<", "<ismrmrdHeader/>", "\udcff", "x" * 100,
                     build_ismrmrd_header((16, 12, 1), (1.0, 1.0, 1.0)).replace("<x>16</x>", "<x>-16</x>"),
                     build_ismrmrd_header((16, 12, 1), (1.0, 1.0, 1.0)).replace("<x>16</x>", "<x>1e999</x>")]),
    st.binary(max_size=64))
DTYPES = ["complex64", "complex128", "float32", "int16", "S4", "bool"]


@fuzz(200)
@given(shape=st.lists(st.one_of(st.integers(0, 6), st.sampled_from([2**20, 2**31, 2**40])), min_size=0, max_size=5),
       dtype=st.sampled_from(DTYPES), header=headers, target=st.sampled_from([None, "ok", "wrong", "huge", "string"]),
       mask=st.sampled_from([None, "ok", "2d", "huge"]), link=st.sampled_from([None, "external", "soft", "storage"]),
       header_shape=st.sampled_from([(), (1,), (3,), (2**30,)]), extra=st.booleans())
def test_malformed_fastmri(worker, keep, seeds, tmp_path, shape, dtype, header, target, mask, link, header_shape,
                           extra):
    p = tmp_path / "f.h5"
    shape = tuple(shape)
    huge = any(s >= 2**20 for s in shape)
    with h5py.File(p, "w") as f:
        if link == "external":
            src = tmp_path / "src.h5"
            src.write_bytes(seeds["fastmri"])
            f["kspace"] = h5py.ExternalLink(str(src), "/kspace")
        elif link == "storage":
            (tmp_path / "blob").write_bytes(bytes(range(256)) * 16)
            f.create_dataset("kspace", (1, 1, 4, 4), np.complex64, external=[(str(tmp_path / "blob"), 0, 4096)])
        else:
            kw = {"chunks": tuple(max(1, min(s, 4)) for s in shape)} if huge and len(shape) and 0 not in shape else {}
            try:
                ds = f.create_dataset("kspace" if link is None else "hidden", shape, np.dtype(dtype), **kw)
                if not huge and ds.size:
                    ds[...] = np.ones(shape, np.dtype(dtype)) if dtype != "S4" else b"ab"
            except (ValueError, TypeError, OverflowError):
                f.create_dataset("kspace" if link is None else "hidden", data=np.zeros(3))
            if link == "soft":
                f["kspace"] = h5py.SoftLink("/hidden")
        h = header.encode("utf-8", "surrogateescape") if isinstance(header, str) else header
        try:
            if header_shape == ():
                f["ismrmrd_header"] = np.void(h)
            else:
                f.create_dataset("ismrmrd_header", header_shape, h5py.string_dtype(),
                                 chunks=True if header_shape[0] > 3 else None)
        except ValueError:  # h5py refuses to store this header (empty opaque data)
            f["ismrmrd_header"] = b"<ismrmrdHeader/>"
        n0 = shape[0] if shape else 1
        if target == "ok":
            f["reconstruction_rss"] = np.ones((n0 if n0 < 2**20 else 1, 4, 4), np.float32)
        elif target == "wrong":
            f["reconstruction_rss"] = np.ones((2, 3), np.float32)
        elif target == "huge":
            f.create_dataset("reconstruction_rss", (max(n0, 1) if n0 < 2**20 else n0, 2**20, 2**20), np.float32,
                             chunks=(1, 64, 64))
        elif target == "string":
            f["reconstruction_rss"] = "not an image"
        if mask == "ok":
            f["mask"] = np.ones(shape[-1] if shape and shape[-1] < 2**20 else 4, np.float32)
        elif mask == "2d":
            f["mask"] = np.ones((3, 3), np.complex64)
        elif mask == "huge":
            f.create_dataset("mask", (2**40,), np.float32, chunks=(1024,))
        if extra:
            f["extra"] = np.zeros(5)
            f.attrs["max"] = np.nan
    _check(worker, keep, ("fastmri", "raw"), p)


# ---- structure-level damage: ISMRMRD -------------------------------------------------------------------

HEAD_FIELDS = ["number_of_samples", "active_channels", "trajectory_dimensions", "discard_pre", "discard_post",
               "center_sample", "encoding_space_ref", "flags", "sample_time_us", "read_dir", "position"]
COUNTERS = ["kspace_encode_step_1", "kspace_encode_step_2", "average", "slice", "contrast", "phase", "repetition",
            "set"]


@fuzz(250)
@given(kind=st.sampled_from(["cart", "radial"]),
       edits=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(HEAD_FIELDS + COUNTERS),
                                st.one_of(st.integers(0, 2**16 - 1), st.sampled_from([2**63, 2**24 + 1, 1 << 18]),
                                          st.floats(allow_nan=True, allow_infinity=True))), max_size=6),
       data_edit=st.sampled_from([None, "short", "long", "nan", "empty"]), header=st.one_of(st.none(), headers),
       waveforms=st.sampled_from([None, "ok", "short", "huge_declared"]), drop=st.sampled_from([None, "xml", "data"]))
def test_malformed_ismrmrd(worker, keep, seeds, tmp_path, kind, edits, data_edit, header, waveforms, drop):
    p = tmp_path / "m.h5"
    p.write_bytes(seeds[kind])
    with h5py.File(p, "r+") as f:
        g = f["dataset"]
        table = g["data"][()]
        n = len(table)
        for i, name, value in edits:
            row = table["head"][i % n]
            target = row["idx"] if name in COUNTERS else row
            try:
                with np.errstate(all="ignore"):
                    target[name] = value
            except (OverflowError, ValueError, TypeError):
                pass
            table["head"][i % n] = row
        if data_edit is not None:
            d = table["data"][0]
            table["data"][0] = {"short": d[:-3], "long": np.r_[d, d], "nan": np.full_like(d, np.nan),
                                "empty": d[:0]}[data_edit]
        del g["data"]
        if drop != "data":
            g.create_dataset("data", data=table, maxshape=(None,), chunks=True)
        if drop == "xml":
            del g["xml"]
        elif header is not None:
            del g["xml"]
            x = g.create_dataset("xml", (1,), h5py.special_dtype(vlen=bytes))
            try:
                x[0] = header.encode("utf-8", "surrogateescape") if isinstance(header, str) else header
            except ValueError:  # h5py refuses embedded NUL bytes in variable-length strings
                x[0] = b"<"
        if waveforms is not None:
            from recon.io.ismrmrd import _wav_dtype

            w = np.zeros(2, _wav_dtype())
            w["head"]["number_of_samples"], w["head"]["channels"] = 4, 1
            w["data"][0] = w["data"][1] = np.arange(4 if waveforms == "ok" else 3, dtype=np.uint32)
            if waveforms == "huge_declared":
                w["head"]["number_of_samples"], w["head"]["channels"] = 65535, 65535
            g.create_dataset("waveforms", data=w)
    _check(worker, keep, ("ismrmrd", "raw"), p)


# ---- DICOM ---------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the values the fuzzer sets
@fuzz(80)
@given(attr=st.sampled_from(["Rows", "Columns", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing",
                             "PixelData", "BitsAllocated", "RescaleSlope", "NumberOfFrames"]),
       value=st.one_of(st.none(), st.integers(-1, 2**16 - 1), st.sampled_from(["", "nan", "1\\2", b"\0" * 3])))
def test_malformed_dicom(worker, keep, seeds, tmp_path, attr, value):
    import pydicom

    p = tmp_path / "x.dcm"
    p.write_bytes(seeds["dicom"])
    ds = pydicom.dcmread(p)
    try:
        if value is None:
            delattr(ds, attr)
        else:
            setattr(ds, attr, value)
        ds.save_as(p, enforce_file_format=False)
    except Exception:  # pydicom refuses some values itself: that file is not written
        return
    _check(worker, keep, ("dicom",), p)


# ---- recon mri on damaged files ------------------------------------------------------------------------

@fuzz(30)
@given(kind=st.sampled_from(["fastmri", "cart", "radial"]), flips=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=6))
def test_cli_on_damaged_files(worker, keep, seeds, tmp_path, kind, flips):
    b = bytearray(seeds[kind])
    for pos, bit in flips:
        b[int(pos * len(b))] ^= 1 << bit
    p = tmp_path / f"{kind}.h5"
    p.write_bytes(bytes(b))
    _check(worker, keep, ("cli",), p)


def test_xml_attacks_are_refused():
    from recon.io import HeaderError, parse_ismrmrd_header

    for xml in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        with pytest.raises(HeaderError, match="document type or entities"):
            parse_ismrmrd_header(xml)


def test_zero_size_heap_free_space_is_refused_not_hung(tmp_path):
    """Found by this fuzzer: one flipped bit in a global heap object's size lets libhdf5's walk over
    the collection reach a free-space entry of size 0, where it loops forever holding the GIL."""
    rng = np.random.default_rng(0)
    p = write_ismrmrd(tmp_path / "c.h5", (rng.standard_normal((1, 2, 4, 8)) + 0j).astype(np.complex64))
    b = bytearray(open(p, "rb").read())
    at = b.find(b"GCOL\x01\x00\x00\x00")
    pos, end = at + 16, at + int.from_bytes(b[at + 8:at + 16], "little")
    while int.from_bytes(b[pos:pos + 2], "little") != 0:  # to the free-space entry
        pos += 16 + (int.from_bytes(b[pos + 8:pos + 16], "little") + 7) // 8 * 8
    assert pos + 16 <= end
    b[pos + 8:pos + 16] = bytes(8)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(b))
    code = ("import recon.io as rio\ntry:\n    rio.read_ismrmrd(%r)\nexcept rio.IsmrmrdFormatError as e:\n"
            "    print(e)" % str(bad))
    r = run_python(code, 60)
    assert "corrupt HDF5 global heap" in r.stdout, r.stderr


def test_damaged_table_datatype_is_refused(tmp_path):
    """Found by this fuzzer: a flipped bit made the file's ``sample_time_us`` 8 bytes wide inside a
    340-byte header; libhdf5's conversion then wrote out of place and h5py handed back garbage
    pointers (a segfault). The table's datatype is now checked field by field before reading."""
    from recon.io import IsmrmrdFormatError, read_ismrmrd
    from recon.io.ismrmrd import _acq_dtype

    good = _acq_dtype()
    head = [(n, "<f8" if n == "sample_time_us" else good["head"].fields[n][0]) for n in good["head"].names]
    bad = np.dtype([("head", np.dtype(head)), ("traj", good["traj"]), ("data", good["data"])])
    p = write_ismrmrd(tmp_path / "c.h5", np.ones((1, 2, 4, 8), np.complex64))
    with h5py.File(p, "r+") as f:
        t = f["dataset/data"][()]
        del f["dataset/data"]
        u = np.zeros(len(t), bad)
        for n in good["head"].names:
            u["head"][n] = t["head"][n]
        u["traj"], u["data"] = t["traj"], t["data"]
        f["dataset"].create_dataset("data", data=u)
    with pytest.raises(IsmrmrdFormatError, match="damaged datatype: sample_time_us is float64"):
        read_ismrmrd(p)
