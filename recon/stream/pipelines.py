"""What ``recon serve`` does with the data of a connection: the pipelines, chosen by config name.

==================  ============================================================================
``recon-sense``     per slice, CG-SENSE (``recon mri --method sense``)
``recon-cs``        per slice, compressed sensing (``--method cs``: L1-wavelet or TV)
``recon-zf``        per slice, zero-filled / gridding (``--method zf``)
``recon-realtime``  2D radial sliding-window frames while data arrives (``recon.mri.realtime``)
``recon-net``       per slice, unrolled network (``recon.nets.reconstruct_mri``, shipped MoDL weights)
``recon-4d``        respiratory-resolved 4D (registered; not available until ``recon.mri.dynamic`` is on main)
==================  ============================================================================

Parameters come from FIRE's JSON text message after the header (``{"parameters": {...}}``) or a
CONFIG_TEXT holding JSON; names are the fields of ``recon.mri.ReconConfig`` (per slice: ``lam``,
``iters``, ``maps``, ``regularizer``, ``virtual_coils``, ...) or ``recon.mri.realtime.RealtimeConfig``
(``spokes_per_frame``, ``window``, ``method``, ``iters``, ...); strings are converted to the field's
type ("1e-3" -> 0.001); a bad value ends the connection with a TEXT naming it; names the pipeline
does not know are ignored and listed in a warning TEXT (FIRE sends many).

Per slice: every acquisition is kept; when one carries ``ACQ_LAST_IN_SLICE`` its group (repetition,
contrast, phase, set, slice) is reconstructed at once, in a background thread, from that group's
acquisitions and the noise scans received so far (``ACQ_LAST_IN_MEASUREMENT``, and the end of the
data, reconstruct every group with data not yet reconstructed), through the same
``recon.mri.reconstruct`` as ``recon mri``: the images equal ``recon mri`` on the same file. A group
that receives more data after its image (another average) is reconstructed again at its next
``ACQ_LAST_IN_SLICE`` (the later image replaces the earlier, same counters).

Real time: frames are made by one background thread from a single slot holding the newest due
frame; a frame that becomes due while another waits in the slot replaces it and the older is
counted as dropped (memory stays bounded when reconstruction falls behind the scanner).
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
import typing
import warnings
from collections import deque
from dataclasses import dataclass, fields, replace

import numpy as np

from ..io.mrd import (
    ACQ_HEAD_DTYPE,
    ACQ_IS_NOISE_MEASUREMENT,
    ACQ_LAST_IN_MEASUREMENT,
    ACQ_LAST_IN_SLICE,
    flag,
)
from ..io.raw import GROUP_DIMS


class PipelineError(ValueError):
    """A connection cannot be served as asked (unknown config, bad parameter, unusable header): one line."""


# ---- parameters ---------------------------------------------------------------------------------------


def _convert(value, hint, name):
    kinds = typing.get_args(hint) or (hint,)
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, str) and value.strip().lower() in ("none", "null", "") and type(None) in kinds:
        return None
    for kind in kinds:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.strip().lower() in ("true", "1", "yes")
        elif kind is int:
            try:
                f = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f) and f == int(f) and not isinstance(value, bool):
                return int(f)
        elif kind is float:
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
        elif kind is str and isinstance(value, str):
            return value
    raise PipelineError(f"parameter {name!r}: {value!r} is not a valid {hint}")


def config_from_params(base, params: dict, allowed: tuple):
    """``base`` (a config dataclass) with the ``allowed`` fields of ``params`` set (converted to each
    field's type, then ``validate()``); returns ``(config, ignored names)``."""
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in fields(base)}
    updates, ignored = {}, []
    for k, v in params.items():
        if k in allowed and k in names:
            updates[k] = _convert(v, hints[k], k)
        else:
            ignored.append(k)
    cfg = replace(base, **updates)
    try:
        cfg.validate()
    except ValueError as exc:
        raise PipelineError(f"parameters: {exc}") from None
    return cfg, ignored


