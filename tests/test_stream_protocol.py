"""MRD v1 messages without a server: framing (``recon.io.mrd_stream``) against the ``ismrmrd``
package's byte layout, limits and damage, recorded streams read as RawData, the spool (log,
conversion to ISMRMRD HDF5, recovery), MRD images with their header and meta, and the pipelines'
parameter parsing."""

from __future__ import annotations

import ctypes
import io
import json
import os
import struct

import numpy as np
import pytest

from recon.io import read_ismrmrd, read_raw, write_ismrmrd
from recon.io.mrd import (
    ACQ_HEAD_DTYPE,
    MRD_MESSAGE_ACQUISITION,
    MRD_MESSAGE_CLOSE,
    MRD_MESSAGE_CONFIG_FILE,
    MRD_MESSAGE_CONFIG_TEXT,
    MRD_MESSAGE_HEADER,
    MRD_MESSAGE_IMAGE,
    MRD_MESSAGE_TEXT,
    IsmrmrdFormatError,
)
from recon.io.mrd_stream import (
    MessageError,
    MessageLimits,
    StreamTruncated,
    encode_acquisition,
    encode_close,
    encode_config_file,
    encode_text,
    encode_waveform,
    read_message,
    read_mrd_stream,
)

ismrmrd = pytest.importorskip("ismrmrd")


def _reader(b: bytes):
    return io.BytesIO(b).read


def _small_file(path, rng, *, noise=True, slices=1):
    k = (rng.standard_normal((slices, 3, 8, 10)) + 1j * rng.standard_normal((slices, 3, 8, 10))).astype(np.complex64)
    nz = (rng.standard_normal((3, 32)) + 1j * rng.standard_normal((3, 32))).astype(np.complex64) if noise else None
    write_ismrmrd(path, k, noise=nz)
    return read_ismrmrd(path)


def _waveform(rng, n=1, stamps=(7,)):
    from recon.io import Waveforms
    from recon.io.mrd import WAVEFORM_HEAD_DTYPE, WAVEFORM_RESPIRATORY

    head = np.zeros(n, WAVEFORM_HEAD_DTYPE)
    head["number_of_samples"], head["channels"], head["waveform_id"] = 6, 1, WAVEFORM_RESPIRATORY
    head["time_stamp"] = stamps
    return Waveforms(head, [rng.integers(0, 4096, (1, 6)).astype(np.uint32) for _ in range(n)])


def test_the_client_sends_waveforms_where_their_time_stamps_fall(tmp_path, rng):
    from recon.stream.client import _order

    raw = _small_file(tmp_path / "a.h5", rng)
    acq = raw.acquisitions
    acq.head["acquisition_time_stamp"] = 5 + np.arange(len(acq)) * 10
    order = _order(acq, _waveform(rng, 3, (0, 25, 10_000)))  # before all, at acquisition 2's time, after all
    assert order[0] == ("w", 0) and order[order.index(("a", 2)) - 1] == ("w", 1) and order[-1] == ("w", 2)
    assert [i for k, i in order if k == "a"] == list(range(len(acq)))
    assert _order(acq, None) == [("a", i) for i in range(len(acq))]


def _stream_bytes(raw, config="recon-sense", close=True) -> bytes:
    acq = raw.acquisitions
    out = [encode_config_file(config), encode_text(MRD_MESSAGE_HEADER, raw.header.xml)]
    out += [encode_acquisition(acq.head[i], acq.traj[i], acq.data[i]) for i in range(len(acq))]
    return b"".join(out + ([encode_close()] if close else []))


# ---- framing -------------------------------------------------------------------------------------------


