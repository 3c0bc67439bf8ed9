"""Outputs of a motion-resolved reconstruction (all written atomically, ``recon.io.atomic``).

- :func:`write_dynamic_h5`: HDF5 with ``reconstruction`` (float32 magnitudes ``(bins, z, y, x)``),
  ``respiratory_signal``, ``bin_index`` (-1 rejected) and ``readout_time_s`` (one value per imaging
  readout, file order), ``bin_ranges`` ``(bins, 2)`` (each bin's interval of the binned quantity:
  signal for amplitude binning, phase in [0, 1) for phase binning), ``angle_signal`` and
  ``angle_time_s`` (per angle), ``bellows`` (per angle, when the data had one); the method's
  parameters as attributes of the file.
- :func:`write_dicom_4d`: one DICOM MR series holding every bin: slices of bin ``b`` carry
  ``TemporalPositionIdentifier = b + 1``, ``NumberOfTemporalPositions``, InstanceNumbers in (bin,
  slice) order and the bin's signal range in ``ImageComments``.
- NIfTI 4D: ``recon.io.write_nifti`` of ``(bins, z, y, x)``.
- :func:`write_gif` / :func:`write_strip`: a quick look, one frame per bin (a z slice and a coronal
  reformat side by side, the coronal scaled to square voxels), as an animated GIF or a PNG strip.
- :func:`plot_signal`: the respiratory signal over time coloured by bin (rejected in grey), the
  bellows when present, and the bins' ranges.
"""

from __future__ import annotations

import os

import numpy as np


def write_dynamic_h5(path, result, *, attrs: dict | None = None, overwrite: bool = True) -> str:
    """The HDF5 output of a :class:`~recon.mri.dynamic.pipeline.DynamicResult` (module docstring)."""
    from ...io.hdf5 import write_hdf5

    v = np.asarray(result.volume, dtype=np.float32)
    if v.ndim != 4 or not np.all(np.isfinite(v)):
        raise ValueError(f"reconstruction must be finite (bins, z, y, x), got shape {v.shape}")
    a = dict(attrs or {})
    a.update({k: val for k, val in result.info.items() if isinstance(val, (int, float, str, bool, np.number))})
    a["voxel_size_mm"] = np.asarray(result.voxel_mm, dtype=np.float64)
    a["axes"] = "bins, z, y, x"
    sig = result.signal

    def fill(hf):
        hf.create_dataset("reconstruction", data=v, compression="gzip")
        hf.create_dataset("respiratory_signal", data=np.asarray(result.respiratory_signal, dtype=np.float32))
        hf.create_dataset("bin_index", data=np.asarray(result.bin_index, dtype=np.int16))
        hf.create_dataset("readout_time_s", data=np.asarray(result.readout_time_s, dtype=np.float64))
        hf.create_dataset("bin_ranges", data=np.asarray(result.bins.ranges, dtype=np.float64))
        hf.create_dataset("angle_signal", data=np.asarray(sig.signal, dtype=np.float32))
        hf.create_dataset("angle_time_s", data=np.asarray(sig.times_s, dtype=np.float64))
        hf.create_dataset("angle_bin_index", data=np.asarray(result.bins.index, dtype=np.int16))
        if sig.bellows is not None:
            hf.create_dataset("bellows", data=np.asarray(sig.bellows, dtype=np.float32))
        for k, val in a.items():
            hf.attrs[k] = val

    return write_hdf5(path, fill, overwrite=overwrite)


def write_dicom_4d(directory, volume, voxel_mm, *, ranges=None, series_description: str = "recon 4D",
                   overwrite: bool = True) -> list:
    """One MR series of all bins ``(bins, z, y, x)`` (module docstring); returns the file paths."""
    import shutil

    import pydicom
    from pydicom.uid import generate_uid

    from ...io import atomic_folder, write_dicom_series

    v = np.asarray(volume)
    if v.ndim != 4 or min(v.shape) < 1:
        raise ValueError(f"volume must be (bins, z, y, x), got shape {v.shape}")
    B, Z = v.shape[:2]
    study, frame, series = generate_uid(), generate_uid(), generate_uid()
    directory = os.fspath(directory)
    names = []
    with atomic_folder(directory, overwrite=overwrite, replaceable=lambda n: n.endswith(".dcm")) as tmp:
        for b in range(B):
            sub = os.path.join(tmp, f"bin{b:02d}")
            files = write_dicom_series(sub, v[b], voxel_mm, series_description=series_description, study_uid=study,
                                       frame_of_reference_uid=frame, acquisition_type="3D" if Z > 1 else "2D",
                                       prefix=f"bin{b:02d}")
            for k, f in enumerate(files):
                ds = pydicom.dcmread(f)
                ds.SeriesInstanceUID = series
                ds.InstanceNumber = b * Z + k + 1
                ds.TemporalPositionIdentifier = b + 1
                ds.NumberOfTemporalPositions = B
                if ranges is not None:
                    lo, hi = (float(x) for x in ranges[b])
                    ds.ImageComments = f"respiratory bin {b} of {B}: signal {lo:.4g} .. {hi:.4g}"
                name = os.path.basename(f)
                ds.save_as(os.path.join(tmp, name), enforce_file_format=True)
                names.append(name)
            shutil.rmtree(sub)
    return [os.path.join(directory, n) for n in names]


