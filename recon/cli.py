"""The ``recon`` command line: ``recon <modality> ...`` (``recon mri``; others plug in the same way).

Each subcommand lives in its own module with ``add_parser(subparsers)``, which registers an
``argparse`` sub-parser and sets ``func`` (``args -> exit code``). To add one (e.g. ``recon ct``),
add its module to :data:`SUBCOMMANDS`; keep heavy imports inside ``func``, not at module level, so
``recon --help`` stays fast.

Errors: any failure in a subcommand (a corrupt, truncated or mislabelled file, bad values) ends as
ONE line ``recon: error: ...`` on stderr and exit code 1 (usage errors: argparse's message, exit 2);
set ``RECON_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: subcommand name -> module providing ``add_parser(subparsers)``
SUBCOMMANDS = {
    "mri": "recon.mri.cli",
    "ct": "recon.ct.cli",
    "demo": "recon.demo",
    "train": "recon.nets.cli",
    "bench": "recon.bench.cli",
    "serve": "recon.stream.server",
    "send": "recon.stream.client",
}

#: modules that provide a ``--method`` to the pipelines of a lower layer (dependency inversion:
#: importing recon.nets registers ``net`` in recon.mri and recon.ct); imported only when used
METHOD_PROVIDERS = {"net": "recon.nets"}


def one_line(exc: BaseException) -> str:
    """``exc`` as a single line (first line of its message, type name when it has none)."""
    msg = str(exc).strip()
    if isinstance(exc, KeyError) and msg.startswith("'"):
        msg = f"missing key {msg}"
    first = msg.splitlines()[0] if msg else ""
    return first or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="recon", description="Fast MRI/CT reconstruction.")
    p.add_argument("--version", action="version", version=f"recon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in SUBCOMMANDS.items():
        importlib.import_module(mod).add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        provider = METHOD_PROVIDERS.get(getattr(args, "method", None))
        if provider is not None:
            importlib.import_module(provider)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("recon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback (unless RECON_DEBUG)
        if os.environ.get("RECON_DEBUG"):
            raise
        print(f"recon: error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