def parse_config_text(text: str):
    """A CONFIG_TEXT or FIRE TEXT message: ``(config name or None, parameters dict)``. JSON objects
    give ``parameters`` (FIRE) or themselves, with ``config``/``customconfig`` naming the pipeline; a
    bare word is a config name; anything else (Gadgetron XML chains) names nothing."""
    t = text.strip()
    if not t:
        return None, {}
    if t.startswith("{"):
        try:
            obj = json.loads(t)
        except ValueError as exc:
            raise PipelineError(f"configuration text: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PipelineError("configuration text: expected a JSON object")
        params = obj.get("parameters", obj)
        if not isinstance(params, dict):
            raise PipelineError("configuration text: 'parameters' must be a JSON object")
        params = dict(params)
        name = params.pop("customconfig", None) or params.pop("config", None) or obj.get("config")
        params.pop("config", None)
        return (str(name) if name else None), params
    if len(t.split()) == 1 and "<" not in t:
        return t, {}
    return None, {}


# ---- the background thread ---------------------------------------------------------------------------


class _Jobs:
    """One thread running ``run(job)`` for submitted jobs in order. ``latest_only``: a single slot,
    a new job replaces a waiting one (counted in ``dropped``). Errors go to ``on_error(job, exc)``."""

    def __init__(self, run, on_error, *, latest_only: bool = False, name: str = "recon"):
        self._run, self._on_error = run, on_error
        self.latest_only = latest_only
        self._q = deque()
        self._cv = threading.Condition()
        self._closing = self._aborted = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job) -> None:
        with self._cv:
            if self.latest_only and self._q:
                self._q.clear()
                self.dropped += 1
            self._q.append(job)
            self._cv.notify()

    def _loop(self):
        while True:
            with self._cv:
                while not self._q and not self._closing:
                    self._cv.wait()
                if self._aborted or not self._q:
                    return
                job = self._q.popleft()
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001  (reported to the client; the pipeline goes on with the next job)
                self._on_error(job, exc)

    def close(self, timeout: float | None = None) -> None:
        """Run what was submitted, then stop (wait at most ``timeout`` s)."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

    def abort(self) -> None:
        """Drop what waits; stop after the running job."""
        with self._cv:
            self._closing = self._aborted = True
            self._q.clear()
            self._cv.notify()
        self._thread.join()


def _one_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return (s.splitlines()[0] if s else "") or type(exc).__name__


# ---- pipelines ------------------------------------------------------------------------------------------


class Pipeline:
    """Base: ``add_acquisition`` / ``add_waveform`` from the receiving thread, images sent from a
    background thread through ``send_image`` (and errors through ``send_text``); ``finish()`` waits
    until every image is out and returns the statistics; ``abort()`` stops without finishing."""

    name = "pipeline"
    #: config fields a client may set
    params: tuple = ()

    def __init__(self, header, *, send_image, send_text, device=None):
        from ..io.ismrmrd_header import HeaderError, parse_ismrmrd_header

        try:
            self.header = parse_ismrmrd_header(header)
        except HeaderError as exc:
            raise PipelineError(f"HEADER: {exc}") from None
        self.send_image, self.send_text = send_image, send_text
        self.device = device
        self.images = 0
        self.errors = 0
        self.latencies = []  # s, last acquisition received -> image sent
        self._index_lock = threading.Lock()

    def _next_index(self) -> int:
        with self._index_lock:
            self.images += 1
            return self.images

    def _fov(self, shape_yx, nz: int = 1):
        """FOV (x, y, z) mm of an image of ``shape_yx`` (recon's pixels are the encoded FOV's)."""
        (ex, ey, ez), (fx, fy, fz) = self.header.encoded_matrix, self.header.encoded_fov_mm
        return (fx * shape_yx[1] / ex, fy * shape_yx[0] / ey, fz * (nz / ez if ez > 1 else 1.0))

    def _error(self, job, exc) -> None:
        self.errors += 1
        self.send_text(f"ERR recon {self.name}: {self._describe(job)}: {_one_line(exc)}")

    def _describe(self, job) -> str:
        return "reconstruction"

    def _sent(self, received: float) -> None:
        self.latencies.append(time.monotonic() - received)

    def add_waveform(self, head, data) -> None:
        """Waveforms are spooled; the current pipelines do not use them."""

    def stats(self) -> dict:
        lat = np.asarray(self.latencies) * 1e3
        out = {"images": self.images, "errors": self.errors}
        if lat.size:
            out.update(latency_ms_p50=float(np.percentile(lat, 50)), latency_ms_p95=float(np.percentile(lat, 95)),
                       latency_ms_max=float(lat.max()))
        return out


@dataclass
class _SliceJob:
    key: tuple
    rows: list
    received: float


class SlicePipeline(Pipeline):
    """Per-slice reconstruction by ``recon.mri.reconstruct`` (module docstring)."""

    params = ("regularizer", "wavelet", "lam", "iters", "maps", "calib_width", "crop", "virtual_coils", "prewhiten",
              "density_weights", "nufft_tol")

    def __init__(self, header, config, *, send_image, send_text, device=None):
        super().__init__(header, send_image=send_image, send_text=send_text, device=device)
        self.config = self._own_config(config)
        self.name = f"recon-{self.method}"
        self._heads, self._traj, self._data = [], [], []
        self._noise = []
        self._groups = {}          # key -> row indices
        self._dirty = set()        # groups with rows not yet submitted
        self._jobs = _Jobs(self._reconstruct, self._error, name="recon-slices")

    def _own_config(self, config):
        return replace(config, progress=False, quiet=True, slices=None, retrospective=None)

    @property
    def method(self) -> str:
        return self.config.method

    def add_acquisition(self, head, traj, data, received: float | None = None) -> None:
        received = time.monotonic() if received is None else received
        i = len(self._heads)
        self._heads.append(head)
        self._traj.append(traj)
        self._data.append(data)
        flags = int(head["flags"])
        if flags & flag(ACQ_IS_NOISE_MEASUREMENT):
            self._noise.append(i)
            return
        key = tuple(int(head["idx"][n]) for n in GROUP_DIMS)
        self._groups.setdefault(key, []).append(i)
        self._dirty.add(key)
        if flags & flag(ACQ_LAST_IN_MEASUREMENT):
            self._submit_dirty(received)
        elif flags & flag(ACQ_LAST_IN_SLICE):
            self._submit(key, received)

    def _submit(self, key, received) -> None:
        self._dirty.discard(key)
        self._jobs.submit(_SliceJob(key, self._noise + self._groups[key], received))

    def _submit_dirty(self, received) -> None:
        for key in sorted(self._dirty):
            self._submit(key, received)

    def _describe(self, job) -> str:
        return ", ".join(f"{n} {v}" for n, v in zip(GROUP_DIMS, job.key) if v or n == "slice")

    def _reconstruct(self, job: _SliceJob) -> None:
        from ..io.raw import Acquisitions, RawData

        t0 = time.perf_counter()
        rows = job.rows
        heads = np.array([self._heads[i] for i in rows], dtype=ACQ_HEAD_DTYPE)
        raw = RawData(self.header, source="stream", acquisitions=Acquisitions(
            heads, [self._data[i] for i in rows], [self._traj[i] for i in rows]))
        volume, info = self._run(raw)
        ref = self._heads[rows[-1]]  # the group's last acquisition (noise scans come first in rows)
        vals = volume[0] if volume.shape[0] == 1 else volume
        meta = {"recon.method": self.method, "recon.parameters": _parameters(self.config),
                "recon.last_scan_counter": int(ref["scan_counter"]), "recon.seconds": round(time.perf_counter() - t0, 4),
                "recon.iterations": int(info.get("iterations", 0))}
        if "model" in info:
            meta["recon.model"] = info["model"]
        for note in info.get("warnings", ()):
            self.send_text(f"WRN recon {self.name}: {self._describe(job)}: {note}")
        img_index = self._next_index()
        from .images import mrd_image

        img = mrd_image(vals, ref, fov_mm=self._fov(vals.shape[-2:], vals.shape[0] if vals.ndim == 3 else 1),
                        image_index=img_index, meta=meta)
        self.send_image(img)
        self._sent(job.received)

    def _run(self, raw):
        """(magnitudes float32 (n, H, W) numpy, info) of the one unit in ``raw``."""
        from ..mri.pipeline import centre_crop, reconstruct

        if self.device is None:
            res = reconstruct(raw, self.config)
            return np.asarray(res.volume, dtype=np.float32), res.info
        import torch

        from ..mri.coils import host

        sl = raw.slices[0]
        k = torch.from_numpy(np.ascontiguousarray(sl.kspace)).to(self.device)
        noise = None if raw.noise is None else torch.from_numpy(raw.noise).to(self.device)
        res = reconstruct(k, self.config, coord=sl.coord, im_shape=sl.im_shape, noise=noise,
                          noise_scale=raw.noise_scale)
        vol = centre_crop(host(res.volume, np.float32), raw.crop)
        return np.ascontiguousarray(vol), res.info

    def finish(self) -> dict:
        self._submit_dirty(time.monotonic())
        self._jobs.close()
        return self.stats()

    def abort(self) -> None:
        self._jobs.abort()


@dataclass
class NetConfig:
    """``recon-net`` per slice: ``model`` the name of shipped MRI weights (``recon.nets.weights.shipped``;
    None: ``modl-cartesian`` for Cartesian data, ``modl-radial`` otherwise; a client cannot name a
    file on the server), ``prewhiten`` with the connection's noise scans."""

    model: str | None = None
    prewhiten: bool = True

    def validate(self) -> NetConfig:
        if self.model is not None:
            from ..nets.weights import read_card, resolve, shipped

            names = [n for n in shipped() if read_card(resolve(n)).get("config", {}).get("trajectory")]
            if self.model not in names:
                raise ValueError(f"model: {self.model!r} is not shipped MRI weights; valid: {', '.join(names)}")
        return self


