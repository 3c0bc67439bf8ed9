"""``recon serve`` for real: a server process on a free loopback port, driven by ``recon send`` (the
Python API and the command line) and by a client built only on the ``ismrmrd`` package and the
socket module (as python-ismrmrd-server's client is). Covered: per-slice images equal to ``recon
mri``'s, real-time frames equal to ``recon.mri.realtime``'s, 4 clients at once, a client that
disconnects mid-scan (spool complete, server still serving), malformed, oversized and unknown
messages, unknown configs, per-connection limits, busy and idle connections, SIGTERM (in-flight work
finished), SIGKILL (spool readable, reconstructable, recovered at the next start) and a worker that
dies."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from isolated import TESTS, python_env

from recon.io import read_ismrmrd, read_raw, write_ismrmrd
from recon.io.mrd import MRD_MESSAGE_HEADER
from recon.io.mrd_stream import encode_acquisition, encode_config_file, encode_text
from recon.stream import send

ismrmrd = pytest.importorskip("ismrmrd")

N = 32


# ---- a server process -------------------------------------------------------------------------------------


class ServerProcess:
    """``python -m recon.cli serve --port 0 ...`` in its own session (so SIGKILL can take the whole
    process group: the main process and its workers)."""

    def __init__(self, spool, *args, max_connections=4):
        self.spool = str(spool)
        cmd = [sys.executable, "-m", "recon.cli", "serve", "--port", "0", "--spool", self.spool, "--max-connections",
               str(max_connections), *map(str, args)]
        self.proc = subprocess.Popen(cmd, env=python_env(drop=("RECON_DEBUG",)), cwd=str(TESTS), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines = []
        self._cv = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()
        line = self.wait_for("listening on", 120)
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])

    def _drain(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_for(self, text, timeout=60.0, start=0) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"server never said {text!r}; it said:\n" + "\n".join(self.lines))
                self._cv.wait(min(left, 0.2))

    def workers(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def terminate(self, timeout=60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("spool"))
    yield s
    assert s.terminate() == 0


# ---- data --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartesian(tmp_path_factory):
    """Two 32x32 slices, 4 coils, noise scans, every second line outside a fully sampled centre."""
    from fastmri_data import phantom, simulate_coil_maps

    rng = np.random.default_rng(0)
    img = phantom(2, N, N)
    maps = simulate_coil_maps((N, N), num_coils=4)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img[:, None] * maps, axes=(-2, -1)), norm="ortho"),
                        axes=(-2, -1)).astype(np.complex64)
    k += 0.01 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)).astype(np.complex64)
    mask = np.zeros((1, 1, N), bool)
    mask[..., ::2] = True
    mask[..., N // 2 - 6:N // 2 + 6] = True
    noise = (rng.standard_normal((4, 256)) + 1j * rng.standard_normal((4, 256))).astype(np.complex64) * 0.01
    p = tmp_path_factory.mktemp("data") / "cart.h5"
    write_ismrmrd(p, k, mask=mask, noise=noise, fov_mm=(5.0, 200.0, 200.0))
    return p


@pytest.fixture(scope="module")
def radial():
    from recon.data import path

    return path("cardiac-radial")


def _spool_files(folder, suffix):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(suffix))


# ---- a client on the ismrmrd package only --------------------------------------------------------------


def ismrmrd_client(path, port, config):
    """python-ismrmrd-server's client, reduced: ids and lengths with struct, acquisitions and images
    with the ismrmrd package. Returns (images, texts, closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)

    def read_exactly(n):
        b = sock.recv(n, socket.MSG_WAITALL)
        if len(b) != n:
            raise EOFError
        return b

    images, texts, state = [], [], {}

    def receive():
        try:
            while True:
                (mid,) = struct.unpack("<H", read_exactly(2))
                if mid == 1022:
                    images.append(ismrmrd.Image.deserialize_from(read_exactly))
                elif mid == 5:
                    (n,) = struct.unpack("<I", read_exactly(4))
                    texts.append(read_exactly(n).split(b"\0", 1)[0].decode())
                elif mid == 4:
                    state["closed"] = True
                    return
        except EOFError:
            return

    rx = threading.Thread(target=receive)
    rx.start()
    sock.sendall(struct.pack("<H1024s", 1, config.encode()))
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        xml = dset.read_xml_header() + b"\0"
        sock.sendall(struct.pack("<HI", 3, len(xml)) + xml)
        for i in range(dset.number_of_acquisitions()):
            sock.sendall(struct.pack("<H", 1008))
            dset.read_acquisition(i).serialize_into(sock.sendall)
    sock.sendall(struct.pack("<H", 4))
    rx.join(120)
    sock.close()
    return images, texts, state.get("closed", False)