def test_messages_round_trip_and_match_the_ismrmrd_package(tmp_path, rng):
    raw = _small_file(tmp_path / "a.h5", rng)
    acq = raw.acquisitions
    # an acquisition message is the package's serialisation after the id, byte for byte
    a = ismrmrd.Acquisition(acq.head[1].tobytes())
    a.data[:] = acq.data[1]
    chunks = []
    a.serialize_into(chunks.append)
    theirs = struct.pack("<H", MRD_MESSAGE_ACQUISITION) + b"".join(bytes(c) for c in chunks)
    assert encode_acquisition(acq.head[1], acq.traj[1], acq.data[1]) == theirs
    stream = _stream_bytes(raw) + encode_text(MRD_MESSAGE_TEXT, "héllo")
    read = _reader(stream)
    msgs = []
    while (m := read_message(read)) is not None:
        msgs.append(m)
    assert [m.id for m in msgs] == [MRD_MESSAGE_CONFIG_FILE, MRD_MESSAGE_HEADER] + [MRD_MESSAGE_ACQUISITION] * len(acq) \
        + [MRD_MESSAGE_CLOSE, MRD_MESSAGE_TEXT]
    assert msgs[0].text == "recon-sense" and msgs[1].text == raw.header.xml and msgs[-1].text == "héllo"
    assert b"".join(m.raw for m in msgs) == stream  # what a spool records is exactly what came
    # the package reads our acquisition bodies
    back = ismrmrd.Acquisition.deserialize_from(_reader(bytes(msgs[3].body)))
    np.testing.assert_array_equal(back.data, acq.data[1])


def test_text_messages_carry_a_terminating_nul_as_fire_sends():
    m = encode_text(MRD_MESSAGE_CONFIG_TEXT, "abc")
    assert m == struct.pack("<HI", 2, 4) + b"abc\0"
    assert read_message(_reader(m)).text == "abc"
    assert encode_config_file("x")[2:] == b"x" + b"\0" * 1023
    with pytest.raises(ValueError, match="1023"):
        encode_config_file("x" * 1024)


@pytest.mark.parametrize("damage,match", [
    (struct.pack("<H", 999) + b"junk", "unknown message id 999"),
    (b"\x17", "inside a message id"),
    (struct.pack("<HI", MRD_MESSAGE_TEXT, 2 << 20) + b"x", "exceeds the limit"),
    (struct.pack("<HI", MRD_MESSAGE_HEADER, 10) + b"short", "ends inside a HEADER"),
    (struct.pack("<HI", MRD_MESSAGE_HEADER, 2) + b"\xff\xfe", "not UTF-8"),
    (struct.pack("<H", MRD_MESSAGE_IMAGE) + b"\0" * 300, "IMAGE messages"),
])
def test_damaged_messages_raise_one_line_errors(damage, match):
    with pytest.raises(MessageError, match=match) as e:
        read_message(_reader(damage))
    assert "\n" not in str(e.value)


def test_acquisition_limits_are_checked_before_reading(tmp_path, rng):
    raw = _small_file(tmp_path / "a.h5", rng)
    h = raw.acquisitions.head[3].copy()
    msg = encode_acquisition(h, None, raw.acquisitions.data[3])
    with pytest.raises(MessageError, match="active_channels 3 exceeds the limit of 2"):
        read_message(_reader(msg), MessageLimits(max_channels=2))
    with pytest.raises(MessageError, match="bytes of trajectory and data"):
        read_message(_reader(msg), MessageLimits(max_message_bytes=100))
    h["number_of_samples"], h["active_channels"] = 65535, 1024  # declares 512 MiB: refused before reading it
    src = io.BytesIO(encode_acquisition(h))  # the header alone (no data given)
    reads = []

    def endless(n):  # a source that would deliver whatever is asked: only the limit stops the reader
        reads.append(n)
        return src.read(n) or b"\0" * n

    with pytest.raises(MessageError, match="bytes of trajectory and data 536862720 exceeds the limit of 67108864"):
        read_message(endless)
    assert reads == [2, ACQ_HEAD_DTYPE.itemsize]  # the id and the header, nothing of the declared data
    with pytest.raises(StreamTruncated):
        read_message(_reader(msg[:-5]))


# ---- recorded streams ------------------------------------------------------------------------------------


def test_a_recorded_stream_reads_like_the_file(tmp_path, rng):
    raw = _small_file(tmp_path / "a.h5", rng, slices=2)
    p = tmp_path / "rec.mrd"
    p.write_bytes(_stream_bytes(raw))
    back = read_raw(p)
    assert back.acquisitions == raw.acquisitions
    np.testing.assert_array_equal(back.kspace, raw.kspace)
    np.testing.assert_array_equal(back.noise, raw.noise)


