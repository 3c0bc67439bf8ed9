"""Weights on disk: a safetensors file (never pickle) and a model card (JSON) beside it.

``save(model, path, card)`` writes ``path`` (``.safetensors``) and ``path`` with suffix ``.json``,
each to a temporary file in the target folder renamed on success. ``load(name_or_path)`` takes a
shipped name (:func:`shipped`, files in ``recon/data/weights``) or a path (with or without the
suffix) and returns the model with its weights, in eval mode, its card in ``model.card``.

The card holds (required fields, :data:`REQUIRED_FIELDS`): ``architecture`` (``modl``, ``varnet``,
``lpd``, ``pwls``) and ``config`` (the model's config dataclass as a dict), ``task`` (modality,
trajectory/geometry, accelerations or doses, coils, matrix), ``training`` (data sources with
counts, steps, time, machine, seed), ``metrics`` (held-out PSNR/SSIM), ``recon_version``,
``weights_sha256`` (of the safetensors file) and ``n_parameters``.

A truncated or corrupt weights file, a card that does not belong to it (hash), a card without a
required field, an unknown architecture or config field, and tensors missing, unexpected or of the
wrong shape each raise a ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from importlib import resources

from .. import __version__
from .base import architectures

FORMAT = "recon-nets-card"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
REQUIRED_FIELDS = ("format", "format_version", "architecture", "config", "task", "training", "metrics",
                   "recon_version", "weights_sha256", "n_parameters")


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(path) -> str:
    path = os.fspath(path)
    return (path[: -len(SUFFIX)] if path.endswith(SUFFIX) else path) + ".json"


def _atomic(path: str, write):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600: give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_card(model, *, task: dict, training: dict, metrics: dict | None = None, **extra) -> dict:
    """A card for ``model`` (the hash is filled in by :func:`save`)."""
    return dict(format=FORMAT, format_version=FORMAT_VERSION, architecture=model.arch,
                config=dataclasses.asdict(model.config), task=dict(task), training=dict(training),
                metrics=dict(metrics or {}), recon_version=__version__, n_parameters=int(model.n_parameters),
                **extra)


def save(model, path, card: dict) -> str:
    """Write ``model``'s weights to ``path`` (``.safetensors`` appended if missing) and ``card``
    (completed with architecture, config, version, hash and parameter count) beside it; returns the
    weights path. Both writes are atomic."""
    from safetensors.torch import save_file

    path = os.fspath(path)
    if not path.endswith(SUFFIX):
        path += SUFFIX
    if not isinstance(card, dict):
        raise TypeError(f"card must be a dict, got {type(card).__name__}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(path, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT, "architecture": model.arch}))
    card = dict(card, format=FORMAT, format_version=FORMAT_VERSION, architecture=model.arch,
                config=dataclasses.asdict(model.config), n_parameters=int(model.n_parameters),
                weights_sha256=_sha256(path))
    card.setdefault("recon_version", __version__)
    missing = [f for f in REQUIRED_FIELDS if f not in card]
    if missing:
        raise ValueError(f"card lacks required fields {missing}")
    text = json.dumps(card, indent=2, sort_keys=False, default=float)

    def write_card(tmp):
        with open(tmp, "w") as f:
            f.write(text + "\n")

    _atomic(card_path(path), write_card)
    return path


# ---- shipped weights ------------------------------------------------------------------------------

def _weights_dir():
    return resources.files("recon.data").joinpath("weights")


def shipped() -> list[str]:
    """Names of the weights shipped inside the package."""
    d = _weights_dir()
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in d.iterdir() if p.name.endswith(SUFFIX))


def resolve(name_or_path) -> str:
    """The weights file of a shipped name or a path (suffix optional)."""
    s = os.fspath(name_or_path)
    if s in shipped():
        return os.fspath(_weights_dir().joinpath(s + SUFFIX))
    for cand in (s, s + SUFFIX):
        if os.path.isfile(cand):
            return cand
    raise FileNotFoundError(f"no weights {s!r}: neither a shipped name ({', '.join(shipped()) or 'none'}) "
                            f"nor an existing file")


def read_card(path) -> dict:
    cp = card_path(path)
    if not os.path.isfile(cp):
        raise ValueError(f"{path}: its model card {cp} is missing")
    try:
        with open(cp) as f:
            card = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cp}: not a valid JSON model card ({e})") from None
    if not isinstance(card, dict):
        raise ValueError(f"{cp}: a model card must be a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in card]
    if missing:
        raise ValueError(f"{cp}: model card lacks required fields {missing}")
    if card["format"] != FORMAT or card["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{cp}: unsupported card format {card['format']!r} version {card['format_version']!r} "
                         f"(expected {FORMAT!r} {FORMAT_VERSION})")
    return card


def build(card: dict, where: str = "card"):
    """An untrained model of the card's architecture and config."""
    arch = card.get("architecture")
    known = architectures()
    if arch not in known:
        raise ValueError(f"{where}: unknown architecture {arch!r} (known: {sorted(known)})")
    cls = known[arch]
    cfg = card.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: 'config' must be an object")
    names = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise ValueError(f"{where}: config fields {unknown} are not parameters of {cls.__name__}")
    return cls(cls.config_class(**cfg))


def load(name_or_path, device="cpu"):
    """The model of a shipped name or a weights path, with its weights, in eval mode on ``device``;
    ``model.card`` holds its card (module docstring for the errors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve(name_or_path)
    card = read_card(path)
    digest = _sha256(path)
    if digest != card["weights_sha256"]:
        raise ValueError(f"{path}: the weights file does not match its model card (sha256 {digest[:12]}... != "
                         f"{str(card['weights_sha256'])[:12]}...): truncated, corrupt or replaced")
    model = build(card, card_path(path))
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = sorted(k for k in set(want) & set(state) if tuple(want[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(s for s in (
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            "wrong shapes " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(want[k].shape)}" for k in wrong[:5])
            if wrong else "") if s)
        raise ValueError(f"{path}: weights do not fit the {card['architecture']} architecture of its card: {detail}")
    model.load_state_dict(state, strict=True)
    model.card = card
    return model.to(device).eval()