# ---- per slice ---------------------------------------------------------------------------------------------


def test_per_slice_images_equal_recon_mri(server, cartesian):
    from recon.mri import ReconConfig, reconstruct

    res = send(cartesian, port=server.port, config="recon-sense", params={"iters": "6"})
    assert res.closed and not res.errors and res.error is None and len(res.images) == 2
    ref = reconstruct(read_raw(cartesian), ReconConfig(iters=6, quiet=True))
    np.testing.assert_allclose(res.volume(), ref.volume, rtol=1e-6, atol=1e-6 * float(ref.volume.max()))
    raw = read_ismrmrd(cartesian)
    for i, (im, meta) in enumerate(zip(res.images, res.meta)):
        assert (im.slice, im.image_index, im.image_series_index) == (i, i + 1, 1)
        assert tuple(im.matrix_size) == (N, N, 1) and tuple(im.field_of_view) == pytest.approx((200, 200, 5))
        np.testing.assert_allclose(im.position, raw.slice_geometry[i]["position"])
        assert meta["recon.method"] == "sense" and '"iters": 6' in meta["recon.parameters"]
    assert res.latencies_ms.size == 2 and np.all(res.latencies_ms > 0)
    assert any(t.startswith("DBG recon: config recon-sense; 2 images") for t in res.texts)
    # the spool holds every acquisition, as sent
    line = server.wait_for(f"{res.local_address}: close; 2 images; ", 30)
    kept = line.split("spooled to ")[1].split(";")[0]
    assert read_ismrmrd(kept).acquisitions == raw.acquisitions