def _frames(volume, voxel_mm, z_index=None, y_index=None):
    """One uint8 frame per bin: the z slice ``z_index`` (default the middle) next to the coronal
    reformat at ``y_index`` (default the middle) stretched to square voxels; one window for all."""
    from PIL import Image

    from ...io import window

    v = np.abs(np.asarray(volume, dtype=np.float32))
    B, Z, Y, X = v.shape
    z = Z // 2 if z_index is None else int(z_index)
    y = Y // 2 if y_index is None else int(y_index)
    lo, hi = np.percentile(v, [0.5, 99.5])
    frames = []
    for b in range(B):
        ax = window(v[b, z], vmin=lo, vmax=hi)
        if Z > 1:
            cor = window(v[b, ::-1, y, :], vmin=lo, vmax=hi)                  # superior at the top
            h = max(1, int(round(Z * voxel_mm[0] / voxel_mm[2])))
            cor = np.asarray(Image.fromarray(cor).resize((X, h), Image.BILINEAR))
            pad = np.zeros((max(Y, h) - Y, X), np.uint8)
            ax = np.vstack([ax, pad]) if pad.size else ax
            cor = np.vstack([cor, np.zeros((max(Y, h) - h, X), np.uint8)]) if h < Y else cor
            frame = np.hstack([ax, np.full((ax.shape[0], 2), 255, np.uint8), cor])
        else:
            frame = ax
        frames.append(frame)
    return frames


def write_gif(path, volume, voxel_mm, *, fps: float = 4.0, z_index=None, y_index=None, overwrite: bool = True) -> str:
    """An animated GIF cycling through the bins (module docstring)."""
    from PIL import Image

    from ...io import atomic_file

    imgs = [Image.fromarray(f, mode="L") for f in _frames(volume, voxel_mm, z_index, y_index)]
    if not imgs:
        raise ValueError("write_gif: no bins")
    # end expiration -> end inspiration -> back: a breathing loop
    seq = imgs + imgs[-2:0:-1]
    with atomic_file(path, overwrite=overwrite) as tmp:
        seq[0].save(tmp, format="GIF", save_all=True, append_images=seq[1:], duration=int(1000 / fps), loop=0)
    return os.fspath(path)


def write_strip(path, volume, voxel_mm, *, z_index=None, y_index=None, overwrite: bool = True) -> str:
    """A PNG strip of the bins' frames side by side (module docstring)."""
    from PIL import Image

    from ...io import atomic_file

    frames = _frames(volume, voxel_mm, z_index, y_index)
    gap = np.full((frames[0].shape[0], 4), 255, np.uint8)
    strip = np.hstack([p for f in frames for p in (f, gap)][:-1])
    with atomic_file(path, overwrite=overwrite) as tmp:
        Image.fromarray(strip, mode="L").save(tmp, format="PNG")
    return os.fspath(path)


def plot_signal(path, signal, bins, *, truth=None, title: str | None = None, overwrite: bool = True) -> str:
    """PNG of the respiratory signal per angle coloured by bin (module docstring); ``truth`` an
    optional true displacement per angle (mm, drawn on a second axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...io import atomic_file

    t, s = signal.times_s, signal.signal
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    cmap = plt.get_cmap("viridis", max(bins.n_bins, 2))
    ax.plot(t, s, color="0.75", lw=0.8, zorder=1)
    rej = bins.index < 0
    ax.scatter(t[rej], s[rej], s=8, color="0.5", marker="x", label="rejected", zorder=2)
    for b in range(bins.n_bins):
        m = bins.index == b
        ax.scatter(t[m], s[m], s=8, color=cmap(b), label=f"bin {b}", zorder=3)
    if signal.bellows is not None:
        bl = signal.bellows
        lo, hi = np.percentile(bl, [5, 95])
        ax.plot(t, (bl - lo) / (hi - lo if hi > lo else 1.0), color="tab:red", lw=0.8, alpha=0.6,
                label=f"bellows (r = {signal.bellows_correlation:.3f})")
    if truth is not None:
        ax2 = ax.twinx()
        ax2.plot(t, truth, color="k", lw=0.6, ls="--", label="true SI (mm)")
        ax2.set_ylabel("true SI displacement (mm)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"respiratory signal ({signal.source})")
    ax.set_title(title or f"{bins.method} binning, {bins.n_bins} bins ({bins.edges}), "
                          f"{int(rej.sum())} of {rej.size} angles rejected")
    ax.legend(loc="upper right", fontsize=7, ncol=min(bins.n_bins + 2, 8), markerscale=1.5)
    fig.tight_layout()
    with atomic_file(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return os.fspath(path)
