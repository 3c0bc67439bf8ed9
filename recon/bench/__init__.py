"""``recon bench``: every benchmark of recon next to the installed peers, in one run, as one report.

::

    recon bench -o report/                     # full sizes (tens of minutes on 2 cores)
    recon bench --quick -o report/             # small sizes (CI: under 2 minutes on 2 cores)
    recon bench --device cuda -o report_gpu/   # recon's operators on the GPU (needs recon._cuda)
    recon bench --parts nufft,ct-projectors -o report/

    from recon.bench import run_bench
    path = run_bench("report/", scale="quick")          # REPORT_DIR/report.md, results.json, PNGs

Parts (:data:`PARTS`; each module has ``bench(ctx) -> Section`` and may say why it cannot run):

========== =================================== ======================================================
part       recon                               peers (those installed), same inputs, same run
========== =================================== ======================================================
nufft      ``Nufft`` type 1/2 (2D radial)      FINUFFT, ducc0, SigPy, torchkbnufft (GPU: cuFINUFFT)
ct-proj.   ``Projector`` forward/back          ASTRA (CPU), scikit-image radon/iradon
mri        CG-SENSE, L1-wavelet CS             SigPy, BART ``pics``
ct         FBP, SIRT, PWLS-TV (low dose)       ASTRA FBP (parallel beam) and SIRT (CPU)
nets       shipped MoDL / learned primal-dual  recon's classical methods (no peer network installed)
4d, stream (recon.bench.dynamic/stream: not yet) -
========== =================================== ======================================================

Every part reports times (seconds), ratios peer / recon (> 1: recon faster) and an accuracy (relative
error against an exact reference, or PSNR against a truth), and plots time against problem size and
accuracy against time. The case code is shared with the runners in ``benchmarks/`` (which keep their
command lines and results files): see each module.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

#: part -> (title, module with ``bench(ctx)`` and optionally ``unavailable() -> str | None``)
PARTS = {
    "nufft": ("NUFFT", "recon.bench.nufft"),
    "ct-projectors": ("CT projectors", "recon.bench.ct_projectors"),
    "mri": ("MRI reconstruction", "recon.bench.mri"),
    "ct": ("CT reconstruction (FBP, SIRT, PWLS-TV)", "recon.bench.ct_recon"),
    "nets": ("Unrolled networks", "recon.bench.nets"),
    "4d": ("4D MRI", "recon.bench.dynamic"),
    "stream": ("Streaming", "recon.bench.stream"),
}
SCALES = ("tiny", "quick", "full")
DEVICES = ("cpu", "cuda")


@dataclass
class Context:
    """What a part needs: ``scale`` tiny | quick | full (case sizes), ``device`` cpu | cuda, ``threads``
    for recon and every peer, ``workdir`` (a temporary folder), ``log`` (progress lines), ``peers``
    (the peer libraries to run when installed; None: every one)."""

    scale: str = "quick"
    device: str = "cpu"
    threads: int = 1
    workdir: str = "."
    log: object = print
    peers: tuple | None = None

    def pick(self, tiny, quick, full):
        """The value for this run's scale."""
        return {"tiny": tiny, "quick": quick, "full": full}[self.scale]

    def wants(self, library: str) -> bool:
        """True for recon and for a peer this run includes (installed or not: the part checks that)."""
        return library == "recon" or self.peers is None or library in self.peers


@dataclass
class Section:
    """One part's results: ``text`` (Markdown tables and notes), ``rows`` (the numbers: each has
    ``library``, ``time_s`` and an accuracy, ``error`` or ``psnr``), the plot data ``sizes``
    (``{series: [(size, seconds), ...]}``, x axis ``size_label``) and ``accuracy``
    (``{series: [(seconds, accuracy), ...]}``, y axis ``accuracy_label``, log scale for errors)."""

    key: str
    title: str
    status: str = "ok"
    note: str = ""
    text: str = ""
    rows: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)
    size_label: str = "problem size"
    accuracy: dict = field(default_factory=dict)
    accuracy_label: str = "relative error"
    accuracy_log: bool = True
    plots: list = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sizes"] = {k: [list(p) for p in v] for k, v in self.sizes.items()}
        d["accuracy"] = {k: [list(p) for p in v] for k, v in self.accuracy.items()}
        return d