#: the shipped weights ``recon-net`` uses unless told otherwise, by ``RawSlice.cartesian``
DEFAULT_NET_MODELS = {True: "modl-cartesian", False: "modl-radial"}


@functools.lru_cache(maxsize=4)
def _net(name: str, device: str):
    """A loaded model, kept for the next connections of this process."""
    from ..nets import load

    return load(name, device)


class NetPipeline(SlicePipeline):
    """Per-slice unrolled-network reconstruction (``recon.nets.reconstruct_mri``: ESPIRiT maps, the
    model's own normalisation) of the prewhitened k-space; the model card's warnings (an input unlike
    the training data) go to the client as ``WRN`` texts."""

    params = ("model", "prewhiten")
    method = "net"

    def _own_config(self, config):
        return config

    def _run(self, raw):
        from ..mri.noise import prewhiten
        from ..mri.pipeline import centre_crop
        from ..nets.infer import ModelCardWarning, reconstruct_mri

        device = str(self.device or "cpu")
        images, notes, names = [], [], []
        for sl in raw.slices:
            k = np.asarray(sl.kspace, dtype=np.complex64)
            if raw.noise is not None and self.config.prewhiten:
                k, _ = prewhiten(k, raw.noise, scale=raw.noise_scale)
            name = self.config.model or DEFAULT_NET_MODELS[sl.cartesian]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ModelCardWarning)
                x = reconstruct_mri(k, _net(name, device), coord=sl.coord, im_shape=sl.im_shape, device=device)
            notes += [str(w.message) for w in caught if issubclass(w.category, ModelCardWarning)]
            names.append(name)
            images.append(np.abs(x))
        volume = centre_crop(np.stack(images).astype(np.float32), raw.crop)
        return np.ascontiguousarray(volume), {"model": ", ".join(sorted(set(names))), "warnings": list(dict.fromkeys(notes))}