def test_calibration_lines_are_spooled_and_the_image_is_recon_mri_s(server, cartesian, tmp_path):
    """A separate reference scan (lines flagged ACQ_IS_PARALLEL_CALIBRATION only, sent before the
    imaging lines) is spooled and, as in ``recon mri``, does not enter the image."""
    from recon.io import Acquisitions, write_ismrmrd_raw
    from recon.io.mrd import ACQ_IS_NOISE_MEASUREMENT, ACQ_IS_PARALLEL_CALIBRATION, flag
    from recon.mri import ReconConfig, reconstruct

    raw = read_ismrmrd(cartesian)
    acq = raw.acquisitions
    noise = np.flatnonzero(acq.has_flag(ACQ_IS_NOISE_MEASUREMENT))
    imaging = np.flatnonzero(~acq.has_flag(ACQ_IS_NOISE_MEASUREMENT))
    centre = [i for i in imaging if abs(int(acq.head["idx"]["kspace_encode_step_1"][i]) - N // 2) < 4]
    order = np.concatenate([noise, centre, imaging])
    head = acq.head[order].copy()
    head["flags"][len(noise):len(noise) + len(centre)] = flag(ACQ_IS_PARALLEL_CALIBRATION)
    p = tmp_path / "with_ref.h5"
    write_ismrmrd_raw(p, raw.header.xml, Acquisitions(head, [acq.data[i] for i in order], [acq.traj[i] for i in order]))
    assert read_raw(p).calibration is not None  # the reader sees them as calibration lines
    res = send(p, port=server.port, config="recon-sense", params={"iters": "6"})
    assert res.closed and not res.errors and len(res.images) == 2
    ref = reconstruct(read_raw(cartesian), ReconConfig(iters=6, quiet=True))  # the file without them
    np.testing.assert_allclose(res.volume(), ref.volume, rtol=1e-6, atol=1e-6 * float(ref.volume.max()))
    line = server.wait_for(f"{res.local_address}: close; 2 images; ", 30)
    kept = read_ismrmrd(line.split("spooled to ")[1].split(";")[0]).acquisitions
    assert len(kept) == len(order) and np.array_equal(kept.head["flags"], head["flags"])


def test_zf_and_cs_configs_and_the_command_line(server, cartesian, tmp_path, capsys):
    import h5py

    from recon.cli import main
    from recon.mri import ReconConfig, reconstruct

    out = tmp_path / "zf.h5"
    assert main(["send", str(cartesian), "--port", str(server.port), "--config", "recon-zf", "-o", str(out), "-q"]) == 0
    ref = reconstruct(read_raw(cartesian), ReconConfig(method="zf", quiet=True))
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["reconstruction"][()], ref.volume, rtol=1e-6)
        assert f["dataset/image_1/data"].shape == (2, 1, 1, N, N)
    with ismrmrd.Dataset(str(out), "dataset", create_if_needed=False) as d:
        assert d.read_image("image_1", 1).slice == 1
    assert main(["send", str(cartesian), "--port", str(server.port), "-o", str(out)]) == 1  # never over an output
    assert "exists" in capsys.readouterr().err
    res = send(cartesian, port=server.port, config="recon-cs", params={"iters": 10, "regularizer": "tv"})
    ref = reconstruct(read_raw(cartesian), ReconConfig(method="cs", iters=10, regularizer="tv", quiet=True))
    np.testing.assert_allclose(res.volume(), ref.volume, rtol=1e-5, atol=1e-5 * float(ref.volume.max()))


def test_send_fails_when_no_image_comes_back(cartesian, tmp_path, monkeypatch, capsys):
    """A server that closes properly but sends nothing (python-ismrmrd-server's simplefft when its
    module raises) is a failure of ``recon send``, not an empty success."""
    from recon.cli import main
    from recon.stream import client

    monkeypatch.setattr(client, "send", lambda *a, **k: client.SendResult(closed=True, sent=45))
    out = tmp_path / "none.h5"
    assert main(["send", str(cartesian), "--config", "simplefft", "-o", str(out)]) == 1
    assert "the server sent no images for config 'simplefft'; nothing written" in capsys.readouterr().err
    assert not out.exists()


def test_send_realtime_keeps_the_pace_of_the_time_stamps(server, cartesian):
    raw = read_ismrmrd(cartesian)
    head = raw.acquisitions.head
    head["acquisition_time_stamp"] = 1000 + 4 * np.arange(len(head))   # 4 ticks apart
    res = send(raw, port=server.port, config="recon-zf", realtime=True, tick_us=2500.0)  # 4 x 2.5 ms = 10 ms
    assert res.closed and not res.errors and len(res.images) == 2
    t = np.array([res.send_times[int(c)] for c in head["scan_counter"]])  # each taken after its send
    due = (head["acquisition_time_stamp"] - 1000) * 2.5e-3                # s after the first acquisition
    assert np.all(t - res.started >= due)    # never ahead of the scanner (the first is sent after started)
    assert t[-1] - t[0] < due[-1] + 5.0      # and not stalled


def test_a_client_built_on_the_ismrmrd_package(server, cartesian):
    images, texts, closed = ismrmrd_client(cartesian, server.port, "recon-zf")
    assert closed and len(images) == 2 and not [t for t in texts if t.startswith("ERR")]
    res = send(cartesian, port=server.port, config="recon-zf")
    for a, b in zip(images, res.images):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.slice == b.slice and a.meta["recon.method"] == "zf"


def test_a_slice_that_fails_is_reported_and_the_others_go_on(server, cartesian, tmp_path):
    raw = read_ismrmrd(cartesian)
    k = raw.kspace_by_slice()[:, :, 0]          # (slice, coil, ky, kx)
    k[1] = 0                                     # slice 1: no signal at all
    p = tmp_path / "bad_slice.h5"
    write_ismrmrd(p, k)
    res = send(p, port=server.port, config="recon-zf")
    assert res.closed and len(res.images) == 1 and res.images[0].slice == 0
    assert any(t.startswith("ERR recon recon-zf: slice 1: ") and "all zero" in t for t in res.texts), res.texts


def test_net_config_runs_the_shipped_network_per_slice(server, cartesian, tmp_path):
    from recon.mri.noise import prewhiten
    from recon.nets import load, reconstruct_mri
    from recon.nets.infer import ModelCardWarning

    raw = read_ismrmrd(cartesian)
    one = tmp_path / "one_slice.h5"                # one slice keeps the test short: a network per slice is slow
    write_ismrmrd(one, raw.kspace_by_slice()[1:, :, 0], noise=raw.noise)
    res = send(one, port=server.port, config="recon-net")
    assert res.closed and not res.errors and len(res.images) == 1
    raw = read_raw(one)
    k, _ = prewhiten(raw.slices[0].kspace, raw.noise, scale=raw.noise_scale)
    with pytest.warns(ModelCardWarning, match="acceleration"):
        ref = np.abs(reconstruct_mri(k, load("modl-cartesian")))
    np.testing.assert_allclose(res.images[0].data[0, 0], ref, rtol=1e-5, atol=1e-5 * float(ref.max()))
    assert (res.meta[0]["recon.method"], res.meta[0]["recon.model"]) == ("net", "modl-cartesian")
    # the model card's warning (this mask is ~1.5x accelerated, the model was trained on 4x-8x) reaches the client
    assert any(t.startswith("WRN recon recon-net: slice 0: acceleration") for t in res.texts), res.texts
    res = send(one, port=server.port, config="recon-net", params={"model": "lpd-fan"})  # CT weights
    assert res.closed and not res.images
    assert any("model: 'lpd-fan' is not shipped MRI weights; valid: modl-cartesian, modl-radial" in t for t in res.texts)


# ---- real time ------------------------------------------------------------------------------------------------


def test_realtime_frames_equal_the_offline_frames(server, radial):
    from recon.mri.realtime import RealtimeConfig, RealtimeSession, reconstruct_realtime

    params = {"spokes_per_frame": 5, "window": 15, "method": "zf"}
    res = send(radial, port=server.port, config="recon-realtime", params=params)
    assert res.closed and not res.errors
    ref = reconstruct_realtime(read_raw(radial), RealtimeConfig(**params))
    frames = [int(m["recon.frame"]) for m in res.meta]
    assert frames == sorted(frames) and frames[-1] == 2  # the newest frame is always made
    assert len(frames) + int(res.meta[-1]["recon.frames_dropped"]) == 3  # made or dropped, none lost silently
    for im, f in zip(res.images, frames):
        np.testing.assert_allclose(im.data[0, 0], ref.magnitude[f], rtol=1e-5, atol=1e-5 * ref.magnitude.max())
        assert im.phase == f and im.user_int[0] == f
    # SENSE frames: the first frame made starts cold, with the maps of the first window: as offline
    params = {"spokes_per_frame": 5, "window": 15, "first_iters": 4, "virtual_coils": 4}
    res = send(radial, port=server.port, config="recon-realtime", params=params)
    assert res.closed and not res.errors
    first = int(res.meta[0]["recon.frame"])
    raw = read_raw(radial)
    session = RealtimeSession(raw.header, RealtimeConfig(**params))
    windows = [w for i in range(len(raw.acquisitions)) for w in session.add(raw.acquisitions.head[i],
                                                                            raw.acquisitions.traj[i],
                                                                            raw.acquisitions.data[i])]
    ref = session.reconstruct(windows[first]).magnitude
    np.testing.assert_allclose(res.images[0].data[0, 0], ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_realtime_refuses_cartesian_data(server, cartesian):
    res = send(cartesian, port=server.port, config="recon-realtime")
    assert res.closed and not res.images
    assert any(t.startswith("ERR recon: recon-realtime: real-time frames need 2D trajectories") for t in res.texts)


# ---- several clients, and clients that go wrong --------------------------------------------------------------


def test_four_clients_at_once(server, cartesian, radial):
    jobs = [(cartesian, "recon-sense", {"iters": 4}, 2), (cartesian, "recon-zf", None, 2),
            (cartesian, "recon-cs", {"iters": 5}, 2), (radial, "recon-realtime", {"spokes_per_frame": 5, "window": 15,
                                                                                  "method": "zf"}, None)]
    results = [None] * 4

    def run(i):
        path, config, params, _ = jobs[i]
        results[i] = send(path, port=server.port, config=config, params=params)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for (_, _, _, n), res in zip(jobs, results):
        assert res is not None and res.closed and not res.errors and res.error is None
        assert len(res.images) == n if n else len(res.images) >= 1


def test_a_client_that_disconnects_mid_scan(server, cartesian):
    res = send(cartesian, port=server.port, config="recon-sense", stop_after=20)
    assert res.sent == 20
    line = server.wait_for(f"{res.local_address}: disconnected;", 60)
    kept = line.split("spooled to ")[1].split(";")[0]
    raw = read_ismrmrd(cartesian)
    assert read_ismrmrd(kept).acquisitions == raw.acquisitions[:20]  # the 20 sent (noise scans first)
    res = send(cartesian, port=server.port, config="recon-zf")  # still serving
    assert res.closed and len(res.images) == 2


def _raw_session(port, *chunks, read_timeout=60):
    """Send bytes, then read the server's messages until CLOSE or EOF: (texts, closed, our address)."""
    from recon.stream.wire import Connection

    sock = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    address = "{}:{}".format(*sock.getsockname()[:2])
    try:
        for c in chunks:
            sock.sendall(c)
        sock.shutdown(socket.SHUT_WR)  # all sent: a message cut short stays cut short
    except OSError:
        pass
    conn = Connection(sock)
    texts, closed = [], False
    try:
        while True:
            m = conn.read()
            if m is None:
                break
            if m.id == 5:
                texts.append(m.text)
            if m.id == 4:
                closed = True
                break
    except OSError:
        pass
    sock.close()
    return texts, closed, address


def _hello(xml):
    return encode_config_file("recon-zf") + encode_text(MRD_MESSAGE_HEADER, xml)


def test_malformed_and_oversized_messages_close_that_connection_only(server, cartesian):
    raw = read_ismrmrd(cartesian)
    acq = raw.acquisitions
    good = encode_acquisition(acq.head[5], acq.traj[5], acq.data[5])
    h = acq.head[5]
    cases = {  # what the client sends after two good acquisitions -> what the server says
        "garbage": (b"\x13\x37" * 50, "unknown message id"),
        "unknown id": (struct.pack("<H", 1001) + b"\0" * 64, "unknown message id 1001"),
        "channels": (encode_acquisition(_with(h, active_channels=5000))[:400], "active_channels 5000 exceeds the limit"),
        "samples": (encode_acquisition(_with(h, number_of_samples=60000, active_channels=1000))[:400],
                    "bytes of trajectory and data"),
        "text size": (struct.pack("<HI", 5, 64 << 20), "TEXT message: length 67108864 exceeds"),
        "image": (struct.pack("<H", 1022) + b"\0" * 300, "IMAGE messages (1022) are not accepted"),
        "truncated": (good[:-10], None),
    }
    for case, (bad, expect) in cases.items():
        texts, closed, address = _raw_session(server.port, _hello(raw.header.xml), good, good, bad)
        if expect is None:  # the stream ends inside a message: nothing to answer, the complete ones are kept
            line = server.wait_for(f"{address}: disconnected;", 60)
        else:
            assert closed and any(t.startswith("ERR recon: ") and expect in t for t in texts), (case, texts)
            line = server.wait_for(f"{address}: error;", 60)
        kept = line.split("spooled to ")[1].split(";")[0]
        assert len(read_ismrmrd(kept).acquisitions) == 2, case  # every complete acquisition received
    res = send(cartesian, port=server.port, config="recon-zf")  # the server goes on
    assert res.closed and len(res.images) == 2


def _with(head, **fields):
    h = head.copy()
    for k, v in fields.items():
        h[k] = v
    return h


def test_unknown_and_unavailable_configs(server, cartesian):
    res = send(cartesian, port=server.port, config="recon-magic")
    assert res.closed and not res.images
    assert any("unknown config 'recon-magic'; valid configs: recon-sense, recon-cs, recon-zf, recon-realtime, "
               "recon-net" in t for t in res.texts)
    res = send(cartesian, port=server.port, config="recon-4d")
    assert res.closed and not res.images
    assert any("'recon-4d' is not available yet: needs the 4D reconstruction of recon.mri.dynamic" in t
               for t in res.texts)
    res = send(cartesian, port=server.port, config="recon-sense", params={"iters": "many"})
    assert any("parameter 'iters'" in t for t in res.texts) and res.closed and not res.images
    res = send(cartesian, port=server.port, config="recon-zf", params={"foo": 1, "config": "recon-zf"})
    assert any(t.startswith("WRN recon recon-zf: ignored parameters foo") for t in res.texts) and len(res.images) == 2


# ---- a server of its own: limits, busy, idle ----------------------------------------------------------------


def test_busy_idle_and_byte_limits(tmp_path, cartesian, radial):
    s = ServerProcess(tmp_path / "spool", "--idle-timeout", "1.5", "--max-connection-bytes", "300000",
                      max_connections=1)
    try:
        xml = read_ismrmrd(cartesian).header.xml
        hold = socket.create_connection(("127.0.0.1", s.port))
        hold.sendall(_hello(xml))              # then silent
        time.sleep(0.5)
        out = {}
        waiting = threading.Thread(target=lambda: out.setdefault("r", send(cartesian, port=s.port, config="recon-zf")))
        waiting.start()                         # waits for the one worker
        time.sleep(0.5)
        texts, closed, _ = _raw_session(s.port, _hello(xml))
        assert closed and any("busy: 1 connections in progress and 1 waiting" in t for t in texts)
        from recon.stream.wire import Connection

        c = Connection(hold)
        got = [c.read() for _ in range(2)]     # idle for 1.5 s: the server gives up on it
        assert "idle timeout" in got[0].text and got[1].id == 4
        hold.close()
        waiting.join(120)                       # and serves the one that waited
        assert out["r"].closed and len(out["r"].images) == 2
        res = send(radial, port=s.port, config="recon-zf")  # 700 kB > 300 kB
        assert any("more than 300000 bytes received" in t for t in res.texts) and res.closed
    finally:
        assert s.terminate() == 0


# ---- signals and crashes ----------------------------------------------------------------------------------


def test_sigterm_finishes_in_flight_work(tmp_path, cartesian):
    s = ServerProcess(tmp_path / "spool", max_connections=2)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", send(cartesian, port=s.port, config="recon-zf",
                                                                 interval_ms=20)))
    t.start()
    deadline = time.monotonic() + 60
    while not _spool_files(s.spool, ".mrd") or os.path.getsize(_spool_files(s.spool, ".mrd")[0]) < 20000:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGTERM)        # mid-scan
    t.join(120)
    res = out["r"]
    assert res.closed and len(res.images) == 2 and not res.errors
    assert s.proc.wait(60) == 0
    h5 = _spool_files(s.spool, ".h5")
    assert len(h5) == 1 and read_ismrmrd(h5[0]).acquisitions == read_ismrmrd(cartesian).acquisitions
    assert any("stopped after 1 connections" in line for line in s.lines)


