"""Layering (ARCHITECTURE.md): nothing imports from a layer above it.

``_core/_cuda -> geometry -> ops -> solvers -> io -> batch -> mri / ct -> nets -> stream / cli / bench``
(``batch``: running one function over many inputs, used by the mri and ct command lines). Every import
in recon's source (module level and inside functions, absolute and relative) is read from the
syntax tree, so a lazy import that runs upwards is caught too.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "recon"

#: what each part of recon may import (besides itself and the shared leaves below)
ALLOWED = {
    "geometry": set(),
    "ops": {"geometry"},
    "solvers": {"geometry", "ops"},
    "io": {"geometry", "ops", "data"},
    "batch": {"io"},
    "mri": {"geometry", "ops", "solvers", "io", "batch", "data"},
    "ct": {"geometry", "ops", "solvers", "io", "batch", "data"},
    "nets": {"geometry", "ops", "solvers", "io", "batch", "mri", "ct", "data"},
    "stream": {"geometry", "ops", "solvers", "io", "batch", "mri", "ct", "nets", "data"},
    "data": set(),
}
#: modules every layer may use: compiled buffers, array helpers, memory limits, conventions, the version
LEAVES = {"_core", "_cuda", "_array", "_memory", "conventions", "__init__"}
#: the top: the command line, the demo and the benchmarks may import anything
TOP = {"cli", "demo", "bench"}


def _part(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else pathlib.Path(rel[0]).stem


def _imports(path: pathlib.Path):
    """(line, target part of recon) for every import of a recon module in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    pkg_parts = list(path.relative_to(ROOT).with_suffix("").parts[:-1])  # e.g. ['recon', 'mri']
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "recon":
                    yield node.lineno, parts[1] if len(parts) > 1 else "__init__"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                mod = base + (node.module.split(".") if node.module else [])
            else:
                mod = (node.module or "").split(".")
            if mod[:1] != ["recon"]:
                continue
            if len(mod) > 1:
                yield node.lineno, mod[1]
            else:  # from recon import x / from .. import x: x is a part or a name of recon/__init__
                for a in node.names:
                    yield node.lineno, a.name if (PKG / a.name).exists() or (PKG / f"{a.name}.py").exists() \
                        else "__init__"


def _violations():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        part = _part(path)
        if part in TOP or part in LEAVES:
            continue
        allowed = ALLOWED.get(part)
        if allowed is None:
            bad.append(f"{path.relative_to(ROOT)}: part {part!r} has no place in the layering table")
            continue
        for line, target in _imports(path):
            if target == part or target in LEAVES or target in allowed:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} ({part}) imports recon.{target}")
    return bad


def test_nothing_imports_from_a_layer_above():
    assert _violations() == []


def test_recon_io_does_not_use_fastmri_data():
    """fastmri_data uses recon.io's public API, never the other way round."""
    offenders = []
    for path in sorted((PKG / "io").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.name}:{node.lineno}" for n in names if n.split(".")[0] == "fastmri_data"]
    assert offenders == []


def test_fastmri_data_uses_only_public_recon_names():
    offenders = []
    for path in sorted((ROOT / "fastmri_data").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recon"):
                mods = node.module.split(".")
                names = [a.name for a in node.names]
                if any(m.startswith("_") for m in mods) or any(n.startswith("_") for n in names):
                    offenders.append(f"{path.name}:{node.lineno} from {node.module} import {', '.join(names)}")
    assert offenders == []


@pytest.mark.parametrize("module,forbidden", [
    ("recon.ops", ("recon.ct", "recon.mri", "recon.io", "recon.solvers")),
    ("recon.solvers", ("recon.ct", "recon.mri", "recon.io")),
    ("recon.io", ("fastmri_data", "recon.mri", "recon.ct")),
])
def test_importing_a_layer_loads_nothing_above_it(module, forbidden):
    code = (f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] + '.' + "
            f"(m.split('.') + [''])[1] in {forbidden!r} or m in {forbidden!r}]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