def _parameters(config) -> dict:
    skip = {"progress", "quiet", "slices", "retrospective"}
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name not in skip}


class RealtimePipeline(Pipeline):
    """2D radial sliding-window frames (``recon.mri.realtime``), frames dropped when behind."""

    name = "recon-realtime"
    params = ("spokes_per_frame", "window", "method", "iters", "first_iters", "lam", "maps", "maps_spokes",
              "calib_width", "virtual_coils", "prewhiten", "dcf", "nufft_tol", "nthreads")

    def __init__(self, header, config, *, send_image, send_text, device=None):
        from ..mri.realtime import RealtimeSession

        super().__init__(header, send_image=send_image, send_text=send_text, device=device)
        self.config = config
        try:
            self.session = RealtimeSession(self.header, config, device=device)
        except ValueError as exc:
            raise PipelineError(f"recon-realtime: {exc}") from None
        self.frames = 0
        self._jobs = _Jobs(self._reconstruct, self._error, latest_only=True, name="recon-frames")

    @property
    def dropped(self) -> int:
        return self._jobs.dropped

    def add_acquisition(self, head, traj, data, received: float | None = None) -> None:
        received = time.monotonic() if received is None else received
        try:
            windows = self.session.add(head, traj, data)
        except ValueError as exc:
            raise PipelineError(f"recon-realtime: {_one_line(exc)}") from None
        for w in windows:
            self._jobs.submit((w, received))

    def _describe(self, job) -> str:
        return f"frame {job[0].index} of slice {job[0].key}"

    def _reconstruct(self, job) -> None:
        from ..mri.pipeline import centre_crop
        from .images import mrd_image

        window, received = job
        frame = self.session.reconstruct(window)
        self.frames += 1
        vals = centre_crop(frame.magnitude, self.session.crop)
        head = frame.info
        meta = {"recon.method": f"realtime-{frame.method}", "recon.parameters": _parameters(self.config),
                "recon.frame": frame.index, "recon.spokes": f"{frame.first_spoke}-{frame.last_spoke}",
                "recon.frames_dropped": self.dropped, "recon.iterations": frame.iterations,
                "recon.last_scan_counter": int(head["scan_counter"]), "recon.seconds": round(frame.seconds, 4)}
        img = mrd_image(vals, head, fov_mm=self._fov(vals.shape), image_index=self._next_index(), frame=frame.index,
                        meta=meta)
        self.send_image(img)
        self._sent(received)

    def finish(self) -> dict:
        self._jobs.close()
        return dict(self.stats(), frames=self.frames, frames_dropped=self.dropped)

    def abort(self) -> None:
        self._jobs.abort()