def test_sigkill_leaves_a_readable_spool(tmp_path, cartesian):
    raw = read_ismrmrd(cartesian)
    acq = raw.acquisitions
    s = ServerProcess(tmp_path / "spool", max_connections=1)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sent = _hello(raw.header.xml) + b"".join(encode_acquisition(acq.head[i], acq.traj[i], acq.data[i])
                                             for i in range(30))
    sock.sendall(sent)
    deadline = time.monotonic() + 60
    while not _spool_files(s.spool, ".mrd") or os.path.getsize(_spool_files(s.spool, ".mrd")[0]) < len(sent):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    s.kill()                                  # main process and workers, for real
    sock.close()
    log = _spool_files(s.spool, ".mrd")[0]
    assert read_raw(log).acquisitions == acq[:30]
    # recon mri reconstructs the log as it is
    from recon.cli import main

    assert main(["mri", log, "-o", str(tmp_path / "out.h5"), "--method", "zf", "-q"]) == 0
    # the next server on the same spool converts it
    s2 = ServerProcess(tmp_path / "spool", max_connections=1)
    try:
        assert any("recovered a spool log" in line for line in s2.lines)
        assert not _spool_files(s2.spool, ".mrd")
        assert read_ismrmrd(_spool_files(s2.spool, ".h5")[0]).acquisitions == acq[:30]
    finally:
        assert s2.terminate() == 0


