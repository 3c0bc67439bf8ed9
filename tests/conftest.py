"""pytest configuration shared by all tests.

* ``OMP_WAIT_POLICY=PASSIVE`` (unless set): the test operators are tiny, and OpenMP threads that
  spin-wait at barriers make them many times slower on a busy machine (CI runners, a shared dev box).
  It must be set before ``recon._core`` (and its OpenMP runtime) is loaded, hence here.
* Tests marked ``@pytest.mark.gpu`` are skipped, with the reason, when ``recon.cuda_available()`` is
  false (no ``recon._cuda`` module or no CUDA device).
* Fixture ``rng``: a seeded ``numpy.random.Generator`` per test.
* The operator harness (tests/harness.py) lives next to this file; registrations go in
  ``tests/ops_<topic>.py`` (see harness.py's docstring).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    gpu_items = [it for it in items if it.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import recon

    if recon.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and the recon._cuda module")
    for it in gpu_items:
        it.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
