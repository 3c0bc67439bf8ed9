"""ISMRMRD XML header: parse the fields recon uses, and build small valid headers.

fastMRI files carry the ISMRMRD header of their raw scan (dataset ``ismrmrd_header``), ISMRMRD
files carry it at ``/dataset/xml`` and MRD streams send it as a HEADER message: this one module
reads all three. Parsing ignores XML namespaces and any element it does not know. It is safe on
hostile input: the XML goes through ``defusedxml`` with document type declarations forbidden, so
entity expansion ("billion laughs") and external entities (``<!ENTITY x SYSTEM "file:///...">``)
are refused, not expanded; headers longer than ``MAX_HEADER_BYTES`` are refused too. ``build_ismrmrd_header`` writes elements in the order the ISMRMRD v1
schema (ismrmrd.xsd) requires, including the mandatory ``experimentalConditions``; the tests parse
its output with the ``ismrmrd`` package's schema bindings.

fastMRI's k-space padding (its ``SliceDataset._retrieve_metadata``)::

    enc_size      = encodedSpace/matrixSize (x, y, z)
    center        = encodingLimits/kspace_encoding_step_1/center
    maximum       = encodingLimits/kspace_encoding_step_1/maximum
    padding_left  = enc_size[1] // 2 - center
    padding_right = padding_left + maximum + 1

Columns ``[padding_left, padding_right)`` of the phase-encode (last) k-space axis hold acquired
lines; the others are zero padding. (fastMRI writes ``enc_limits_max = maximum + 1`` and then
``padding_right = padding_left + enc_limits_max``: the same number.)
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"

#: Encoding-limit names in schema order.
LIMIT_NAMES = (
    "kspace_encoding_step_0",
    "kspace_encoding_step_1",
    "kspace_encoding_step_2",
    "average",
    "slice",
    "contrast",
    "phase",
    "repetition",
    "set",
    "segment",
)

TRAJECTORY_TYPES = ("cartesian", "epi", "radial", "goldenangle", "spiral", "other")

#: longest XML header accepted (bytes); real headers are a few tens of KiB
MAX_HEADER_BYTES = 16 << 20


class HeaderError(ValueError):
    """The ISMRMRD XML header is missing, not XML, or lacks a required element."""


@dataclass
class Limit:
    """One ``encodingLimits`` entry (inclusive minimum/maximum, centre), counter units."""

    minimum: int
    maximum: int
    center: int


@dataclass
class IsmrmrdHeader:
    """The parts of an ISMRMRD header recon uses (first ``<encoding>`` unless told otherwise).

    Sizes are ``(x, y, z)`` as in the XML: x is the readout, y the first and z the second
    phase-encode direction. Fields of view are in mm.
    """

    encoded_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_matrix: tuple[int, int, int]
    recon_fov_mm: tuple[float, float, float]
    limits: dict[str, Limit] = field(default_factory=dict)
    trajectory: str = "cartesian"
    trajectory_identifier: str | None = None
    trajectory_params: dict[str, object] = field(default_factory=dict)
    receiver_channels: int | None = None
    field_strength_t: float | None = None
    resonance_frequency_hz: int | None = None
    patient_id: str | None = None
    tr_ms: float | None = None
    te_ms: float | None = None
    flip_angle_deg: float | None = None
    sequence_type: str | None = None
    num_encodings: int = 1
    xml: str = ""

    @property
    def padding(self) -> tuple[int, int]:
        """fastMRI's ``(padding_left, padding_right)`` on the phase-encode axis (see module doc)."""
        lim = self.limits.get("kspace_encoding_step_1")
        if lim is None:
            raise HeaderError("ISMRMRD header has no encodingLimits/kspace_encoding_step_1")
        left = self.encoded_matrix[1] // 2 - lim.center
        return left, left + lim.maximum + 1


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _text(el: ET.Element | None, path: str, cast=str, default=None):
    if el is None:
        return default
    node = el.find(path)
    if node is None or node.text is None or not node.text.strip():
        return default
    try:
        return cast(node.text.strip())
    except ValueError as exc:
        raise HeaderError(f"ISMRMRD header: {path} = {node.text.strip()!r} is not a {cast.__name__}") from exc


def _xyz(el: ET.Element, path: str, cast, what: str):
    node = el.find(path)
    if node is None:
        raise HeaderError(f"ISMRMRD header lacks encoding/{what}")
    vals = tuple(_text(node, a, cast) for a in "xyz")
    if any(v is None for v in vals):
        raise HeaderError(f"ISMRMRD header: encoding/{what} needs x, y and z")
    for v in vals:
        if not _in_schema_range(v):
            raise HeaderError(f"ISMRMRD header: encoding/{what} = {vals} is out of range "
                              "(sizes 0..65535, fields of view finite and >= 0)")
    return vals