def test_sigkill_while_data_flows_keeps_a_prefix(tmp_path, cartesian):
    raw = read_ismrmrd(cartesian)
    acq = raw.acquisitions
    s = ServerProcess(tmp_path / "spool", max_connections=1)
    t = threading.Thread(target=send, args=(cartesian,), kwargs={"port": s.port, "config": "recon-zf", "interval_ms": 5})
    t.start()
    while not _spool_files(s.spool, ".mrd") or os.path.getsize(_spool_files(s.spool, ".mrd")[0]) < 15000:
        time.sleep(0.01)
    s.kill()
    t.join(60)
    with warnings.catch_warnings():  # a writer killed inside a message leaves half of it: reading warns
        warnings.simplefilter("ignore", RuntimeWarning)
        got = read_raw(_spool_files(s.spool, ".mrd")[0]).acquisitions
    assert 0 < len(got) <= len(acq) and got == acq[: len(got)]


def test_a_worker_that_dies_is_reported_and_replaced(tmp_path, cartesian):
    raw = read_ismrmrd(cartesian)
    s = ServerProcess(tmp_path / "spool", max_connections=2)
    try:
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(_hello(raw.header.xml) + encode_acquisition(raw.acquisitions.head[5], None,
                                                                 raw.acquisitions.data[5]))
        while not _spool_files(s.spool, ".mrd"):
            time.sleep(0.05)
        time.sleep(0.3)
        for pid in s.workers():
            os.kill(pid, signal.SIGKILL)      # the busy one among them
        from recon.stream.wire import Connection

        c = Connection(sock)
        m = c.read()
        assert m.id == 5 and "died (signal 9)" in m.text and c.read().id == 4
        sock.close()
        s.wait_for("died (signal 9)", 30)
        deadline = time.monotonic() + 60
        while _spool_files(s.spool, ".mrd"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(read_ismrmrd(_spool_files(s.spool, ".h5")[0]).acquisitions) == 1
        res = send(cartesian, port=s.port, config="recon-zf")
        assert res.closed and len(res.images) == 2
    finally:
        assert s.terminate() == 0
