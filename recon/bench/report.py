"""The benchmark report: Markdown tables, sections of a results file, the plots, the machine.

One home for what every benchmark writes: :func:`table` (a Markdown table), :func:`replace_section`
(a ``## Title`` section of benchmarks/results/cpu.md, the other sections kept), :func:`machine`
(CPU model, cores, GPU, library versions), :func:`plot_time_vs_size` and :func:`plot_accuracy_vs_time`
(the two PNGs of each ``recon bench`` part), and :func:`write_report` (REPORT_DIR/report.md and
results.json).
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import platform
from pathlib import Path

#: libraries whose versions the report lists (those importable)
VERSIONED = ("recon", "numpy", "scipy", "torch", "finufft", "ducc0", "sigpy", "torchkbnufft", "cufinufft", "astra",
             "skimage", "dask", "distributed")


def table(columns, rows) -> str:
    """A Markdown table: ``columns`` (names) and ``rows`` (sequences of cells, already formatted)."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def replace_section(md_path, section: str, title: str | None = None) -> None:
    """Replace the section ``title`` (default: the first line of ``section``, a ``## `` heading) of the
    Markdown file ``md_path`` by ``section``, up to the next ``## `` heading; append it when absent.
    Every other section is kept. A new file starts with ``# CPU benchmarks``."""
    md_path = Path(md_path)
    title = (title or section.splitlines()[0]).strip()
    text = md_path.read_text() if md_path.exists() else "# CPU benchmarks\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == title), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    write_text_atomic(md_path, new)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder and a rename: a results file
    is never half-written."""
    from ..io.atomic import atomic_file

    with atomic_file(str(path)) as tmp:
        Path(tmp).write_text(text)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; the platform's processor or machine elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "none"


def importable(package: str) -> bool:
    """True when ``package`` imports (a peer that is installed but fails to import is not available)."""
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a library that does not import is simply not listed
        return None
    return str(getattr(mod, "__version__", "?"))


def machine() -> dict:
    """The machine and software of a run: CPU model, cores (and those this process may use), memory,
    GPU name, recon's CUDA module, Python and library versions (importable ones)."""
    from ..batch import available_cores

    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    import recon

    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
            "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": available_cores(),
            "memory_gib": round(mem, 1), "gpu": _gpu_name(), "recon_cuda": bool(recon.cuda_available()),
            "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": {n: v for n in VERSIONED if (v := _version(n)) is not None}}


# ---- plots -----------------------------------------------------------------------------------------------

def _axes(title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.set_title(title, fontsize=10)
    ax.grid(which="both", alpha=0.3)
    return plt, fig, ax


def plot_time_vs_size(path, series: dict, xlabel: str, title: str) -> str:
    """Seconds against problem size, one line per series (``{label: [(size, seconds), ...]}``), log-log."""
    plt, fig, ax = _axes(title)
    for label, pts in series.items():
        pts = sorted(p for p in pts if math.isfinite(p[1]) and p[1] > 0)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time [s]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return os.fspath(path)


def plot_accuracy_vs_time(path, series: dict, ylabel: str, title: str, log_y: bool = True) -> str:
    """Accuracy against seconds, one line per series (``{label: [(seconds, accuracy), ...]}``, joined in
    the order given):
    an error (log axis, lower is better) or a quality such as PSNR (``log_y=False``, higher is better)."""
    plt, fig, ax = _axes(title)
    for label, pts in series.items():  # in the order given (a library's settings, cheapest first)
        pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1]) and p[0] > 0]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o--", label=label)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("time [s]")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return os.fspath(path)


# ---- the report ------------------------------------------------------------------------------------------

def _machine_section(m: dict, command: str, device: str, scale: str) -> str:
    rows = [("CPU", m["cpu"]), ("cores", f"{m['cores']} ({m['usable_cores']} usable by this run)"),
            ("memory", f"{m['memory_gib']} GiB"), ("GPU", m["gpu"]),
            ("recon CUDA module", "yes" if m["recon_cuda"] else "no"), ("device benchmarked", device),
            ("Python", m["python"]), ("OS", m["os"]), ("host", m["host"]), ("date", m["date"]),
            ("load average at start", ", ".join(f"{v:.2f}" for v in m["load_average"]) if m["load_average"] else "-"),
            ("case sizes", scale)]
    text = [f"Command: `{command}`", "", "## Machine", "", table(("", ""), rows),
            "Library versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", ""]
    return "\n".join(text)


def write_report(out_dir, sections, *, command: str, device: str, scale: str, machine_info: dict) -> Path:
    """REPORT_DIR/report.md (the machine, then each part's section with its plots) and results.json
    (the same numbers, machine-readable). ``sections``: :class:`recon.bench.Section` objects."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# recon benchmark report ({device.upper()})", "", _machine_section(machine_info, command, device, scale)]
    md += ["## Summary", "", table(("part", "status", "wall s", "note"),
                                   [(s.title, s.status, f"{s.seconds:.1f}", s.note.replace("|", "/")) for s in sections])]
    for s in sections:
        md += [f"## {s.title}", ""]
        if s.status != "ok":
            md += [f"*{s.status}*: {s.note}", ""]
            continue
        if s.note:
            md += [s.note, ""]
        md += [s.text.rstrip(), ""]
        md += [f"![{Path(p).stem}]({Path(p).name})" for p in s.plots] + [""]
    from ..io import atomic_file

    path = out_dir / "report.md"
    with atomic_file(path) as tmp:
        Path(tmp).write_text("\n".join(md).rstrip() + "\n")
    with atomic_file(out_dir / "results.json") as tmp:
        Path(tmp).write_text(json.dumps({"command": command, "device": device, "scale": scale, "machine": machine_info,
                                         "parts": [s.as_dict() for s in sections]}, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
