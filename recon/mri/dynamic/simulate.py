"""Simulated free-breathing golden-angle acquisitions of the breathing abdomen, written as ISMRMRD.

::

    from recon.mri.dynamic import ScanConfig, simulate
    sim = simulate(ScanConfig(kind="stack-of-stars", matrix=(32, 192, 192), n_angles=600))
    sim.write("abdomen_4d.h5")                 # ISMRMRD: time stamps, counters, trajectories, bellows
    truth = sim.truth(si_mm=8.0)               # the true image of a motion state on the recon grid

Two acquisitions:

- ``"stack-of-stars"``: 3D axial slab, matrix ``(z, y, x)`` with z superior-inferior. Golden-angle
  spokes in-plane (``recon.mri.trajectory``); for each angle all ``z`` partitions are read one after
  the other (linear kz order, one readout every ``tr_ms``), so each angle holds a full kz line: the
  basis of self-gating (``recon.mri.dynamic.gating``) and of the split into 2D problems along z.
- ``"radial-2d"``: one coronal slice (``plane_y_mm``, ``slice_mm`` thick), matrix ``(si, x)`` (row 0
  superior), golden-angle spokes, one every ``tr_ms``.

**Every readout is computed at its own motion state**: readout ``r`` is acquired at ``t_r`` and sees
the phantom displaced by the breathing trace at ``t_r`` (``si(t_r)``, ``ap(t_r)``). Its k-space is the
NUFFT (``nufft_tol``) of the coil images of that state on the readout's own trajectory. Rasterising
the 3D phantom once per readout would cost ~10^4 rasterisations, so with ``state_step_mm > 0`` the
states are rasterised on a grid of SI displacements ``state_step_mm`` apart and the k-space of each
readout is interpolated linearly between its two neighbouring grid states (``state_step_mm = 0``:
one rasterisation per distinct state, exact). The phantom's edges are ~1 voxel wide, so the
interpolation error is second order in the step: measured against the exact state by a direct NUDFT
(tests/test_dynamic_simulate.py, 2 mm voxels, steps of 0.1 mm) it is 1.2e-3 relative for the stack of
stars and 1.2e-5 for 2D radial (the test allows 3e-3), against 1e-6 for the exact mode.

The file holds: one noise scan (``ACQ_IS_NOISE_MEASUREMENT``), then the readouts in time order with
``acquisition_time_stamp`` (ticks of ``TICK_MS`` = 2.5 ms, Siemens' and Gadgetron's clock),
``physiology_time_stamp[0]`` (ticks since the last end expiration: a respiratory trigger),
``kspace_encode_step_1`` = angle (spoke) index, ``kspace_encode_step_2`` = partition, the trajectory
(normalised units, declared in the header), and a respiratory bellows waveform (50 Hz,
``WAVEFORM_RESPIRATORY``; :func:`recon.mri.dynamic.breathing.bellows_signal`). Ground truth for tests
and benchmarks, never read by the reconstruction: ``user_float[0]``/``[1]`` hold the true SI/AP
displacement (mm) of each readout, and the header's trajectoryDescription holds this configuration
as JSON (userParameterString ``recon_simulation``), from which :func:`simulation_from_raw` rebuilds
the phantom and its true images.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..trajectory import radial_2d
from .breathing import BreathingTrace, bellows_signal, breathing_trace
from .phantom import AbdomenPhantom, Grid, coil_maps

#: acquisition_time_stamp tick written by the simulator (ms)
TICK_MS = 2.5
#: bellows sampling (ms) and samples per waveform block
BELLOWS_DT_MS = 20.0
BELLOWS_BLOCK = 50
KINDS = ("stack-of-stars", "radial-2d")


@dataclass
class ScanConfig:
    """What to simulate (module docstring). Sizes: ``matrix`` ``(z, y, x)`` and ``fov_mm`` for
    stack-of-stars, ``(si, x)`` for radial-2d; ``n_angles`` golden-angle angles (each with all
    partitions) or 2D spokes; ``oversampling`` readout samples per matrix size (2: the usual 2x);
    ``noise`` complex Gaussian standard deviation per real/imaginary part of each sample, in the
    phantom's intensity units (the orthonormal NUFFT keeps image and k-space noise levels equal);
    ``breathing`` keyword arguments of :func:`recon.mri.dynamic.breathing.breathing_trace`."""

    kind: str = "stack-of-stars"
    matrix: tuple = (32, 192, 192)
    fov_mm: tuple = (160.0, 360.0, 360.0)
    n_angles: int = 600
    oversampling: int = 2
    n_coils: int = 8
    tr_ms: float = 4.0
    noise: float = 0.01
    seed: int = 0
    lesion: bool = True
    plane_y_mm: float = -20.0
    slice_mm: float = 8.0
    state_step_mm: float | None = None
    nufft_tol: float = 1e-5
    breathing: dict = field(default_factory=dict)

    def validate(self) -> ScanConfig:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        nd = 3 if self.kind == "stack-of-stars" else 2
        if len(self.matrix) != nd or len(self.fov_mm) != nd:
            raise ValueError(f"{self.kind}: matrix and fov_mm need {nd} entries, got {self.matrix}, {self.fov_mm}")
        for name in ("n_angles", "oversampling", "n_coils"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v}")
        if any(isinstance(n, bool) or int(n) != n or n < 2 for n in self.matrix):
            raise ValueError(f"matrix sizes must be integers >= 2, got {self.matrix}")
        for name in ("tr_ms", "slice_mm", "nufft_tol") + tuple(f"fov_mm[{i}]" for i in range(nd)):
            v = self.fov_mm[int(name[-2])] if name.startswith("fov") else getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v}")
        for name in ("noise", "state_step_mm"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        return self

    def state_step(self, ap_ratio: float) -> float:
        """The grid of rasterised states (mm of SI displacement): ``state_step_mm``, or by default 5 %
        of the voxel along the motion (the SI voxel, or the AP voxel / ``ap_ratio``)."""
        if self.state_step_mm is not None:
            return float(self.state_step_mm)
        v = [f / n for f, n in zip(self.fov_mm, self.matrix)]
        v_si, v_ap = (v[0], v[1]) if self.kind == "stack-of-stars" else (v[0], self.slice_mm)
        return 0.05 * min(v_si, v_ap / ap_ratio if ap_ratio > 0 else math.inf)

    @property
    def readouts(self) -> int:
        return self.n_angles * (self.matrix[0] if self.kind == "stack-of-stars" else 1)

    @property
    def duration_s(self) -> float:
        return self.readouts * self.tr_ms / 1000.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScanConfig:
        d = json.loads(text)
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"simulation record has unknown fields {sorted(unknown)}")
        for k in ("matrix", "fov_mm"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d).validate()


#: the bundled sample ``recon mri --sample abdomen-4d-sos`` (recon/data/mri/abdomen_4d_sos.h5): a small 3D
#: stack of stars (12 x 64 x 64, 10 x 5.6 x 5.6 mm, 4 coils, 128 angles, readouts without oversampling)
#: read slowly (a readout every 25 ms, an angle every 0.3 s) so that 4.9 MB span 38 s, nine breaths, one deep
SAMPLE_CONFIG = ScanConfig(kind="stack-of-stars", matrix=(12, 64, 64), fov_mm=(120.0, 360.0, 360.0), n_angles=128,
                           oversampling=1, n_coils=4, tr_ms=25.0, noise=0.01, seed=1)


@dataclass
class Simulation:
    """A simulated acquisition: ``samples`` ``(R, C, S)`` complex64 (readouts in time order),
    ``coord`` ``(R, S, d)`` float32 cycles/FOV in image-axis order, ``times_s`` ``(R,)``, ``angle`` and
    ``partition`` ``(R,)`` (spoke index, kz partition), the true ``si_mm``/``ap_mm`` ``(R,)`` of every
    readout, the breathing ``trace``, the coil ``maps`` ``(C, *im_shape)`` and the ``noise_std``."""

    config: ScanConfig
    samples: np.ndarray
    coord: np.ndarray
    times_s: np.ndarray
    angle: np.ndarray
    partition: np.ndarray
    si_mm: np.ndarray
    ap_mm: np.ndarray
    trace: BreathingTrace
    maps: np.ndarray

    @property
    def im_shape(self) -> tuple:
        return tuple(self.config.matrix)

    @property
    def voxel_mm(self) -> tuple:
        return tuple(f / n for f, n in zip(self.config.fov_mm, self.config.matrix))

    def phantom(self, lesion: bool | None = None) -> AbdomenPhantom:
        return _phantom(self.config, lesion)

    def truth(self, si_mm: float, ap_mm: float | None = None, *, lesion: bool | None = None) -> np.ndarray:
        """The true complex image (``im_shape``) of a motion state (``ap_mm`` default: the trace's
        ratio times ``si_mm``); ``lesion=False`` leaves the lesion out (a prior that differs)."""
        ap = self.trace.ap_ratio * si_mm if ap_mm is None else ap_mm
        return state_image(self.config, si_mm, ap, lesion=lesion)

    def write(self, path, *, overwrite: bool = True) -> str:
        """Write the acquisition as an ISMRMRD file (module docstring), atomically."""
        from ...io import write_ismrmrd_raw

        acq, wav, xml = _to_ismrmrd(self)
        return write_ismrmrd_raw(path, xml, acq, wav, overwrite=overwrite)


def _grid(config: ScanConfig) -> Grid:
    if config.kind == "stack-of-stars":
        return Grid(tuple(config.matrix), tuple(f / n for f, n in zip(config.fov_mm, config.matrix)))
    (nsi, nx), (fsi, fx) = config.matrix, config.fov_mm
    return Grid((nsi, 1, nx), (fsi / nsi, config.slice_mm, fx / nx), (0.0, config.plane_y_mm, 0.0))


def _to_image(config: ScanConfig, vol):
    """A phantom volume on :func:`_grid` as the scan's image: 3D as is; 2D coronal (si, x), row 0 superior."""
    return vol if config.kind == "stack-of-stars" else np.ascontiguousarray(vol[..., ::-1, 0, :])