def _in_schema_range(v) -> bool:
    """ISMRMRD's schema: sizes and limits are xs:unsignedShort; lengths finite and non-negative."""
    if isinstance(v, int):
        return 0 <= v <= 65535
    return math.isfinite(v) and v >= 0


def parse_ismrmrd_header(xml: str | bytes, encoding: int = 0) -> IsmrmrdHeader:
    """Parse ISMRMRD XML (str or bytes). Raises ``HeaderError`` (a ValueError) when unusable."""
    import defusedxml
    import defusedxml.ElementTree as DET

    if isinstance(xml, (bytes, bytearray, memoryview)):
        xml = bytes(xml).decode("utf-8", errors="replace")
    if not isinstance(xml, str):
        raise HeaderError(f"ISMRMRD header must be str or bytes, got {type(xml).__name__}")
    if len(xml) > MAX_HEADER_BYTES:
        raise HeaderError(f"ISMRMRD header is {len(xml)} characters long, more than {MAX_HEADER_BYTES}")
    try:
        root = _strip_ns(DET.fromstring(xml.lstrip("\ufeff"), forbid_dtd=True))
    except ET.ParseError as exc:
        raise HeaderError(f"ISMRMRD header is not valid XML ({exc})") from None
    except defusedxml.DefusedXmlException as exc:
        raise HeaderError(f"ISMRMRD header declares a document type or entities, which are refused ({exc})") from None
    if root.tag != "ismrmrdHeader":
        raise HeaderError(f"ISMRMRD header root is <{root.tag}>, expected <ismrmrdHeader>")
    encs = root.findall("encoding")
    if not encs:
        raise HeaderError("ISMRMRD header has no <encoding>")
    if not 0 <= encoding < len(encs):
        raise HeaderError(f"ISMRMRD header has {len(encs)} encoding(s); encoding {encoding} requested")
    enc = encs[encoding]
    limits = {}
    lim_el = enc.find("encodingLimits")
    if lim_el is not None:
        for name in LIMIT_NAMES:
            node = lim_el.find(name)
            if node is not None:
                lim = Limit(_text(node, "minimum", int, 0), _text(node, "maximum", int, 0), _text(node, "center", int, 0))
                if not all(_in_schema_range(v) for v in (lim.minimum, lim.maximum, lim.center)):
                    raise HeaderError(f"ISMRMRD header: encodingLimits/{name} = {lim} is out of range 0..65535")
                limits[name] = lim
    params: dict[str, object] = {}
    td = enc.find("trajectoryDescription")
    if td is not None:
        for kind, cast in (("userParameterLong", int), ("userParameterDouble", float), ("userParameterString", str)):
            for p in td.findall(kind):
                name = _text(p, "name")
                if name is not None:
                    params[name] = _text(p, "value", cast)
    seq = root.find("sequenceParameters")
    return IsmrmrdHeader(
        encoded_matrix=_xyz(enc, "encodedSpace/matrixSize", int, "encodedSpace/matrixSize"),
        encoded_fov_mm=_xyz(enc, "encodedSpace/fieldOfView_mm", float, "encodedSpace/fieldOfView_mm"),
        recon_matrix=_xyz(enc, "reconSpace/matrixSize", int, "reconSpace/matrixSize"),
        recon_fov_mm=_xyz(enc, "reconSpace/fieldOfView_mm", float, "reconSpace/fieldOfView_mm"),
        limits=limits,
        trajectory=_text(enc, "trajectory", str, "cartesian"),
        trajectory_identifier=_text(td, "identifier") if td is not None else None,
        trajectory_params=params,
        receiver_channels=_text(root, "acquisitionSystemInformation/receiverChannels", int),
        field_strength_t=_text(root, "acquisitionSystemInformation/systemFieldStrength_T", float),
        resonance_frequency_hz=_text(root, "experimentalConditions/H1resonanceFrequency_Hz", int),
        patient_id=_text(root, "subjectInformation/patientID"),
        tr_ms=_text(seq, "TR", float),
        te_ms=_text(seq, "TE", float),
        flip_angle_deg=_text(seq, "flipAngle_deg", float),
        sequence_type=_text(seq, "sequence_type"),
        num_encodings=len(encs),
        xml=xml,
    )