# ---- the registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSpec:
    """A config name: what it does, how to build it, or why it is not available."""

    name: str
    description: str
    build: object = None
    unavailable: str | None = None


def _slice_builder(method):
    def build(header, params, **kw):
        from ..mri.pipeline import ReconConfig

        cfg, ignored = config_from_params(ReconConfig(method=method), params, SlicePipeline.params)
        return SlicePipeline(header, cfg, **kw), ignored

    return build


def _realtime_builder(header, params, **kw):
    from ..mri.realtime import RealtimeConfig

    cfg, ignored = config_from_params(RealtimeConfig(), params, RealtimePipeline.params)
    return RealtimePipeline(header, cfg, **kw), ignored


def _net_builder(header, params, **kw):
    cfg, ignored = config_from_params(NetConfig(), params, NetPipeline.params)
    return NetPipeline(header, cfg, **kw), ignored


def _not_yet(what):
    return f"not available yet: needs {what}, which this build of recon does not have"


PIPELINES = {
    "recon-sense": PipelineSpec("recon-sense", "per slice, CG-SENSE", _slice_builder("sense")),
    "recon-cs": PipelineSpec("recon-cs", "per slice, compressed sensing", _slice_builder("cs")),
    "recon-zf": PipelineSpec("recon-zf", "per slice, zero-filled / gridding", _slice_builder("zf")),
    "recon-realtime": PipelineSpec("recon-realtime", "2D radial real-time sliding-window frames", _realtime_builder),
    "recon-net": PipelineSpec("recon-net", "per slice, unrolled network (shipped MoDL weights)", _net_builder),
    "recon-4d": PipelineSpec("recon-4d", "respiratory-resolved 4D",
                             unavailable=_not_yet("the 4D reconstruction of recon.mri.dynamic")),
}


def available() -> list[str]:
    return [n for n, s in PIPELINES.items() if s.unavailable is None]


def build_pipeline(name: str, header: str, params: dict, **kw):
    """``(pipeline, ignored parameter names)`` for config ``name``; PipelineError naming the valid
    configs for an unknown or unavailable one."""
    spec = PIPELINES.get(name)
    valid = ", ".join(available())
    if spec is None:
        raise PipelineError(f"unknown config {name!r}; valid configs: {valid}")
    if spec.unavailable:
        raise PipelineError(f"config {name!r} is {spec.unavailable}; valid configs: {valid}")
    return spec.build(header, params, **kw)