def _phantom(config: ScanConfig, lesion=None) -> AbdomenPhantom:
    slab = None
    if config.kind == "stack-of-stars":
        half = config.fov_mm[0] / 2 - 0.5 * config.fov_mm[0] / config.matrix[0]
        slab = (-half, half - config.fov_mm[0] / config.matrix[0])
    return AbdomenPhantom(config.seed, lesion=config.lesion if lesion is None else bool(lesion), slab_mm=slab)


def state_image(config: ScanConfig, si_mm: float, ap_mm: float, *, lesion: bool | None = None,
                phantom: AbdomenPhantom | None = None) -> np.ndarray:
    """The phantom of one motion state on the scan's image grid (complex64, ``config.matrix``)."""
    ph = phantom if phantom is not None else _phantom(config, lesion)
    return _to_image(config, ph.image(_grid(config), float(si_mm), float(ap_mm)))


def scan_maps(config: ScanConfig) -> np.ndarray:
    """The coil maps ``(C, *matrix)`` of a scan (unit root-sum-of-squares)."""
    return _to_image(config, coil_maps(_grid(config), config.n_coils, seed=config.seed))


def acquisition_order(config: ScanConfig):
    """``(coord (R, S, d) float32 cycles/FOV, times_s (R,), angle (R,), partition (R,))`` of the scan's
    readouts in time order (module docstring)."""
    n_s = config.oversampling * max(config.matrix[-2:])
    tr = config.tr_ms / 1000.0
    if config.kind == "radial-2d":
        coord = radial_2d(config.n_angles, n_s, tuple(config.matrix))
        r = np.arange(config.n_angles)
        return coord, r * tr, r, np.zeros_like(r)
    nz, ny, nx = config.matrix
    spokes = radial_2d(config.n_angles, n_s, (ny, nx))                     # (A, S, 2)
    angle = np.repeat(np.arange(config.n_angles), nz)
    partition = np.tile(np.arange(nz), config.n_angles)
    coord = np.empty((angle.size, n_s, 3), dtype=np.float32)
    coord[..., 1:] = spokes[angle]
    coord[..., 0] = (partition - nz // 2)[:, None]
    return coord, np.arange(angle.size) * tr, angle, partition


def readout_kspace(images, maps, coord, states, *, state_step: float, tol: float = 1e-5) -> np.ndarray:
    """Multicoil k-space ``(R, C, S)`` complex64 of readouts ``coord`` ``(R, S, d)``, readout ``r`` seen at
    the motion state ``states[r]`` (SI mm): ``images(s)`` gives the image of state ``s``.

    ``state_step = 0``: one image per distinct state (exact). ``state_step > 0``: images on a grid of
    states ``state_step`` apart, each readout's k-space interpolated linearly between its neighbours."""
    from ...ops import Nufft

    states = np.asarray(states, dtype=np.float64)
    R, S, d = coord.shape
    im_shape = tuple(maps.shape[1:])
    out = np.zeros((R, maps.shape[0], S), dtype=np.complex128)
    if state_step == 0:
        keys, inv = np.unique(states, return_inverse=True)
        groups = [(s, inv == i, np.ones(R)) for i, s in enumerate(keys)]
    else:
        s0 = math.floor(states.min() / state_step) * state_step
        pos = (states - s0) / state_step
        lo = np.floor(pos).astype(np.int64)
        lam = pos - lo
        groups = []
        for q in range(int(lo.min()), int(lo.max()) + 2):
            w = np.where(lo == q, 1.0 - lam, 0.0) + np.where(lo + 1 == q, lam, 0.0)
            sel = w > 0
            if sel.any():
                groups.append((s0 + q * state_step, sel, w))
    for s, sel, w in groups:
        coils = (maps * images(s)[None]).astype(np.complex64)
        A = Nufft(np.ascontiguousarray(coord[sel]), im_shape, tol=tol)
        y = A(coils)                                                   # (C, n, S)
        out[sel] += w[sel, None, None] * np.moveaxis(y, 1, 0)
    return out.astype(np.complex64)


def simulate(config: ScanConfig | None = None) -> Simulation:
    """Simulate the acquisition described by ``config`` (default: ``ScanConfig()``)."""
    config = (config or ScanConfig()).validate()
    coord, times, angle, partition = acquisition_order(config)
    trace = breathing_trace(times[-1] + config.tr_ms / 1000.0, seed=config.seed, **config.breathing)
    si, ap = trace.si(times), trace.ap(times)
    maps = scan_maps(config)
    ph = _phantom(config)
    y = readout_kspace(lambda s: state_image(config, s, trace.ap_ratio * s, phantom=ph), maps, coord, si,
                       state_step=config.state_step(trace.ap_ratio), tol=config.nufft_tol)
    if config.noise > 0:
        rng = np.random.default_rng(config.seed + 1000)
        y += (config.noise * (rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape))).astype(np.complex64)
    return Simulation(config, y, coord, times, angle, partition, si, ap, trace, maps)