def test_a_recording_cut_short_keeps_what_came_before(tmp_path, rng):
    raw = _small_file(tmp_path / "a.h5", rng)
    full = _stream_bytes(raw, close=False)
    cut = tmp_path / "cut.mrd"
    cut.write_bytes(full[:-7])
    with pytest.warns(RuntimeWarning, match="cut short"):
        back = read_mrd_stream(cut, views=False)
    assert len(back.acquisitions) == len(raw.acquisitions) - 1
    assert back.acquisitions == raw.acquisitions[: len(raw.acquisitions) - 1]
    nohead = tmp_path / "nohead.mrd"
    nohead.write_bytes(encode_config_file("recon-sense") + full[len(encode_config_file("x")) + 4 + len(raw.header.xml) + 3:])
    with pytest.raises(IsmrmrdFormatError, match="before the HEADER"):
        read_mrd_stream(nohead)
    garbage = tmp_path / "garbage.mrd"
    garbage.write_bytes(encode_config_file("x") + b"\xff\xff" * 10)
    with pytest.raises(IsmrmrdFormatError, match="unknown message id"):
        read_raw(garbage)


# ---- the spool -------------------------------------------------------------------------------------------


def test_spool_log_is_converted_to_ismrmrd_with_the_config(tmp_path, rng):
    import h5py

    from recon.stream.spool import Spool

    raw = _small_file(tmp_path / "a.h5", rng)
    sp = Spool(tmp_path / "spool")
    params = json.dumps({"parameters": {"iters": 3}})
    for chunk in (encode_config_file("recon-zf"), encode_text(MRD_MESSAGE_HEADER, raw.header.xml),
                  encode_text(MRD_MESSAGE_TEXT, params)):
        sp.append(chunk)
    acq = raw.acquisitions
    wav = _waveform(rng)
    for i in range(len(acq)):
        sp.append(encode_acquisition(acq.head[i], acq.traj[i], acq.data[i]))
        if i == 3:
            sp.append(encode_waveform(wav.head[0], wav.data[0]))
    assert sp.path.endswith(".mrd") and os.path.getsize(sp.path) == sp.nbytes
    out = sp.close()
    assert out.endswith(".h5") and not os.path.exists(sp.path)
    back = read_ismrmrd(out)
    assert back.acquisitions == acq and back.waveforms == wav
    with h5py.File(out) as f:
        assert f["dataset/config_file"][0] == b"recon-zf"
        assert json.loads(f["dataset/configAdditional"][0]) == {"parameters": {"iters": 3}}


def test_recover_converts_unlocked_logs_and_skips_live_ones(tmp_path, rng):
    from recon.stream.spool import Spool, recover

    raw = _small_file(tmp_path / "a.h5", rng)
    folder = tmp_path / "spool"
    live = Spool(folder)
    live.append(_stream_bytes(raw))
    left = folder / "20000101T000000Z-1-0.mrd"          # what a killed server leaves
    left.write_bytes(_stream_bytes(raw, close=False)[:-3])  # killed inside a write
    noheader = folder / "20000101T000000Z-1-1.mrd"
    noheader.write_bytes(encode_config_file("recon-zf"))
    empty = folder / "20000101T000000Z-1-2.mrd"
    empty.write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="no ISMRMRD header|not converted"):
        got = recover(folder)
    assert sorted(os.path.basename(p) for p in got) == ["20000101T000000Z-1-0.h5", "20000101T000000Z-1-1.mrd"]
    assert len(read_ismrmrd(folder / "20000101T000000Z-1-0.h5").acquisitions) == len(raw.acquisitions) - 1
    assert os.path.exists(live.path) and not empty.exists()
    assert read_ismrmrd(live.close()).acquisitions == raw.acquisitions


# ---- images ----------------------------------------------------------------------------------------------


