"""2D real-time radial reconstruction: sliding-window frames from spokes as they arrive.

Frames. Spokes are numbered in arrival order ``n = 0, 1, 2, ...``; frame ``f`` holds spokes
``[f * spokes_per_frame, f * spokes_per_frame + window)`` and is due when its last spoke arrives: a
new frame every ``spokes_per_frame`` spokes, each made of the last ``window`` spokes (temporal
footprint ``window * TR``). With golden-angle ordering any ``window`` consecutive spokes cover
k-space nearly uniformly.

Per frame (:meth:`RealtimeReconstructor.reconstruct`):

1. the coils are prewhitened (noise scans) and, with ``virtual_coils``, SVD-compressed (matrix from
   the first window), in one ``(V, C)`` matrix product;
2. the NUFFT, planned once, is re-planned for the window's trajectory with ``Nufft.set_points``
   (same sample count every frame: no allocation);
3. density weights: the analytic radial ones (k-space area per sample, (cycles/FOV)^2:
   ``pi |k| dk / n`` for ``n`` full diameters, ``2 pi |k| dk / n`` for centre-out spokes, the centre
   ``pi dk^2 / (4 n)``, at most ``dk`` beyond the Nyquist radius: :func:`radial_density`) when
   every spoke is a line through the centre, else Pipe-Menon (slower);
4. ``method="sense"``: ``iters`` conjugate-gradient steps on
   ``(A^H W A + lam ||A||^2 I) x = A^H W y`` (``A = N S``, maps ``S`` estimated once from the first
   window or a calibration pre-scan, ``lam`` relative as in ``recon mri --method sense``), started
   from the previous frame (warm start; the first frame runs ``first_iters`` steps from zero);
   ``method="zf"``: gridding, the root sum of squares of the density-compensated adjoint NUFFT
   (no maps, nothing to estimate first).

Python API::

    from recon.mri.realtime import RealtimeConfig, reconstruct_realtime
    res = reconstruct_realtime(read_raw("radial.h5"), RealtimeConfig(spokes_per_frame=5, window=15))
    res.frames        # complex64 (frames, y, x); res.magnitude: float32 (frames, H, W) cropped to the recon matrix
    res.spokes        # (frames, 2): first and last spoke number of each frame; res.time_stamps

    session = RealtimeSession(header, RealtimeConfig(...))     # streaming: raw acquisitions in
    for head, traj, data in acquisitions:                      # (ISMRMRD header, stored trajectory units)
        for window in session.add(head, traj, data):           # the frames that became due
            frame = session.reconstruct(window)                # Frame: image, index, spokes, seconds, ...

``reconstruct_realtime`` feeds a file's acquisitions through the same :class:`RealtimeSession` the
streaming server (``recon serve``, config ``recon-realtime``) uses, so both give the same frames;
the server may drop frames when reconstruction falls behind, this function never does.
Arrays: numpy by default; ``device="cuda"`` (or any torch device) computes in torch there.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _array
from ..io.mrd import (
    ACQ_IS_NOISE_MEASUREMENT,
    ACQ_IS_PARALLEL_CALIBRATION,
    ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING,
    NON_IMAGING_BITS,
    flag,
)

METHODS = ("sense", "zf")
DCF_METHODS = ("auto", "radial", "pipe-menon")


@dataclass
class RealtimeConfig:
    """How real-time frames are made (see the module docstring).

    ``spokes_per_frame``: new spokes between frames; ``window``: spokes per frame (None: 3 x
    ``spokes_per_frame``); ``method`` sense | zf; ``iters`` CG steps per frame (warm-started),
    ``first_iters`` for the first frame; ``lam`` relative Tikhonov weight (None: recon mri's sense
    default); ``maps`` espirit | lowres | walsh; ``maps_spokes`` spokes the maps come from (None: the
    first window; frames are made once that many have arrived); ``calib_width`` (None: ``2
    round(spokes/pi)``); ``virtual_coils`` SVD coil compression (None: all coils); ``prewhiten``
    with noise scans; ``dcf`` auto | radial | pipe-menon; ``nufft_tol``; ``nthreads`` NUFFT threads
    (None: default).

    The defaults were chosen by measurement (docs/stream.md): on a 256^2, 8-coil golden-angle
    phantom (512 samples per spoke, 24-spoke window, 8 new spokes per frame), 3 warm-started CG
    steps on 6 virtual coils reach a relative error of 0.20 (gridding: 0.49; all 8 coils: 0.18 for
    about 1.5x the time); Walsh, low-resolution and ESPIRiT maps give the same error here.
    """

    spokes_per_frame: int = 8
    window: int | None = None
    method: str = "sense"
    iters: int = 3
    first_iters: int = 10
    lam: float | None = None
    maps: str = "walsh"
    maps_spokes: int | None = None
    calib_width: int | None = None
    virtual_coils: int | None = 6
    prewhiten: bool = True
    dcf: str = "auto"
    nufft_tol: float = 1e-3
    nthreads: int | None = None

    @property
    def frame_window(self) -> int:
        return self.window if self.window is not None else 3 * self.spokes_per_frame

    def validate(self) -> RealtimeConfig:
        """ValueError naming the field for a bad value; returns self."""
        from .pipeline import MAP_METHODS

        for name in ("spokes_per_frame", "window", "iters", "first_iters", "maps_spokes", "calib_width",
                     "virtual_coils", "nthreads"):
            v = getattr(self, name)
            if v is None and name not in ("spokes_per_frame", "iters", "first_iters"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if "iters" in name else 1):
                raise ValueError(f"RealtimeConfig.{name} must be an integer >= {0 if 'iters' in name else 1}, got {v!r}")
        if self.frame_window < self.spokes_per_frame:
            raise ValueError(f"RealtimeConfig.window ({self.window}) must be >= spokes_per_frame ({self.spokes_per_frame})")
        for name, v, choices in (("method", self.method, METHODS), ("maps", self.maps, MAP_METHODS),
                                 ("dcf", self.dcf, DCF_METHODS)):
            if v not in choices:
                raise ValueError(f"RealtimeConfig.{name} must be one of {', '.join(choices)}; got {v!r}")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"RealtimeConfig.lam must be finite and >= 0, got {self.lam}")
        if not (math.isfinite(self.nufft_tol) and 0 < self.nufft_tol < 1):
            raise ValueError(f"RealtimeConfig.nufft_tol must lie in (0, 1), got {self.nufft_tol}")
        return self


@dataclass
class Window:
    """The data of one due frame: ``samples`` complex64 ``(coils, window, readout)`` as received,
    ``coord`` float32 ``(window, readout, d)`` in cycles/FOV, ``first_spoke`` its first spoke's
    number, ``time_stamp`` and ``info`` of its last spoke (whatever the caller attached: the server
    keeps the acquisition header for the image's geometry), ``key`` which reconstructor (slice)."""

    index: int
    first_spoke: int
    samples: np.ndarray
    coord: np.ndarray
    time_stamp: int | None = None
    info: object = None
    key: object = None

    @property
    def last_spoke(self) -> int:
        return self.first_spoke + self.coord.shape[0] - 1


@dataclass
class Frame:
    """One reconstructed frame: ``image`` complex64 ``im_shape`` (numpy, or torch on the device),
    its window's ``index``/``first_spoke``/``last_spoke``/``time_stamp``/``info``/``key``, the
    ``method``, CG ``iterations`` and the compute time ``seconds``."""

    index: int
    first_spoke: int
    last_spoke: int
    image: object
    method: str
    iterations: int
    seconds: float
    time_stamp: int | None = None
    info: object = None
    key: object = None

    @property
    def magnitude(self) -> np.ndarray:
        """``|image|`` as float32 numpy."""
        return np.abs(_array.to_numpy(self.image)).astype(np.float32)


# ---- density weights ----------------------------------------------------------------------------------


def radial_density(coord, *, rtol: float = 1e-3):
    """Analytic density weights of radial spokes, or None when ``coord`` is not radial.

    ``coord`` ``(spokes, readout, d)`` in cycles/FOV. Every spoke must be a line through the centre
    (samples off the line by more than ``rtol`` of the spoke's reach make it non-radial); all full
    diameters or all centre-out. Weights are k-space areas per sample in (cycles/FOV)^2 for 2D: the
    ramp ``pi dk max(|k|, dk/4) / n`` (full) or ``2 pi dk max(|k|, dk/8) / n`` (centre-out), with
    ``dk`` each spoke's sample spacing and ``n`` the number of spokes, so that the weights of the
    samples within radius ``rho`` sum to ``pi rho^2`` (angles spread evenly, as golden-angle windows
    are); beyond the Nyquist radius (``n / pi``, centre-out ``n / (2 pi)``) neighbouring spokes are
    more than a grid cell apart and the weight stays ``dk`` (a ``dk`` x 1 cell), as Pipe-Menon
    weights do there (the plain ramp weighted the outer samples of a 24-spoke window 7x more).
    """
    c = np.asarray(coord, dtype=np.float64)
    if c.ndim != 3 or c.shape[-1] != 2 or c.shape[1] < 2:
        return None
    r = np.linalg.norm(c, axis=-1)                                   # (n, R)
    far = np.argmax(r, axis=1)
    reach = r[np.arange(len(c)), far]
    if not np.all(reach > 0):
        return None
    u = c[np.arange(len(c)), far] / reach[:, None]                   # each spoke's direction
    s = np.einsum("nrd,nd->nr", c, u)                                # signed radius along it
    off = np.abs(c[..., 0] * u[:, None, 1] - c[..., 1] * u[:, None, 0])
    if np.any(off > rtol * reach[:, None]):
        return None
    full = s.min(axis=1) < -0.25 * reach
    if full.any() != full.all():
        return None
    dk = np.median(np.abs(np.diff(s, axis=1)), axis=1)[:, None]      # (n, 1)
    n = len(c)
    if full.all():
        w = np.pi * dk * np.maximum(np.abs(s), dk / 4) / n
    else:
        w = 2 * np.pi * dk * np.maximum(np.abs(s), dk / 8) / n
    return np.minimum(w, dk).astype(np.float32)


def _coil_transform(P, x, scale: float):
    """``scale * (P @ x)`` over the coil axis of ``x`` ``(C, ...)`` in complex64, as C scaled additions:
    for these small matrices this beats a BLAS call, whose threads stall on a busy machine."""
    P = (np.asarray(P) * np.float32(scale)).astype(np.complex64)
    out = np.zeros((P.shape[0],) + x.shape[1:], np.complex64)
    for j in range(x.shape[0]):
        out += P[:, j].reshape((-1,) + (1,) * (x.ndim - 1)) * x[j]
    return out


# ---- one stream of spokes -------------------------------------------------------------------------------


class RealtimeReconstructor:
    """Sliding-window frames of one 2D slice from spokes as they arrive (see the module docstring).

    ``im_shape`` (y, x); ``noise`` ``(coils, n)`` noise samples for prewhitening with the bandwidth
    ratio ``noise_scale``; ``device`` None (numpy) or a torch device. :meth:`add` stores spokes and
    returns the :class:`Window` of every frame that became due; :meth:`reconstruct` makes a
    :class:`Frame` of a window. ``add`` may run in one thread while ``reconstruct`` runs in another
    (the server's receiver and reconstruction threads); ``reconstruct`` calls must not overlap.
    """

    def __init__(self, im_shape, config: RealtimeConfig | None = None, *, noise=None, noise_scale: float = 1.0,
                 device=None, key=None):
        self.config = (config or RealtimeConfig()).validate()
        self.im_shape = tuple(int(n) for n in im_shape)
        if len(self.im_shape) != 2 or min(self.im_shape) < 2:
            raise ValueError(f"im_shape: real-time frames are 2D (y, x), got {im_shape}")
        self.key = key
        self.device = device
        self.noise, self.noise_scale = noise, float(noise_scale)
        self.spokes_received = 0
        self._lock = threading.Lock()
        self._buf = None               # ring buffer: samples (W, C, R), coord (W, R, d)
        self._maps_spokes = []         # the first maps_spokes spokes (samples, coord), for the maps
        self._collecting = True        # until the maps are made
        self._calib = []               # calibration pre-scan spokes
        self._state = None             # set up at the first frame (transform, maps, nufft, scale, L)
        self._prev = None              # previous frame's image (warm start)
        self.frames_made = 0

    @property
    def maps(self):
        """The coil maps in use (after compression: ``(V, y, x)``), None before the first SENSE frame."""
        return None if self._state is None else self._state["maps"]

    # -- input ----------------------------------------------------------------------------------------

    def set_noise(self, noise, noise_scale: float = 1.0) -> None:
        """Noise samples ``(coils, n)`` for prewhitening; used from the first frame on (ignored after)."""
        self.noise, self.noise_scale = noise, float(noise_scale)

    def add_calibration(self, samples, coord) -> None:
        """Spokes of a calibration pre-scan (same layout as :meth:`add`): the maps come from these
        instead of the first window."""
        s, c = self._spokes(samples, coord)
        self._calib.append((s, c))

    def _spokes(self, samples, coord):
        s = np.asarray(samples)
        c = np.asarray(coord, dtype=np.float32)
        if s.ndim == 2:
            s = s[:, None]
        if c.ndim == 2:
            c = c[None]
        if s.ndim != 3 or c.ndim != 3 or s.shape[1:] != c.shape[:2] or c.shape[-1] != 2:
            raise ValueError(f"spokes: samples (coils, [n,] readout) and coord ([n,] readout, 2) do not match: "
                             f"{np.shape(samples)}, {np.shape(coord)}")
        if not np.iscomplexobj(s):
            raise TypeError(f"spokes: samples must be complex, got {s.dtype}")
        if not (np.isfinite(s).all() and np.isfinite(c).all()):
            raise ValueError("spokes: samples or coord contain NaN or Inf")
        half = np.asarray(self.im_shape, dtype=np.float32) / 2
        if (np.abs(c) > half * 1.001).any():
            raise ValueError(f"spokes: coord exceeds the matrix {self.im_shape} (|k| > N/2 cycles/FOV)")
        return s.astype(np.complex64, copy=False), np.clip(c, -half, half)

    def add(self, samples, coord, *, time_stamp=None, info=None) -> list:
        """One spoke (``samples`` ``(coils, readout)``, ``coord`` ``(readout, 2)`` cycles/FOV in image
        axis order) or several (``(coils, n, readout)``, ``(n, readout, 2)``); ``time_stamp`` and
        ``info`` travel with the frame the last of them completes. Returns the due windows."""
        s, c = self._spokes(samples, coord)
        cfg = self.config
        W, spf = cfg.frame_window, cfg.spokes_per_frame
        sense = cfg.method == "sense"
        # the maps, the coil compression and the data scale come from these first spokes (or a
        # calibration pre-scan), whichever frame is made first: frames do not depend on drops
        need_maps = cfg.maps_spokes if (cfg.maps_spokes is not None and sense) else W
        out = []
        with self._lock:
            if self._buf is None:
                self._buf = (np.zeros((W, s.shape[0], s.shape[2]), np.complex64),
                             np.zeros((W,) + c.shape[1:], np.float32))
            bs, bc = self._buf
            if s.shape[0] != bs.shape[1] or s.shape[2] != bs.shape[2]:
                raise ValueError(f"spokes: every spoke must have {bs.shape[1]} coils and {bs.shape[2]} samples, got "
                                 f"{s.shape[0]} and {s.shape[2]}")
            last = s.shape[1] - 1
            for j in range(s.shape[1]):
                n = self.spokes_received
                bs[n % W], bc[n % W] = s[:, j], c[j]
                if self._collecting and not self._calib and len(self._maps_spokes) < need_maps:
                    self._maps_spokes.append((s[:, j].copy(), c[j].copy()))
                self.spokes_received = n = n + 1
                maps_ready = not sense or bool(self._calib) or n >= need_maps
                if n >= W and (n - W) % spf == 0 and maps_ready:
                    order = np.arange(n - W, n) % W
                    out.append(Window((n - W) // spf, n - W, np.ascontiguousarray(bs[order].transpose(1, 0, 2)),
                                      bc[order].copy(), time_stamp if j == last else None, info if j == last else None,
                                      self.key))
        return out

    # -- reconstruction -------------------------------------------------------------------------------

    def _to_device(self, a):
        if self.device is None:
            return a
        import torch

        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _setup(self, window: Window):
        """Coil transform, density weights function, maps, NUFFT and scales, from the first window."""
        from ..ops.nufft import Nufft
        from . import coils
        from . import noise as noise_mod
        from .pipeline import default_calib_width
        from .recon import DEFAULT_CROP_NONCARTESIAN, DEFAULT_LAMBDA, data_scale

        cfg = self.config
        nc = window.samples.shape[0]
        P = np.eye(nc, dtype=np.complex64)
        if self.noise is not None and cfg.prewhiten:
            nz = np.asarray(self.noise)
            if nz.ndim != 2 or nz.shape[0] != nc:
                raise ValueError(f"noise: expected ({nc}, n) samples of the {nc} coils, got {nz.shape}")
            P = noise_mod.whitening_matrix(noise_mod.noise_covariance(nz), self.noise_scale).astype(np.complex64)
        src = self._calib or [(s[:, None], c[None]) for s, c in self._maps_spokes] or [(window.samples, window.coord)]
        ms = np.concatenate([s for s, _ in src], axis=1)
        mc = np.concatenate([c for _, c in src], axis=0)
        ms = np.tensordot(P, ms, axes=(1, 0))
        if cfg.virtual_coils is not None and cfg.virtual_coils < nc:
            U, _ = coils.coil_compression_matrix(ms, cfg.virtual_coils)
            P = (U @ P).astype(np.complex64)
            ms = np.tensordot(U, ms, axes=(1, 0))
        scale = data_scale(ms)
        st = {"P": P, "scale": scale, "maps": None, "L": None, "dcf_cache": {}}
        self._state = st
        st["nufft"] = Nufft(window.coord.astype(np.float64), self.im_shape, tol=cfg.nufft_tol, nthreads=cfg.nthreads)
        if cfg.method == "sense":
            mk = (ms / scale).astype(np.complex64)
            w = self._weights(mc)
            cw = cfg.calib_width or default_calib_width(tuple(mk.shape), False, self.im_shape)
            calib = coils.calib_from_noncartesian(mk, mc, self.im_shape, cw, dcf=w, tol=cfg.nufft_tol)
            kw = {"crop": DEFAULT_CROP_NONCARTESIAN} if cfg.maps == "espirit" else {}
            maps = coils.maps_from_calib(calib, self.im_shape, cfg.maps, **kw).astype(np.complex64)
            st["maps"] = self._to_device(maps)
            st["lam"] = DEFAULT_LAMBDA["sense"] if cfg.lam is None else float(cfg.lam)
        self._collecting, self._maps_spokes = False, []
        return st

    def _weights(self, coord):
        """Density weights of a window's trajectory (``config.dcf``), cached for repeated trajectories."""
        from .dcf import pipe_menon_dcf

        kind = self.config.dcf
        if kind in ("auto", "radial"):
            w = radial_density(coord)
            if w is not None:
                return w
            if kind == "radial":
                raise ValueError("dcf='radial': the spokes are not lines through the centre of k-space")
        cache = self._state["dcf_cache"] if self._state else {}
        key = hash(np.ascontiguousarray(coord).tobytes())
        if key not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[key] = pipe_menon_dcf(coord, self.im_shape)
        return cache[key]

    def _normal(self, st, w):
        S, A = st["maps"], st["nufft"]

        def normal(x):
            z = A.adjoint(A.forward(S * x) * w)
            return (S.conj() * z).sum(0)

        return normal

    def reconstruct(self, window: Window) -> Frame:
        """The frame of ``window`` (see the module docstring); raises ValueError for unusable data."""
        from ..ops.linear import cast_param
        from ..solvers import cg, power_iteration
        from .coils import rss

        t0 = time.perf_counter()
        cfg = self.config
        st = self._state or self._setup(window)
        A = st["nufft"]
        A.set_points(window.coord.astype(np.float64))
        k = _coil_transform(st["P"], window.samples, 1.0 / st["scale"])
        w = self._weights(window.coord)
        k, w = self._to_device(k), self._to_device(w)
        iters = 0
        if cfg.method == "zf":
            image = cast_param(rss(A.adjoint(k * w)), np.complex64)
        else:
            S = st["maps"]
            normal = self._normal(st, w)
            rhs = (S.conj() * A.adjoint(k * w)).sum(0)
            if st["L"] is None:
                st["L"] = float(power_iteration(normal, _array.zeros(rhs, self.im_shape), 10))
                if not st["L"] > 0:
                    raise ValueError("real-time SENSE: the operator is zero (no signal in the maps or weights)")
            iters = cfg.iters if self._prev is not None else cfg.first_iters
            image, _ = cg(normal, rhs, self._prev, max_iter=iters, tol=0.0, damping=st["lam"] * st["L"],
                          progress=False)
            self._prev = image
        image = image * float(st["scale"])
        self.frames_made += 1
        return Frame(window.index, window.first_spoke, window.last_spoke, image, cfg.method, iters,
                     time.perf_counter() - t0, window.time_stamp, window.info, window.key)


# ---- raw acquisitions in: files and streams ---------------------------------------------------------------


def _has(flags: int, bit: int) -> bool:
    return bool(int(flags) & flag(bit))


class RealtimeSession:
    """Raw acquisitions (ISMRMRD headers, trajectories in their stored units and axis order) in,
    frames out: one :class:`RealtimeReconstructor` per slice (``key`` = the slice counter).

    ``header``: an ``IsmrmrdHeader`` (or its XML); encoding 0's matrix is the image. Noise scans
    (``ACQ_IS_NOISE_MEASUREMENT``, before the first frame) prewhiten; calibration-only spokes
    (``ACQ_IS_PARALLEL_CALIBRATION``) are a pre-scan for the maps; navigator, feedback and dummy
    scans are skipped; ``discard_pre``/``discard_post`` samples are dropped. Trajectory units: the
    header's ``trajectory_units`` declaration, else "normalized" when the first spoke stays within
    +-0.5 (Gadgetron's convention, the file reader's rule), else cycles/FOV; ``trajectory_units``
    forces one. ``crop``: the in-plane recon matrix (y, x) when smaller than the encoded one.
    """

    def __init__(self, header, config: RealtimeConfig | None = None, *, device=None,
                 trajectory_units: str = "auto"):
        from ..io.ismrmrd_header import IsmrmrdHeader, parse_ismrmrd_header

        if not isinstance(header, IsmrmrdHeader):
            header = parse_ismrmrd_header(header)
        self.header = header
        self.config = (config or RealtimeConfig()).validate()
        x, y, z = header.encoded_matrix
        if z > 1:
            raise ValueError(f"real-time frames are 2D; the encoded matrix is 3D ({x} x {y} x {z})")
        self.im_shape = (int(y), int(x))
        rx, ry, _ = header.recon_matrix
        self.crop = (min(ry, y), min(rx, x)) if (0 < rx < x or 0 < ry < y) else None
        if trajectory_units == "auto":
            declared = header.trajectory_params.get("trajectory_units")
            trajectory_units = declared if declared in ("normalized", "cycles_per_fov") else "auto"
        if trajectory_units not in ("auto", "normalized", "cycles_per_fov"):
            raise ValueError(f"trajectory_units must be 'auto', 'normalized' or 'cycles_per_fov', got {trajectory_units!r}")
        self.units = trajectory_units
        self.device = device
        self.reconstructors = {}
        self._noise, self._noise_dwell, self._data_dwell = [], None, None
        self.skipped = 0

    def _reconstructor(self, key) -> RealtimeReconstructor:
        rt = self.reconstructors.get(key)
        if rt is None:
            noise, scale = None, 1.0
            if self._noise:
                noise = np.concatenate(self._noise, axis=1)
                if self._noise_dwell and self._data_dwell:
                    scale = self._noise_dwell / self._data_dwell
            rt = RealtimeReconstructor(self.im_shape, self.config, noise=noise, noise_scale=scale, device=self.device,
                                       key=key)
            self.reconstructors[key] = rt
        return rt

    def _cycles(self, traj):
        """A stored trajectory ``(samples, d)`` (ISMRMRD (kx, ky)) in cycles/FOV, image axis order."""
        if traj.ndim != 2 or traj.shape[1] != 2:
            raise ValueError(f"real-time frames need 2D trajectories in the acquisitions, got shape {traj.shape}")
        if self.units == "auto":
            self.units = "normalized" if np.abs(traj).max() <= 0.5 + 1e-4 else "cycles_per_fov"
        t = traj[:, ::-1].astype(np.float32)
        if self.units == "normalized":
            t = t * np.asarray(self.im_shape, dtype=np.float32)
        return t

    def add(self, head, traj, data) -> list:
        """One acquisition: ``head`` (one ``recon.io.mrd.ACQ_HEAD_DTYPE`` record), ``traj``
        ``(samples, d)`` float32 as stored, ``data`` ``(channels, samples)`` complex64. Returns the
        :class:`Window` of every frame that became due (their ``info`` is ``head``)."""
        flags = int(head["flags"])
        dwell = float(head["sample_time_us"])
        if _has(flags, ACQ_IS_NOISE_MEASUREMENT):
            if not self.reconstructors:
                self._noise.append(np.asarray(data))
                self._noise_dwell = self._noise_dwell or dwell
            return []
        if any(_has(flags, b) for b in NON_IMAGING_BITS) or int(head["encoding_space_ref"]) != 0:
            self.skipped += 1
            return []
        ns, pre, post = int(head["number_of_samples"]), int(head["discard_pre"]), int(head["discard_post"])
        if pre + post >= max(ns, 1):
            raise ValueError("acquisition: discard_pre + discard_post >= number_of_samples")
        coord = self._cycles(np.asarray(traj)[pre:ns - post])
        samples = np.asarray(data)[:, pre:ns - post]
        self._data_dwell = self._data_dwell or dwell
        rt = self._reconstructor(int(head["idx"]["slice"]))
        if _has(flags, ACQ_IS_PARALLEL_CALIBRATION) and not _has(flags, ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING):
            rt.add_calibration(samples, coord)
            return []
        return rt.add(samples, coord, time_stamp=int(head["acquisition_time_stamp"]), info=head)

    def reconstruct(self, window: Window) -> Frame:
        """The frame of a window returned by :meth:`add`."""
        return self.reconstructors[window.key].reconstruct(window)


@dataclass
class RealtimeResult:
    """What :func:`reconstruct_realtime` returns: ``frames`` complex64 ``(T, y, x)`` (numpy, or torch
    on the device); ``magnitude`` float32 ``(T, H, W)`` cropped to the recon matrix; ``spokes``
    ``(T, 2)`` first/last spoke of each frame; ``time_stamps`` ``(T,)`` of each frame's last spoke;
    ``seconds`` ``(T,)`` compute time per frame; ``info`` the parameters."""

    frames: object
    magnitude: np.ndarray
    spokes: np.ndarray
    time_stamps: np.ndarray
    seconds: np.ndarray
    info: dict = field(default_factory=dict)


def reconstruct_realtime(raw, config: RealtimeConfig | None = None, *, slice_index: int | None = None,
                         device=None) -> RealtimeResult:
    """Every sliding-window frame of one slice of a 2D radial ``recon.io.RawData`` (ISMRMRD file or
    stream): its acquisitions in arrival order through a :class:`RealtimeSession`, no frame dropped.
    ``slice_index``: which slice (None: the only one; ValueError when there are several)."""
    from .pipeline import centre_crop

    if getattr(raw, "acquisitions", None) is None:
        raise ValueError("reconstruct_realtime: needs raw data with acquisitions (ISMRMRD), not a fastMRI file")
    config = (config or RealtimeConfig()).validate()
    acq = raw.acquisitions
    imaging = raw.imaging if raw.imaging is not None else np.ones(len(acq), bool)
    slices = sorted(set(acq["slice"][imaging].tolist()))
    if not slices:
        raise ValueError(f"{raw.label}: no imaging acquisitions")
    if slice_index is None:
        if len(slices) > 1:
            raise ValueError(f"{raw.label}: {len(slices)} slices {slices}; choose one with slice_index")
        slice_index = slices[0]
    if slice_index not in slices:
        raise ValueError(f"slice_index {slice_index}: no imaging acquisitions; the data has slices {slices}")
    session = RealtimeSession(raw.header, config, device=device,
                              trajectory_units=raw.trajectory_units or raw._units)
    frames = []
    for i in range(len(acq)):
        h = acq.head[i]
        if not _has(int(h["flags"]), ACQ_IS_NOISE_MEASUREMENT) and int(h["idx"]["slice"]) != slice_index:
            continue
        for window in session.add(h, acq.traj[i], acq.data[i]):
            frames.append(session.reconstruct(window))
    if not frames:
        n = session.reconstructors[slice_index].spokes_received if slice_index in session.reconstructors else 0
        raise ValueError(f"{raw.label}: {n} spokes make no frame of window {config.frame_window} "
                         f"(spokes_per_frame {config.spokes_per_frame})")
    xp = _array.xp_of(frames[0].image)
    stack = xp.stack([f.image for f in frames])
    mags = np.stack([centre_crop(f.magnitude, session.crop) for f in frames])
    info = {"method": config.method, "spokes_per_frame": config.spokes_per_frame, "window": config.frame_window,
            "iters": config.iters, "first_iters": config.first_iters, "maps": config.maps, "dcf": config.dcf,
            "virtual_coils": config.virtual_coils or 0, "nufft_tol": config.nufft_tol, "slice": slice_index}
    return RealtimeResult(stack, mags, np.array([[f.first_spoke, f.last_spoke] for f in frames]),
                          np.array([f.time_stamp or 0 for f in frames], dtype=np.int64),
                          np.array([f.seconds for f in frames]), info)


__all__ = [
    "DCF_METHODS",
    "METHODS",
    "Frame",
    "RealtimeConfig",
    "RealtimeReconstructor",
    "RealtimeResult",
    "RealtimeSession",
    "Window",
    "radial_density",
    "reconstruct_realtime",
]