# ---- ISMRMRD ----------------------------------------------------------------------------------------

def _to_ismrmrd(sim: Simulation):
    from ...io import Acquisitions, Waveforms, build_ismrmrd_header
    from ...io.mrd import (
        ACQ_FIRST_IN_SLICE,
        ACQ_HEAD_DTYPE,
        ACQ_IS_NOISE_MEASUREMENT,
        ACQ_LAST_IN_MEASUREMENT,
        ACQ_LAST_IN_SLICE,
        WAVEFORM_HEAD_DTYPE,
        WAVEFORM_RESPIRATORY,
        flag,
    )

    cfg = sim.config
    R, C, S = sim.samples.shape
    d = sim.coord.shape[-1]
    matrix = tuple(cfg.matrix)
    rng = np.random.default_rng(cfg.seed + 2000)
    n_noise = 256
    noise = (max(cfg.noise, 1e-12) * (rng.standard_normal((C, n_noise)) + 1j * rng.standard_normal((C, n_noise))))
    head = np.zeros(R + 1, dtype=ACQ_HEAD_DTYPE)
    head["version"] = 1
    head["read_dir"], head["phase_dir"], head["slice_dir"] = (1, 0, 0), (0, 1, 0), (0, 0, 1)
    head["available_channels"] = head["active_channels"] = C
    mask = np.zeros(16, dtype=np.uint64)
    for c in range(C):
        mask[c // 64] |= np.uint64(1) << np.uint64(c % 64)
    head["channel_mask"] = mask
    head["sample_time_us"] = 2.0
    head["scan_counter"] = np.arange(R + 1)
    head[0]["flags"] = flag(ACQ_IS_NOISE_MEASUREMENT)
    head[0]["number_of_samples"] = n_noise
    img = head[1:]
    ticks = np.rint(sim.times_s * 1000.0 / TICK_MS).astype(np.int64)
    img["acquisition_time_stamp"] = ticks
    starts = sim.trace.breath_starts_s
    last = starts[np.clip(np.searchsorted(starts, sim.times_s, side="right") - 1, 0, None)]
    img["physiology_time_stamp"][:, 0] = np.rint(np.maximum(sim.times_s - last, 0) * 1000.0 / TICK_MS)
    img["number_of_samples"] = S
    img["center_sample"] = S // 2
    img["trajectory_dimensions"] = d
    img["idx"]["kspace_encode_step_1"] = sim.angle
    img["idx"]["kspace_encode_step_2"] = sim.partition
    img["user_float"][:, 0] = sim.si_mm
    img["user_float"][:, 1] = sim.ap_mm
    img["flags"][0] |= np.uint64(flag(ACQ_FIRST_IN_SLICE))
    img["flags"][-1] |= np.uint64(flag(ACQ_LAST_IN_SLICE) | flag(ACQ_LAST_IN_MEASUREMENT))
    head[1:] = img
    # trajectory: normalised (cycles/sample), ISMRMRD's (kx, ky[, kz]) order
    size = np.asarray(matrix, dtype=np.float64)
    traj = (sim.coord / size).astype(np.float32)[..., ::-1]
    datas = [noise.astype(np.complex64)] + list(sim.samples)
    trajs = [np.zeros((n_noise, 0), np.float32)] + [np.ascontiguousarray(t) for t in traj]
    acq = Acquisitions(head, datas, trajs)
    # bellows waveform
    t_w = np.arange(0.0, sim.times_s[-1] + cfg.tr_ms / 1000.0, BELLOWS_DT_MS / 1000.0)
    values = bellows_signal(sim.trace, t_w, seed=cfg.seed)
    n_blocks = int(math.ceil(t_w.size / BELLOWS_BLOCK))
    whead = np.zeros(n_blocks, dtype=WAVEFORM_HEAD_DTYPE)
    wdata = []
    for b in range(n_blocks):
        part = values[b * BELLOWS_BLOCK:(b + 1) * BELLOWS_BLOCK]
        whead[b]["version"] = 1
        whead[b]["scan_counter"] = b
        whead[b]["time_stamp"] = int(round(t_w[b * BELLOWS_BLOCK] * 1000.0 / TICK_MS))
        whead[b]["number_of_samples"] = part.size
        whead[b]["channels"] = 1
        whead[b]["sample_time_us"] = BELLOWS_DT_MS * 1000.0
        whead[b]["waveform_id"] = WAVEFORM_RESPIRATORY
        wdata.append(part[None].astype(np.uint32))
    wav = Waveforms(whead, wdata)
    if cfg.kind == "stack-of-stars":
        nz, ny, nx = matrix
        fz, fy, fx = cfg.fov_mm
        limits = {"kspace_encoding_step_1": (0, cfg.n_angles - 1, 0), "kspace_encoding_step_2": (0, nz - 1, nz // 2)}
        ident = "golden-angle stack of stars, linear kz per angle"
    else:
        (ny, nx), (fy, fx), nz, fz = matrix, cfg.fov_mm, 1, cfg.slice_mm
        limits = {"kspace_encoding_step_1": (0, cfg.n_angles - 1, 0)}
        ident = "golden-angle radial 2D (coronal)"
    xml = build_ismrmrd_header((nx, ny, nz), (fx, fy, fz), limits=limits, trajectory="radial",
                               trajectory_identifier=ident,
                               trajectory_params={"trajectory_units": "normalized", "recon_simulation": cfg.to_json()},
                               receiver_channels=C, tr_ms=float(cfg.tr_ms), sequence_type="simulated GRE")
    return acq, wav, xml


def simulation_from_raw(raw):
    """``(ScanConfig, si_mm (R,), ap_mm (R,))`` of a file written by :meth:`Simulation.write`: the
    configuration (to rebuild the phantom: :func:`state_image`) and the true displacement of each
    imaging readout (in file order). ValueError for a file the simulator did not write."""
    text = raw.header.trajectory_params.get("recon_simulation")
    if not isinstance(text, str):
        raise ValueError(f"{raw.label}: not written by recon's simulator (no 'recon_simulation' record)")
    try:
        cfg = ScanConfig.from_json(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{raw.label}: damaged simulation record: {exc}") from None
    uf = raw.acquisitions.head["user_float"][raw.imaging]
    return cfg, uf[:, 0].astype(np.float64), uf[:, 1].astype(np.float64)
