"""Free-breathing radial data arranged for motion-resolved work: spokes (angles) in time order.

:func:`spokes_from_raw` turns a ``recon.io.RawData`` of a golden-angle acquisition into
:class:`SpokeData`:

- **stack of stars** (3D trajectory, Cartesian kz): the readouts are grouped into angles (one
  in-plane spoke read at every kz partition: ``kspace_encode_step_1`` names the angle, and the
  in-plane trajectory must agree within the group), each angle must hold every partition of the
  encoded matrix exactly once (the kz line that self-gating and the split along z need), and the
  partitions are ordered by kz from ``-Nz/2``;
- **2D radial** (2D trajectory): one spoke per readout, ``Nz = 1``.

Angles are ordered by time (the mean ``acquisition_time_stamp`` of their readouts). Time stamps are
ISMRMRD ticks of ``tick_ms`` (2.5 ms on Siemens and in Gadgetron; recon's simulator writes 2.5 ms);
only time differences matter. The data are noise-prewhitened (the file's noise scans) and
coil-compressed when asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class SpokeData:
    """Golden-angle data by angle. ``kspace`` ``(C, A, Z, S)`` complex64 (coil, angle in time order,
    kz partition from ``-Z/2``, readout sample); ``spokes`` ``(A, S, 2)`` float32 in-plane trajectory
    (ky, kx) in cycles/FOV; ``kz`` ``(Z,)`` partition wave numbers; ``times_s`` ``(A, Z)`` acquisition
    time of every readout (s from the first); ``readout`` ``(A, Z)`` the row of each readout among the
    file's imaging acquisitions (arrival order), so per-readout results can be given in file order;
    ``im_shape`` ``(Z, Ny, Nx)``; ``voxel_mm`` ``(dz, dy, dx)``; ``coil_matrix`` ``(C, C_file)`` the
    prewhitening and compression applied to the file's coils (None: none), for data that arrive later
    (:mod:`recon.mri.dynamic.mrsigma`)."""

    kspace: np.ndarray
    spokes: np.ndarray
    kz: np.ndarray
    times_s: np.ndarray
    readout: np.ndarray
    im_shape: tuple
    voxel_mm: tuple
    label: str = "<data>"
    coil_matrix: np.ndarray | None = None

    @property
    def n_angles(self) -> int:
        return self.kspace.shape[1]

    @property
    def n_coils(self) -> int:
        return self.kspace.shape[0]

    @property
    def angle_times_s(self) -> np.ndarray:
        """Mean acquisition time of each angle (s)."""
        return self.times_s.mean(axis=1)

    @property
    def n_readouts(self) -> int:
        return self.readout.size

    def slices(self) -> np.ndarray:
        """Hybrid data ``(C, A, Z, S)`` -> ``(Z, C, A, S)``: each z slice's own 2D radial data (centred
        orthonormal inverse FFT along kz, recon's convention: a 3D NUFFT with integer kz is the kz FFT of
        2D NUFFTs of the slices)."""
        from ..coils import centered_fft

        k = self.kspace if self.kspace.shape[2] == 1 else centered_fft(self.kspace, (2,), inverse=True)
        return np.ascontiguousarray(np.moveaxis(k, 2, 0)).astype(np.complex64, copy=False)

    def subset(self, angles) -> SpokeData:
        """The data of some angles (an index array or boolean mask over angles)."""
        a = np.arange(self.n_angles)[angles]
        return SpokeData(self.kspace[:, a], self.spokes[a], self.kz, self.times_s[a], self.readout[a], self.im_shape,
                         self.voxel_mm, self.label, self.coil_matrix)


def _check_times(stamps, label, tick_ms):
    if stamps.size and not np.any(stamps != stamps[0]):
        raise ValueError(f"{label}: every imaging readout has acquisition_time_stamp {int(stamps[0])}: motion-resolved "
                         "reconstruction needs the time of each readout (no time stamps in this file)")
    if not (math.isfinite(tick_ms) and tick_ms > 0):
        raise ValueError(f"tick_ms must be a positive number, got {tick_ms}")


def spokes_from_raw(raw, *, tick_ms: float = 2.5, virtual_coils: int | None = None,
                    prewhiten: bool = True) -> SpokeData:
    """:class:`SpokeData` of a golden-angle radial or stack-of-stars ``recon.io.RawData`` (module
    docstring). ValueError, naming the file, for Cartesian data, missing time stamps, fewer than two
    spokes, NaN/Inf samples or trajectory, or a stack of stars whose angles lack partitions."""
    from ..coils import coil_compress
    from ..noise import prewhiten as whiten

    label = raw.label
    if raw.acquisitions is None or raw.is_cartesian:
        raise ValueError(f"{label}: motion-resolved reconstruction needs radial (golden-angle) data; this is Cartesian")
    samples, traj, counters = raw.samples, raw.trajectory, raw.counters  # (N, C, S), (N, S, d)
    if samples.shape[0] < 2:
        raise ValueError(f"{label}: a single spoke: motion-resolved reconstruction needs many spokes")
    for name, arr in (("k-space samples", samples), ("trajectory", traj)):
        bad = ~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
        if bad.any():
            raise ValueError(f"{label}: {name} contain NaN or Inf (imaging readout {int(np.argmax(bad))} and "
                             f"{int(bad.sum()) - 1} more)")
    stamps = raw.acquisitions.head["acquisition_time_stamp"][raw.imaging].astype(np.float64)
    _check_times(stamps, label, tick_ms)
    times = (stamps - stamps.min()) * (tick_ms / 1000.0)
    im_shape = tuple(raw.image_shape)
    d = traj.shape[-1]
    vz, vy, vx = raw.voxel_size_mm
    if d == 2:
        order = np.argsort(times, kind="stable")
        readout = order[:, None]
        kz = np.zeros(1)
        spokes = traj[order]
        im3 = (1,) + im_shape
    else:
        readout, kz, spokes = _stack_of_stars(traj, counters, times, im_shape, label)
        im3 = im_shape
    if readout.shape[0] < 2:
        raise ValueError(f"{label}: {readout.shape[0]} spoke(s): motion-resolved reconstruction needs many spokes")
    k = samples[readout]                                     # (A, Z, C, S)
    k = np.ascontiguousarray(np.transpose(k, (2, 0, 1, 3)))  # (C, A, Z, S)
    M = None
    if prewhiten and raw.noise is not None:
        k, M = whiten(k, raw.noise, scale=raw.noise_scale)
    if virtual_coils is not None and virtual_coils < k.shape[0]:
        k, U, _ = coil_compress(k, virtual_coils)
        M = U if M is None else U @ M
    return SpokeData(k.astype(np.complex64, copy=False), np.ascontiguousarray(spokes, dtype=np.float32), kz,
                     times[readout], readout, im3, (vz, vy, vx), label, M)


def _stack_of_stars(traj, counters, times, im_shape, label):
    """(readout (A, Z), kz (Z,), spokes (A, S, 2)) of stack-of-stars readouts (module docstring)."""
    nz = im_shape[0]
    kzs = traj[..., 0]
    kz_row = np.round(kzs[:, 0]).astype(np.int64)
    if np.abs(kzs - kz_row[:, None]).max() > 1e-3:
        raise ValueError(f"{label}: 3D trajectory is not a stack of stars (kz varies along readouts or is not an "
                         "integer number of cycles/FOV): only stack-of-stars 3D data are supported")
    want = np.arange(nz) - nz // 2
    angle_id = counters["kspace_encode_step_1"]
    ids, inv = np.unique(angle_id, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv, minlength=ids.size)
    if np.any(counts != nz):
        bad = int(ids[np.flatnonzero(counts != nz)[0]])
        raise ValueError(f"{label}: stack-of-stars angle {bad} (kspace_encode_step_1) has {int(counts[counts != nz][0])}"
                         f" readouts, expected one per partition ({nz}): every angle needs its full kz line")
    rows = np.argsort(inv * (nz + 1) + (kz_row - want[0]), kind="stable").reshape(ids.size, nz)
    if np.any(kz_row[rows] != want[None, :]):
        a = int(ids[np.flatnonzero(np.any(kz_row[rows] != want[None, :], axis=1))[0]])
        raise ValueError(f"{label}: stack-of-stars angle {a} does not hold each kz partition {want[0]}..{want[-1]} "
                         "once")
    inplane = traj[rows][..., 1:]                                       # (A, Z, S, 2)
    if np.abs(inplane - inplane[:, :1]).max() > 1e-3 * max(im_shape[1:]):
        raise ValueError(f"{label}: the readouts of one angle (kspace_encode_step_1) have different in-plane "
                         "trajectories")
    order = np.argsort(times[rows].mean(axis=1), kind="stable")
    rows = rows[order]
    return rows, want.astype(np.float64), inplane[order, 0]