def test_mrd_images_carry_geometry_counters_and_meta(tmp_path, rng):
    from recon.stream.images import image_meta, mrd_image
    from recon.stream.wire import image_bytes, read_image

    raw = _small_file(tmp_path / "a.h5", rng)
    h = raw.acquisitions.head[5].copy()
    h["position"] = (1.5, -2.0, 3.0)
    h["read_dir"], h["phase_dir"], h["slice_dir"] = (0, 1, 0), (1, 0, 0), (0, 0, -1)
    h["idx"]["slice"], h["idx"]["repetition"] = 4, 2
    h["acquisition_time_stamp"], h["physiology_time_stamp"] = 1234, (5, 6, 7)
    vals = rng.standard_normal((6, 7)).astype(np.float32)
    img = mrd_image(vals, h, fov_mm=(70.0, 60.0, 5.0), image_index=3, series=2, frame=9,
                    meta={"recon.method": "sense", "recon.parameters": {"lam": 0.001}})
    body = image_bytes(img)
    b, back = read_image(_reader(body), MessageLimits())
    assert b == body
    assert tuple(back.matrix_size) == (7, 6, 1) and back.data_type == 5 and back.image_type == 1
    np.testing.assert_array_equal(back.data[0, 0], vals)
    assert tuple(back.position) == (1.5, -2.0, 3.0) and tuple(back.slice_dir) == (0, 0, -1)
    assert tuple(back.field_of_view) == (70.0, 60.0, 5.0)
    assert (back.slice, back.repetition, back.phase, back.image_index, back.image_series_index) == (4, 2, 9, 3, 2)
    assert back.acquisition_time_stamp == 1234 and tuple(back.physiology_time_stamp) == (5, 6, 7)
    meta = image_meta(back)
    assert meta["recon.method"] == "sense" and json.loads(meta["recon.parameters"]) == {"lam": 0.001}
    # the package deserialises it too (the same layout)
    theirs = ismrmrd.Image.deserialize_from(_reader(body))
    np.testing.assert_array_equal(theirs.data, back.data)
    # an image declaring more data than the limit is refused before it is read
    with pytest.raises(MessageError, match="exceed"):
        read_image(_reader(body), MessageLimits(max_message_bytes=100))
    # attributes with entities (the package would expand them with the standard XML parser), or not
    # MRD meta at all, are refused as messages
    n_head = ctypes.sizeof(ismrmrd.ImageHeader)
    for attr in (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><ismrmrdMeta>&a;</ismrmrdMeta>', b"<other/>", b"<unclosed"):
        hostile = body[:n_head] + struct.pack("<Q", len(attr)) + attr + vals.tobytes()
        with pytest.raises(MessageError, match="IMAGE: "):
            read_image(_reader(hostile), MessageLimits())


# ---- pipeline parameters ----------------------------------------------------------------------------------


def test_config_text_and_parameters():
    from recon.mri.pipeline import ReconConfig
    from recon.stream.pipelines import (
        NetConfig,
        NetPipeline,
        PipelineError,
        SlicePipeline,
        config_from_params,
        parse_config_text,
    )

    assert parse_config_text("recon-cs") == ("recon-cs", {})
    assert parse_config_text('{"parameters": {"config": "recon-zf", "iters": "5", "foo": 1}}') == (
        "recon-zf", {"iters": "5", "foo": 1})
    assert parse_config_text('{"parameters": {"customconfig": "recon-cs", "config": "x"}}')[0] == "recon-cs"
    assert parse_config_text("<gadgetronStreamConfiguration/>") == (None, {})
    with pytest.raises(PipelineError, match="invalid JSON"):
        parse_config_text("{not json")
    cfg, ignored = config_from_params(ReconConfig(), {"iters": "5", "lam": "1e-2", "prewhiten": "false",
                                                      "maps": "walsh", "foo": 1, "method": "cs"},
                                      SlicePipeline.params)
    assert (cfg.iters, cfg.lam, cfg.prewhiten, cfg.maps, cfg.method) == (5, 0.01, False, "walsh", "sense")
    assert sorted(ignored) == ["foo", "method"]
    with pytest.raises(PipelineError, match="'iters'"):
        config_from_params(ReconConfig(), {"iters": "2.5"}, SlicePipeline.params)
    with pytest.raises(PipelineError, match="maps"):
        config_from_params(ReconConfig(), {"maps": "magic"}, SlicePipeline.params)
    cfg, ignored = config_from_params(NetConfig(), {"model": "modl-radial", "prewhiten": "no", "iters": 3},
                                      NetPipeline.params)
    assert (cfg.model, cfg.prewhiten, ignored) == ("modl-radial", False, ["iters"])
    for bad in ("lpd-fan", "../../etc/passwd", "modl-cartesian.safetensors"):  # CT weights, files: refused
        with pytest.raises(PipelineError, match="is not shipped MRI weights"):
            config_from_params(NetConfig(), {"model": bad}, NetPipeline.params)
