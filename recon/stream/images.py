"""MRD images out: recon's magnitudes as ``ismrmrd.Image`` with the header and meta attributes filled.

Header: ``matrix_size`` (x, y, z) of the data, ``field_of_view`` (mm, x, y, z: the recon FOV of the
ISMRMRD header, the slice thickness for z of a 2D slice), ``position``, ``read_dir``, ``phase_dir``,
``slice_dir``, ``patient_table_position``, the counters (``average``, ``slice``, ``contrast``,
``phase``, ``repetition``, ``set``), ``acquisition_time_stamp`` and ``physiology_time_stamp`` of the
acquisition that completed the image; ``image_type`` magnitude, ``data_type`` float, ``image_index``
(1, 2, ... per connection) and ``image_series_index``; for real-time frames ``phase`` (and
``user_int[0]``) is the frame number. Meta attributes (``ismrmrd.Meta``, XML): ``recon.method``,
``recon.parameters`` (JSON), ``recon.last_scan_counter`` (the acquisition that completed the
image), ``recon.seconds`` (compute time), and what the pipeline adds (real-time: frame, spokes,
frames dropped so far).
"""

from __future__ import annotations

import json

import numpy as np

IMTYPE_MAGNITUDE = 1
_COPIED = ("measurement_uid", "position", "read_dir", "phase_dir", "slice_dir", "patient_table_position",
           "acquisition_time_stamp", "physiology_time_stamp")
_COUNTERS = ("average", "slice", "contrast", "phase", "repetition", "set")


def mrd_image(values, head, *, fov_mm, image_index: int, series: int = 1, frame: int | None = None,
              meta: dict | None = None):
    """An ``ismrmrd.Image`` of float32 ``values`` ((y, x) or (z, y, x)) with the geometry and counters
    of acquisition header ``head`` (a ``recon.io.mrd.ACQ_HEAD_DTYPE`` record), ``fov_mm`` (x, y, z)
    and the module docstring's fields. ``meta`` values that are not str/int/float go in as JSON."""
    import ismrmrd

    v = np.ascontiguousarray(values, dtype=np.float32)
    if v.ndim not in (2, 3):
        raise ValueError(f"image values must be (y, x) or (z, y, x), got shape {v.shape}")
    img = ismrmrd.Image.from_array(v)
    h = img.getHead()
    for name in _COPIED:
        val = head[name]
        if np.ndim(val):
            for i, x in enumerate(np.asarray(val).tolist()):
                getattr(h, name)[i] = x
        else:
            setattr(h, name, val.item() if hasattr(val, "item") else val)
    for name in _COUNTERS:
        setattr(h, name, int(head["idx"][name]))
    for i, x in enumerate(fov_mm):
        h.field_of_view[i] = float(x)
    h.image_type = IMTYPE_MAGNITUDE
    h.image_index = int(image_index) & 0xFFFF
    h.image_series_index = int(series) & 0xFFFF
    if frame is not None:
        h.phase = int(frame) & 0xFFFF
        h.user_int[0] = int(frame)
    img.setHead(h)
    m = ismrmrd.Meta()
    for k, val in (meta or {}).items():
        m[k] = val if isinstance(val, (str, int, float)) else json.dumps(val, default=str)
    img.attribute_string = m.serialize()
    return img


def image_meta(image) -> dict:
    """The meta attributes of an image as a dict (received images' XML was checked by
    ``recon.stream.wire.read_image``)."""
    return dict(image.meta)
