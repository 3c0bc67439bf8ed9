"""The examples run and do what they say (tiny settings)."""

import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_unrolled_sense_example_trains(tmp_path):
    """3 unrolled iterations with recon's batched SENSE (4 slices, own maps and masks) and the
    implicit-gradient CG inside a torch Module: the loss goes down within a few steps."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import unrolled_sense
    finally:
        sys.path.remove(str(EXAMPLES))
    losses = unrolled_sense.train(steps=8, lr=1e-2, quiet=True, shape=(32, 32), cg_iters=5, out=str(tmp_path))
    assert all(b < a for a, b in zip(losses[:-1], losses[1:])), losses   # steady descent (seeded)
    assert losses[-1] < 0.85 * losses[0], losses
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "images.png").stat().st_size > 0