def _sub(parent, tag, text=None):
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _fmt(v) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def build_ismrmrd_header(
    encoded_matrix,
    encoded_fov_mm,
    recon_matrix=None,
    recon_fov_mm=None,
    *,
    limits: dict | None = None,
    trajectory: str = "cartesian",
    trajectory_identifier: str | None = None,
    trajectory_params: dict | None = None,
    receiver_channels: int | None = None,
    field_strength_t: float = 3.0,
    resonance_frequency_hz: int = 127_740_000,
    patient_id: str | None = None,
    tr_ms: float | None = None,
    te_ms: float | None = None,
    flip_angle_deg: float | None = None,
    sequence_type: str | None = None,
) -> str:
    """ISMRMRD v1 XML text for one encoding, elements in schema order.

    Sizes are ``(x, y, z)`` (readout, phase 1, phase 2), FOV in mm. ``limits`` maps names from
    ``LIMIT_NAMES`` to ``(minimum, maximum, center)`` or ``Limit``. ``trajectory_params`` values
    are written as userParameterLong (int), userParameterDouble (float) or userParameterString.
    """
    if trajectory not in TRAJECTORY_TYPES:
        raise ValueError(f"trajectory must be one of {TRAJECTORY_TYPES}, got {trajectory!r}")
    recon_matrix = encoded_matrix if recon_matrix is None else recon_matrix
    recon_fov_mm = encoded_fov_mm if recon_fov_mm is None else recon_fov_mm
    for name, v in (("encoded_matrix", encoded_matrix), ("recon_matrix", recon_matrix),
                    ("encoded_fov_mm", encoded_fov_mm), ("recon_fov_mm", recon_fov_mm)):
        if len(v) != 3:
            raise ValueError(f"{name} must have 3 entries (x, y, z), got {v!r}")
    ET.register_namespace("", ISMRMRD_NAMESPACE)
    root = ET.Element("ismrmrdHeader", {"xmlns": ISMRMRD_NAMESPACE})
    if patient_id is not None:
        _sub(_sub(root, "subjectInformation"), "patientID", patient_id)
    acq = _sub(root, "acquisitionSystemInformation")
    _sub(acq, "systemFieldStrength_T", _fmt(float(field_strength_t)))
    if receiver_channels is not None:
        _sub(acq, "receiverChannels", int(receiver_channels))
    _sub(_sub(root, "experimentalConditions"), "H1resonanceFrequency_Hz", int(resonance_frequency_hz))
    enc = _sub(root, "encoding")
    for space, mat, fov in (("encodedSpace", encoded_matrix, encoded_fov_mm), ("reconSpace", recon_matrix, recon_fov_mm)):
        sp = _sub(enc, space)
        ms = _sub(sp, "matrixSize")
        for a, v in zip("xyz", mat):
            _sub(ms, a, int(v))
        fv = _sub(sp, "fieldOfView_mm")
        for a, v in zip("xyz", fov):
            _sub(fv, a, _fmt(float(v)))
    lim_el = _sub(enc, "encodingLimits")
    for name in LIMIT_NAMES:
        if limits and name in limits:
            lim = limits[name]
            lo, hi, c = (lim.minimum, lim.maximum, lim.center) if isinstance(lim, Limit) else lim
            node = _sub(lim_el, name)
            _sub(node, "minimum", int(lo))
            _sub(node, "maximum", int(hi))
            _sub(node, "center", int(c))
    _sub(enc, "trajectory", trajectory)
    if trajectory_identifier is not None or trajectory_params:
        td = _sub(enc, "trajectoryDescription")
        _sub(td, "identifier", trajectory_identifier or trajectory)
        items = list((trajectory_params or {}).items())
        for kind, test in (
            ("userParameterLong", lambda v: isinstance(v, (int,)) and not isinstance(v, bool)),
            ("userParameterDouble", lambda v: isinstance(v, float)),
            ("userParameterString", lambda v: isinstance(v, str)),
        ):
            for k, v in items:
                if test(v):
                    p = _sub(td, kind)
                    _sub(p, "name", k)
                    _sub(p, "value", _fmt(v))
    if any(v is not None for v in (tr_ms, te_ms, flip_angle_deg, sequence_type)):
        seq = _sub(root, "sequenceParameters")
        for tag, v in (("TR", tr_ms), ("TE", te_ms), ("flipAngle_deg", flip_angle_deg), ("sequence_type", sequence_type)):
            if v is not None:
                _sub(seq, tag, v if isinstance(v, str) else _fmt(float(v)))
    body = ET.tostring(root, encoding="unicode")
    # ElementTree emits the default namespace once it is registered; avoid a duplicate xmlns.
    body = body.replace(f' xmlns="{ISMRMRD_NAMESPACE}" xmlns="{ISMRMRD_NAMESPACE}"', f' xmlns="{ISMRMRD_NAMESPACE}"')
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body
