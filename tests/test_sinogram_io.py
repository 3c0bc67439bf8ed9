"""Plain sinogram files and geometry files (recon/io/sinogram.py)."""

import json
import math

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile

from recon.geometry import ConeBeam3D, FanBeam2D, ParallelBeam2D
from recon.io.sinogram import (
    SinogramFileError,
    read_array,
    read_geometry_file,
    read_sinogram,
    write_geometry_file,
)

FAN = FanBeam2D(np.linspace(0, 2 * np.pi, 12, endpoint=False), 24, 1.5, 300.0, 200.0, "arc", (16, 16))
CONE = ConeBeam3D(np.linspace(0, 2 * np.pi, 6, endpoint=False), (10, 20), 1.2, 300.0, 200.0, (4, 12, 12))


def sino_for(g, seed=0):
    return np.random.default_rng(seed).uniform(0, 3, g.sino_shape).astype(np.float32)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_geometry_file_round_trip(tmp_path, suffix):
    p = write_geometry_file(tmp_path / f"g{suffix}", FAN, units="counts", blank=1e4, layout="bins,views")
    g, fields = read_geometry_file(p)
    assert g == FAN
    assert fields == {"units": "counts", "blank": 1e4, "layout": "bins,views"}


def test_geometry_file_conveniences_and_errors(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("kind: ParallelBeam2D\nangles_deg: {start: 0, stop: 180, count: 90}\ndet_count: 32\n"
                 "image_shape: [16, 16]\n")
    g, _ = read_geometry_file(p)
    assert isinstance(g, ParallelBeam2D) and g.n_views == 90
    assert g.angles[1] == pytest.approx(2 * math.pi / 180)
    p.write_text(json.dumps({"kind": "FanBeam2D", "angles": {"start": 0, "stop": 6.283185307179586, "count": 8},
                             "det_count": 24, "det_spacing": 1.5, "source_origin": 300, "origin_det": 200,
                             "detector": "arc", "image_shape": [16, 16]}))
    assert read_geometry_file(p)[0].n_views == 8
    cases = [
        ("kind: FanBeam2D\nangles: [0, 1]\n", "FanBeam2D needs field"),
        ("kind: Fan\n", "field 'kind' must be one of"),
        ("kind: ParallelBeam2D\nangles: [0, 1]\ndet_count: 32\nimage_shape: [16, 16]\nspacing: 1\n", "no field"),
        ("kind: ParallelBeam2D\nangles: [0, 1]\ndet_count: -3\nimage_shape: [16, 16]\n", "det_count"),
        ("kind: ParallelBeam2D\nangles: [0, 1]\nangles_deg: [0, 1]\n", "not both"),
        ("kind: ParallelBeam2D\nangles_deg: {start: 0, count: 3}\n", "needs start, stop, count"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("kind: [unclosed\n", "not valid JSON or YAML"),
        ("{\"kind\": ", "not valid JSON"),
    ]
    for text, match in cases:
        p.write_text(text)
        with pytest.raises(SinogramFileError, match=match):
            read_geometry_file(p)
    p.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SinogramFileError, match="not a text"):
        read_geometry_file(p)
    with pytest.raises(FileNotFoundError):
        read_geometry_file(tmp_path / "missing.json")


def test_npy_with_layout_and_blank_file(tmp_path):
    s = sino_for(FAN)
    np.save(tmp_path / "s.npy", s.T.copy())  # stored (bins, views)
    np.save(tmp_path / "blank.npy", np.full(24, 5e4))
    g = write_geometry_file(tmp_path / "g.json", FAN, layout="bins,views", units="counts", blank="blank.npy",
                            dark=10.0)
    out = read_sinogram(tmp_path / "s.npy", g)
    np.testing.assert_array_equal(out.sinogram, s)
    assert out.geometry == FAN and out.units == "counts" and out.dark == 10.0
    np.testing.assert_array_equal(out.blank, np.full(24, 5e4))


def test_hdf5_named_only_and_astra_layout(tmp_path):
    s = sino_for(CONE)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["meta/sino"] = np.transpose(s, (1, 0, 2))  # ASTRA (rows, views, cols)
    out = read_sinogram(tmp_path / "a.h5", CONE, layout="rows,views,cols")  # the only 3D array
    np.testing.assert_array_equal(out.sinogram, s)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"] = s
        f["y"] = s
        f["note"] = np.arange(3)
    with pytest.raises(SinogramFileError, match="expected exactly one 2D/3D numeric array, found /x, /y"):
        read_sinogram(tmp_path / "b.h5", CONE)
    np.testing.assert_array_equal(read_sinogram(tmp_path / "b.h5", CONE, dataset="y").sinogram, s)
    with pytest.raises(SinogramFileError, match="no dataset 'z'"):
        read_sinogram(tmp_path / "b.h5", CONE, dataset="z")


def test_hdf5_safety(tmp_path):
    secret = tmp_path / "other.h5"
    with h5py.File(secret, "w") as f:
        f["s"] = sino_for(FAN)
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f["s"] = h5py.ExternalLink(str(secret), "/s")
        f["soft"] = h5py.SoftLink("/s")
    for name, match in (("s", "external link"), ("soft", "is a soft link")):
        with pytest.raises(SinogramFileError, match=match):
            read_sinogram(tmp_path / "ext.h5", FAN, dataset=name)
    with pytest.raises(SinogramFileError, match="found none"):  # links are not followed when searching
        read_sinogram(tmp_path / "ext.h5", FAN)
    raw = tmp_path / "raw.bin"
    sino_for(FAN).tofile(raw)
    with h5py.File(tmp_path / "extstore.h5", "w") as f:
        f.create_dataset("s", shape=FAN.sino_shape, dtype="f4", external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
    with pytest.raises(SinogramFileError, match="external storage"):
        read_sinogram(tmp_path / "extstore.h5", FAN, dataset="s")


def test_mat_v5_and_v73(tmp_path):
    s = sino_for(FAN)
    scipy.io.savemat(tmp_path / "a.mat", {"sino": s.astype(np.float64), "label": "x"})
    np.testing.assert_array_equal(read_sinogram(tmp_path / "a.mat", FAN).sinogram, s)
    with pytest.raises(SinogramFileError, match="no numeric variable 'nope'"):
        read_sinogram(tmp_path / "a.mat", FAN, dataset="nope")
    # v7.3: an HDF5 file after a 512-byte MATLAB header, arrays stored transposed (MATLAB is column-major)
    p = tmp_path / "b.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        f["sino"] = s.T
    with open(p, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116, b" "))
    np.testing.assert_array_equal(read_sinogram(p, FAN).sinogram, s)


def test_tiff_stack(tmp_path):
    s = sino_for(CONE)
    tifffile.imwrite(tmp_path / "s.tif", s)
    np.testing.assert_array_equal(read_sinogram(tmp_path / "s.tif", CONE).sinogram, s)
    tifffile.imwrite(tmp_path / "p.tif", sino_for(FAN))
    np.testing.assert_array_equal(read_array(tmp_path / "p.tif"), sino_for(FAN))


def test_bad_data_files(tmp_path):
    s = sino_for(FAN)
    np.save(tmp_path / "wrong.npy", s[:, :20])
    with pytest.raises(SinogramFileError, match=r"shape \(12, 20\).*needs \(12, 24\)"):
        read_sinogram(tmp_path / "wrong.npy", FAN)
    bad = s.copy()
    bad[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(SinogramFileError, match=r"1 NaN/Inf value\(s\), first at index \(3, 4\)"):
        read_sinogram(tmp_path / "nan.npy", FAN)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SinogramFileError, match="not a readable .npy"):
        read_sinogram(tmp_path / "obj.npy", FAN)
    np.save(tmp_path / "ok.npy", s)
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(SinogramFileError, match="not a readable .npy"):
        read_sinogram(tmp_path / "cut.npy", FAN)
    (tmp_path / "junk.bin").write_bytes(b"hello world" * 20)
    with pytest.raises(SinogramFileError, match="unknown data format"):
        read_sinogram(tmp_path / "junk.bin", FAN)
    (tmp_path / "cut.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(SinogramFileError, match="HDF5"):
        read_sinogram(tmp_path / "cut.h5", FAN)
    (tmp_path / "cut.tif").write_bytes(b"II*\x00" + b"\x00" * 10)
    with pytest.raises(SinogramFileError, match="TIFF"):
        read_sinogram(tmp_path / "cut.tif", FAN)
    with pytest.raises(SinogramFileError, match="field 'layout'"):
        read_sinogram(tmp_path / "ok.npy", FAN, layout="views,rows")
    with pytest.raises(SinogramFileError, match="field 'units'"):
        read_sinogram(tmp_path / "ok.npy", FAN, units="HU")
    with pytest.raises(SinogramFileError, match="field 'blank' of shape \\(5,\\) does not broadcast"):
        read_sinogram(tmp_path / "ok.npy", dict(FAN.to_dict(), blank=[1, 2, 3, 4, 5]))
    with pytest.raises(SinogramFileError, match="3D"):
        read_sinogram(tmp_path / "ok.npy", CONE)
    with pytest.raises(SinogramFileError, match="geometry: from_dict"):
        read_sinogram(tmp_path / "ok.npy", {"kind": "FanBeam2D"})