def check_device(device: str) -> None:
    """ValueError unless ``device`` is cpu, or cuda with a CUDA device and the recon._cuda module."""
    if device not in DEVICES:
        raise ValueError(f"device (--device) must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cuda":
        import recon

        if not recon.cuda_available():
            try:
                from recon import _cuda

                why = _cuda.device_status()
            except ImportError as exc:
                why = f"recon._cuda is not built ({exc})"
            raise ValueError(f"--device cuda needs a CUDA device and the recon._cuda module: {why}")
        try:
            import torch
        except ImportError:
            raise ValueError("--device cuda needs torch with CUDA (GPU arrays)") from None
        if not torch.cuda.is_available():
            raise ValueError("--device cuda needs torch with CUDA; this torch has no CUDA device")


def run_part(key: str, ctx: Context) -> Section:
    """One part: skipped (with the reason) when its module says it cannot run, failed (with the error's
    first line) when it raises, else its section; ``seconds`` is its wall time."""
    title, modname = PARTS[key]
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(modname)
        why = mod.unavailable(ctx) if hasattr(mod, "unavailable") else None
    except ImportError as exc:
        mod = None
        why = (f"no benchmark module {modname} in this recon yet" if exc.name == modname
               else f"needs {exc.name or exc}: not installed")
    if why:
        sec = Section(key, title, status="skipped", note=why)
    else:
        try:
            sec = mod.bench(ctx)
            sec.key, sec.title = key, title
        except Exception as exc:  # noqa: BLE001 - one failing part is reported; the others still run
            if os.environ.get("RECON_DEBUG"):
                traceback.print_exc()
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            sec = Section(key, title, status="failed", note=f"{type(exc).__name__}: {msg}")
    sec.seconds = time.perf_counter() - t0
    return sec


def _plots(sec: Section, out_dir: Path, device: str) -> None:
    from ..io import atomic_file
    from .report import plot_accuracy_vs_time, plot_time_vs_size

    if sec.sizes:
        path = out_dir / f"{sec.key}_time_vs_size.png"
        with atomic_file(path) as tmp:
            plot_time_vs_size(tmp, sec.sizes, sec.size_label, f"{sec.title}: time vs size ({device})")
        sec.plots.append(str(path))
    if sec.accuracy:
        path = out_dir / f"{sec.key}_accuracy_vs_time.png"
        with atomic_file(path) as tmp:
            plot_accuracy_vs_time(tmp, sec.accuracy, sec.accuracy_label, f"{sec.title}: accuracy vs time ({device})",
                                  log_y=sec.accuracy_log)
        sec.plots.append(str(path))


def run_bench(out_dir, *, scale: str = "quick", device: str = "cpu", parts=None, threads: int | None = None,
              peers=None, log=print, command: str | None = None) -> Path:
    """Run the parts (default all, in :data:`PARTS` order) and write ``out_dir``/report.md, results.json
    and the PNGs; returns the report's path. ``threads``: for recon and every peer (default
    ``RECON_NUM_THREADS``, else the usable cores); ``peers``: names of the peer libraries to run
    (default every installed one)."""
    import tempfile

    from ..batch import available_cores
    from .report import machine, write_report

    if scale not in SCALES:
        raise ValueError(f"scale (--scale) must be one of {', '.join(SCALES)}; got {scale!r}")
    check_device(device)
    keys = list(PARTS) if parts is None else list(parts)
    unknown = [k for k in keys if k not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    if threads is None:
        env = os.environ.get("RECON_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads (--threads) must be an integer >= 1, got {threads!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    sections = []
    saved = os.environ.get("RECON_NUM_THREADS")
    os.environ["RECON_NUM_THREADS"] = str(threads)  # recon's operators; the peers get ``ctx.threads``
    try:
        with tempfile.TemporaryDirectory(prefix="recon-bench-") as tmp:
            ctx = Context(scale=scale, device=device, threads=threads, workdir=tmp, log=log,
                          peers=None if peers is None else tuple(peers))
            for key in keys:
                log(f"== {PARTS[key][0]} ==")
                sec = run_part(key, ctx)
                if sec.status == "ok":
                    _plots(sec, out_dir, device)
                log(f"   {sec.status} in {sec.seconds:.1f} s" + (f": {sec.note}" if sec.status != "ok" else ""))
                sections.append(sec)
    finally:
        if saved is None:
            os.environ.pop("RECON_NUM_THREADS", None)
        else:
            os.environ["RECON_NUM_THREADS"] = saved
    cmd = command or "recon bench " + " ".join(sys.argv[1:])
    return write_report(out_dir, sections, command=cmd, device=device, scale=scale, machine_info=info)


__all__ = ["DEVICES", "PARTS", "SCALES", "Context", "Section", "check_device", "run_bench", "run_part"]
