"""Many inputs through one pipeline: in this process, in local worker processes, or on a Dask cluster.

The one home of batch runs (docs/batch.md)::

    recon mri scans/*.h5 -o out/                              # one after the other, in this process
    recon mri scans/ -o out/ --workers 2                      # 2 local worker processes (dask LocalCluster)
    recon ct sinos/ --geometry g.json -o out/ --scheduler tcp://head:8786   # a running Dask cluster
    recon mri scans/ -o out/ --workers 2 --skip-existing      # resume: inputs whose outputs all exist are skipped

From Python::

    from recon.batch import Job, run_jobs, write_summary
    records = run_jobs(func, [Job(path, outputs, args), ...], workers=2)   # func(args) -> dict, module level
    write_summary("out/summary.csv", records)

``func`` runs once per :class:`Job` (on a worker when ``workers``/``scheduler`` are given: it must be a
module-level function, and the job's ``args`` picklable); it reads ``job.input`` itself (paths on a
filesystem the workers share), writes ``job.outputs`` atomically (``recon.io.atomic``) and returns a dict
with any of ``method``, ``output`` and ``metrics`` (name -> number). An exception fails that input
only: its :class:`Record` says ``failed`` with the error's first line, and the other inputs go on.

Threads: local workers get ``cores // workers`` threads each for recon's kernels, OpenMP and numpy's
BLAS (:data:`THREAD_VARIABLES` in their environment, set before they start); on a running cluster each
worker gets ``cores of its host // worker threads on that host`` kernel threads (``RECON_NUM_THREADS``)
unless its environment already sets ``RECON_NUM_THREADS`` (Dask starts workers with one BLAS thread).
Results equal the serial run's bit for bit when each input gets the same thread counts; with other
counts they agree to float rounding (BLAS dot products and the NUFFT adjoint sum in an order that
depends on the thread count; docs/batch.md). A worker that dies (killed, out of memory) has its inputs recomputed
on the others by Dask (``distributed.scheduler.allowed-failures``, default 3, then that input fails).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import glob
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .io.atomic import atomic_file, remove_stale_temporaries
from .io.files import check_outputs, first_line

STATUSES = ("ok", "failed", "skipped")
#: the thread pools a local worker's share of the cores is given to (recon's kernels, OpenMP, numpy's BLAS)
THREAD_VARIABLES = ("RECON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_GLOB = "*?["


# ---- inputs --------------------------------------------------------------------------------------

def _never(path: str) -> bool:
    return False


def _hidden(name: str) -> bool:
    return name.startswith(".")


def expand_inputs(items, *, accept: Callable[[str], bool], is_unit: Callable[[str], bool] = _never) -> list[str]:
    """The input paths named by ``items`` (files, folders, glob patterns), in order, each once.

    A file named explicitly is an input whatever its name. A folder for which ``is_unit(folder)`` is
    true (a DICOM-CT-PD series) is one input; any other folder gives, sorted and not recursively, its
    files (not hidden) for which ``accept(path)`` is true and its sub-folders that are units. A pattern
    with ``*``, ``?`` or ``[`` that names no existing path is expanded by ``glob`` (``**`` recursive);
    each match is taken like a folder's entry. FileNotFoundError for a path or pattern that matches
    nothing; ValueError when no input is left.
    """
    out, seen = [], set()

    def add(p):
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    def entry(p):  # a folder's entry or a glob match
        if os.path.isdir(p):
            if is_unit(p):
                add(p)
        elif accept(p):
            add(p)

    for item in items:
        item = os.fspath(item)
        if os.path.lexists(item):
            if os.path.isdir(item) and not is_unit(item):
                for name in sorted(os.listdir(item)):
                    if not _hidden(name):
                        entry(os.path.join(item, name))
            else:
                add(item)
        elif any(c in item for c in _GLOB):
            matches = sorted(m for m in glob.glob(item, recursive=True) if not _hidden(os.path.basename(m)))
            if not matches:
                raise FileNotFoundError(f"no file matches {item!r}")
            for m in matches:
                entry(m)
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    if not out:
        raise ValueError(f"no input files in {', '.join(map(str, items))}")
    return out


# ---- jobs and records ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One input of a batch: ``input`` (the path the worker reads), ``outputs`` (every file or folder
    it writes: all present means complete), ``args`` (what the function needs; picklable)."""

    input: str
    outputs: tuple = ()
    args: object = None


@dataclass
class Record:
    """What became of one input: ``status`` ok | failed | skipped, wall ``seconds`` on its worker
    (reading, reconstructing and writing), ``method``, main ``output``, ``metrics`` (name -> number),
    the first line of the ``error``, and the ``worker`` (``local`` or a Dask worker's address)."""

    file: str
    status: str
    seconds: float = 0.0
    method: str = ""
    output: str = ""
    metrics: dict = field(default_factory=dict)
    error: str = ""
    worker: str = ""


def complete(job: Job) -> bool:
    """True when every output of ``job`` exists (outputs are committed all or nothing)."""
    return bool(job.outputs) and all(os.path.lexists(p) for p in job.outputs)


def execute(func, job: Job) -> Record:
    """Run ``func(job.args)`` for one job and time it; an exception gives a ``failed`` record."""
    t0 = time.perf_counter()
    worker = _worker_address()
    try:
        res = func(job.args) or {}
    except Exception as exc:  # noqa: BLE001 - one bad input fails alone; Ctrl-C still stops the run
        return Record(job.input, "failed", time.perf_counter() - t0, error=first_line(exc), worker=worker)
    metrics = {k: float(v) for k, v in (res.get("metrics") or {}).items()}
    return Record(job.input, "ok", time.perf_counter() - t0, str(res.get("method", "")), str(res.get("output", "")),
                  metrics, worker=worker)


def _worker_address() -> str:
    if "distributed" not in sys.modules:
        return "local"
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # not on a worker
        return "local"


# ---- running ---------------------------------------------------------------------------------------

def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def local_cluster(workers: int):
    """A ``dask.distributed.LocalCluster`` of ``workers`` processes, one task at a time each, with
    ``cores // workers`` threads (at least 1) for recon's kernels, OpenMP and numpy's BLAS in each
    (:data:`THREAD_VARIABLES`, set before the worker starts)."""
    from distributed import LocalCluster

    threads = str(max(1, available_cores() // workers))
    env = {var: threads for var in THREAD_VARIABLES}
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=logging.ERROR, env=env)


def _worker_facts():
    """(host cores, RECON_NUM_THREADS or None) of the worker this runs on."""
    return available_cores(), os.environ.get("RECON_NUM_THREADS")


def _set_threads(n: int) -> int:
    os.environ["RECON_NUM_THREADS"] = str(n)
    return n


def share_cores(client) -> dict:
    """Give each worker of ``client``'s cluster ``host cores // worker threads on that host`` kernel
    threads (``RECON_NUM_THREADS``), unless its environment sets it; returns {worker: threads or None}."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    facts = client.run(_worker_facts)
    slots: dict = {}
    for addr, w in info.items():
        host = w.get("host") or addr.rsplit(":", 1)[0]
        slots[host] = slots.get(host, 0) + int(w.get("nthreads", 1))
    out = {}
    for addr, (cores, env) in facts.items():
        if env:
            out[addr] = None
            continue
        host = info.get(addr, {}).get("host") or addr.rsplit(":", 1)[0]
        n = max(1, cores // max(1, slots.get(host, 1)))
        client.run(_set_threads, n, workers=[addr])
        out[addr] = n
    return out


def run_jobs(func, jobs, *, workers: int | None = None, scheduler: str | None = None, skip_existing: bool = False,
             progress: bool = False, label: str = "recon", on_record: Callable[[Record], None] | None = None,
             previous: dict | None = None) -> list[Record]:
    """Run ``func`` over ``jobs``; returns one :class:`Record` per job, in the jobs' order.

    ``workers``: that many local worker processes (:func:`local_cluster`); ``scheduler``: the address of
    a running Dask scheduler (``tcp://host:8786``); neither: one after the other in this process.
    ``skip_existing``: jobs whose outputs all exist are not run (status ``skipped``; with ``previous``,
    a {file: Record} of an earlier run, they keep its method, output and metrics). ``progress``: a bar
    over the inputs on stderr; ``on_record`` is called with each record as it arrives. Hidden
    temporaries that an interrupted run left beside a job's outputs are removed before it runs.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers or --scheduler, not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers (--workers) must be an integer >= 1, got {workers!r}")
    jobs = list(jobs)
    records: dict = {}
    todo = []
    for i, job in enumerate(jobs):
        if skip_existing and complete(job):
            old = (previous or {}).get(job.input)
            rec = Record(job.input, "skipped", worker="")
            if old is not None and old.status in ("ok", "skipped"):
                rec.method, rec.output, rec.metrics = old.method, old.output, dict(old.metrics)
            records[i] = rec
        else:
            for out in job.outputs:
                remove_stale_temporaries(out)
            todo.append(i)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=label, unit="file", disable=not progress, file=sys.stderr)
    bar.update(len(jobs) - len(todo))

    def done(i, rec):
        records[i] = rec
        bar.update(1)
        if on_record is not None:
            on_record(rec)

    for i, rec in list(records.items()):
        if on_record is not None:
            on_record(rec)
    try:
        if todo and (workers is not None or scheduler is not None):
            _run_dask(func, jobs, todo, workers, scheduler, label, done)
        else:
            for i in todo:
                done(i, execute(func, jobs[i]))
    finally:
        bar.close()
    return [records[i] for i in range(len(jobs))]


def _run_dask(func, jobs, todo, workers, scheduler, label, done):
    from distributed import Client, as_completed

    cluster = local_cluster(workers) if workers is not None else None
    try:
        client = Client(cluster if cluster is not None else scheduler, timeout="30s")
    except Exception:
        if cluster is not None:
            cluster.close()
        raise
    try:
        if cluster is None:
            share_cores(client)
        tag = uuid.uuid4().hex[:8]
        keys = [f"{label.replace(' ', '-')}-{tag}-{i}-{os.path.basename(jobs[i].input.rstrip(os.sep))}" for i in todo]
        futures = client.map(functools.partial(execute, func), [jobs[i] for i in todo], key=keys, pure=False)
        index = {f.key: i for f, i in zip(futures, todo)}
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - no record came back: workers died (KilledWorker), cancelled
                    rec = Record(jobs[i].input, "failed", error=f"{type(exc).__name__}: {first_line(exc)}")
                done(i, rec)
        finally:
            client.cancel([f for f in futures if not f.done()])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---- the summary CSV ---------------------------------------------------------------------------------

_COLUMNS = ("file", "status", "method", "seconds", "output", "worker", "error")


def write_summary(path, records) -> str:
    """The records as a CSV (atomically): columns file, status, method, seconds, output, worker, error,
    then one per metric (sorted names; empty where an input has none)."""
    names = sorted({k for r in records for k in r.metrics})
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(_COLUMNS) + names)
        for r in records:
            w.writerow([r.file, r.status, r.method, f"{r.seconds:.3f}", r.output, r.worker, r.error]
                       + [_fmt(r.metrics.get(k)) for k in names])
    return os.fspath(path)


def _fmt(v) -> str:
    return "" if v is None else f"{v:.6g}"


def read_summary(path) -> dict:
    """{file: Record} of a summary CSV written by :func:`write_summary` ({} if there is none)."""
    if not os.path.isfile(path):
        return {}
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                metrics = {k: float(v) for k, v in row.items() if k not in _COLUMNS and v not in ("", None)}
                out[row["file"]] = Record(row["file"], row["status"], float(row["seconds"] or 0), row["method"],
                                          row["output"], metrics, row["error"], row["worker"])
            except (KeyError, TypeError, ValueError):
                continue  # not one of ours: ignored
    return out


# ---- the command line (recon mri / recon ct) -----------------------------------------------------------

@dataclass(frozen=True)
class CliSpec:
    """How a subcommand runs one input, for :func:`run_cli`.

    ``run_file(args)``: one input (``args.input`` a path, ``args.output`` a folder ending in the path
    separator), returns ``{"output": ..., "metrics": {...}}``; module level (it is sent to workers).
    ``outputs(args)``: every file and folder ``run_file`` will write for those args. ``accept(path)``: a
    file in a folder or a glob match is an input; ``is_unit(folder)``: a folder that is ONE input.
    ``path_options``: the names of other options that hold paths (made absolute for the workers, whose
    working folder differs); ``shared_inputs(args)``: files every input run reads too (geometry, prior)."""

    name: str
    run_file: Callable
    outputs: Callable
    accept: Callable
    is_unit: Callable = _never
    path_options: tuple = ()
    shared_inputs: Callable = lambda args: []


@contextlib.contextmanager
def one_line_warnings(quiet: bool):
    """While one input runs from the command line: each warning as one ``recon: warning: ...`` line on
    stderr (none with ``quiet``); the previous ``warnings.showwarning`` comes back afterwards."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            print(f"recon: warning: {str(message).splitlines()[0]}", file=sys.stderr)

    shown = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def add_arguments(parser) -> None:
    """The batch options of a subcommand (--workers, --scheduler, --skip-existing, --summary)."""
    g = parser.add_argument_group("many inputs (several files, folders or globs; docs/batch.md)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="reconstruct in N local worker processes (a Dask LocalCluster; cores shared among them)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="send the inputs to a running Dask cluster, e.g. tcp://host:8786 (paths must be "
                        "readable from its workers)")
    g.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose outputs all exist (resume an interrupted run)")
    g.add_argument("--summary", default=None, metavar="CSV",
                   help="summary CSV of the run (default OUTDIR/recon_<command>_summary.csv)")


def is_batch(args, spec: CliSpec) -> bool:
    """True when the arguments name a batch: several inputs, a glob, a folder that is not one input,
    or a batch option."""
    inputs = args.input or []
    if len(inputs) > 1 or args.workers is not None or args.scheduler is not None or args.skip_existing \
            or args.summary is not None:
        return True
    for p in inputs:
        if not os.path.lexists(p) and any(c in p for c in _GLOB):
            return True
        if os.path.isdir(p) and not spec.is_unit(p):
            return True
    return False


def run_cli(args, spec: CliSpec) -> int:
    """``recon <spec.name> INPUTS... -o OUTDIR [--workers N | --scheduler ADDR] [--skip-existing]``:
    one input runs ``spec.run_file`` here as before; a batch runs every input, prints one line per
    failed input, writes the summary CSV and returns 1 if any input failed."""
    if not is_batch(args, spec):
        args.input = args.input[0] if args.input else None
        spec.run_file(args)
        return 0
    if getattr(args, "sample", None):
        raise ValueError("--sample reconstructs one bundled data set; give it without other inputs or batch options")
    outdir = _batch_output_folder(args.output)
    inputs = expand_inputs(args.input, accept=spec.accept, is_unit=spec.is_unit)
    jobs = plan_jobs(args, spec, inputs, outdir)
    summary = args.summary or os.path.join(outdir, f"recon_{spec.name}_summary.csv")
    check_outputs([summary], inputs=inputs + list(spec.shared_inputs(args)), overwrite=True)
    previous = read_summary(summary) if args.skip_existing else {}
    seen: list = []

    def report(rec: Record):
        seen.append(rec)
        if rec.status == "failed":
            from tqdm.auto import tqdm

            rec.error = rec.error.replace(os.path.abspath(rec.file), rec.file)  # as the user named it
            msg = rec.error if rec.error.startswith(rec.file) else f"{rec.file}: {rec.error}"
            tqdm.write(f"recon: error: {msg}", file=sys.stderr)

    show = not args.quiet and bool(getattr(sys.stderr, "isatty", lambda: False)())
    t0 = time.perf_counter()
    try:
        records = run_jobs(spec.run_file, jobs, workers=args.workers, scheduler=args.scheduler,
                           skip_existing=args.skip_existing, progress=show, label=f"recon {spec.name}",
                           on_record=report, previous=previous)
    except KeyboardInterrupt:
        if seen:
            write_summary(summary, seen)
        raise
    write_summary(summary, records)
    if not args.quiet:
        n = {s: sum(r.status == s for r in records) for s in STATUSES}
        where = (f"{args.workers} local worker{'s' * (args.workers != 1)}" if args.workers is not None
                 else f"cluster {args.scheduler}" if args.scheduler is not None else "this process")
        print(f"recon {spec.name}: {len(records)} input{'s' * (len(records) != 1)}: {n['ok']} reconstructed, "
              f"{n['skipped']} skipped, {n['failed']} failed in {time.perf_counter() - t0:.1f} s ({where}); "
              f"summary {summary}")
    return 1 if any(r.status == "failed" for r in records) else 0


def _batch_output_folder(output) -> str:
    if output is None:
        raise ValueError("several inputs need -o OUTDIR (a folder)")
    if os.path.lexists(output) and not os.path.isdir(output):
        raise ValueError(f"-o {output}: with several inputs the output is a folder, and this is a file")
    name = output.rstrip("/" + os.sep)
    if not os.path.isdir(output) and os.path.splitext(name)[1] and not output.endswith(("/", os.sep)):
        raise ValueError(f"-o {output}: with several inputs the output is a folder (a name without an extension, "
                         "or ending in /)")
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, "")


def plan_jobs(args, spec: CliSpec, inputs, outdir) -> list[Job]:
    """One :class:`Job` per input: the arguments of a one-input run writing into ``outdir`` (quietly),
    and its outputs; refuses two inputs with the same output and an output that is an input."""
    jobs, owner = [], {}
    files, folders = [], []
    for path in inputs:
        one = copy.copy(args)
        one.input, one.output, one.quiet = os.path.abspath(path), os.path.join(os.path.abspath(outdir), ""), True
        one.workers = one.scheduler = one.summary = None
        one.skip_existing = False
        for name in spec.path_options:
            value = getattr(one, name, None)
            if isinstance(value, str) and os.path.exists(value):
                setattr(one, name, os.path.abspath(value))
        outs_files, outs_folders = spec.outputs(one)
        for out in list(outs_files) + list(outs_folders):
            key = os.path.realpath(out)
            if key in owner:
                raise ValueError(f"{owner[key]} and {path} would both write {out}: rename one, or run them into "
                                 "different output folders")
            owner[key] = path
        files += outs_files
        folders += outs_folders
        if not any(os.path.lexists(out) for out in list(outs_files) + list(outs_folders)):
            # none of its outputs exists now, so any found later are this batch's own: a task Dask
            # reruns after losing the worker that had already committed them replaces them
            one.overwrite = True
        jobs.append(Job(path, tuple(outs_files) + tuple(outs_folders), one))
    check_outputs(files, folders, inputs=_input_files(inputs) + list(spec.shared_inputs(args)), overwrite=True)
    return jobs


def _input_files(inputs) -> list[str]:
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out += [os.path.join(p, n) for n in sorted(os.listdir(p))]
        else:
            out.append(p)
    return out


__all__ = ["CliSpec", "Job", "Record", "add_arguments", "one_line_warnings", "available_cores", "complete", "execute", "expand_inputs",
           "is_batch", "local_cluster", "plan_jobs", "read_summary", "run_cli", "run_jobs", "share_cores",
           "write_summary"]
