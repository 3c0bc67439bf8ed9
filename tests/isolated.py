"""Run Python code in a fresh subprocess that imports the same ``recon`` as the tests (an in-tree
build or the installed package: the subprocess starts in tests/, so a source tree without compiled
modules cannot shadow it) and this directory's helper modules, with extra environment variables
(OMP_THREAD_LIMIT, RECON_NUM_THREADS, ...). Used by the reliability and fuzz tests for what can
crash, hang or change process-wide state."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import recon

TESTS = pathlib.Path(__file__).resolve().parent
PACKAGE_ROOT = pathlib.Path(recon.__file__).resolve().parents[1]


def python_env(drop: tuple[str, ...] = (), **extra: str) -> dict:
    """``os.environ`` without the variables in ``drop`` plus ``extra``, with a PYTHONPATH that finds
    the tests' ``recon`` first, then tests/."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), str(TESTS)])
    return env


def popen_python(code: str, env: dict, *args: str, **kw) -> subprocess.Popen:
    """Start ``python -c code args...`` in tests/ with ``env`` (see :func:`python_env`)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=str(TESTS), **kw)


def run_python(code: str, timeout: float = 60, drop: tuple[str, ...] = (), **extra: str) -> subprocess.CompletedProcess:
    """Run ``code``; returns the completed process (stdout/stderr as text)."""
    return subprocess.run([sys.executable, "-c", code], env=python_env(drop, **extra), cwd=str(TESTS), check=False,
                          capture_output=True, text=True, timeout=timeout)
