"""recon.nets training library: data sources and splits, simulated samples, the training loop
(validation, CSV/PNG, checkpoints and resume, DDP with world size 1), and the inference helpers'
model-card checks."""

from __future__ import annotations

import csv
import os
import socket
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from recon.nets import sources  # noqa: E402
from recon.nets.simulate import CtTask, DataConfig, MriTask, SimulatedDataset  # noqa: E402
from recon.nets.train import TrainConfig, train  # noqa: E402

TINY = dict(model_config=dict(features=4, layers=2, unrolls=1, cg_iter=2), mri=MriTask(size=24, coils=2),
            data=DataConfig(sources={"ellipses": 1.0, "shepp": 1.0}), epochs=1, steps_per_epoch=2,
            val_samples=2, batch_size=1, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_sources_train_and_validation_splits_share_no_image():
    pytest.importorskip("nilearn")
    tr, va = sources.mni_slices("train"), sources.mni_slices("val")
    assert len(tr) > 150 and len(va) > 30
    assert not set(tr) & set(va)
    for plane in ("axial", "coronal"):                       # at least 3 positions between the splits
        t = np.array([p for k, p in tr if k == plane])
        v = np.array([p for k, p in va if k == plane])
        assert np.abs(t[:, None] - v[None]).min() >= 3


def test_dataset_items_are_deterministic_and_fresh_per_epoch():
    ds = SimulatedDataset(MriTask(size=24, coils=2), DataConfig(sources={"ellipses": 1.0}, prior=True), "train", 3)
    a, b = ds[1], ds[1]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(ds[0]["image"], ds[1]["image"])
    ds.set_epoch(1)
    assert not np.array_equal(ds[1]["image"], a["image"])
    val = SimulatedDataset(ds.task, ds.data, "val", 3)
    assert not np.array_equal(val[1]["image"], a["image"])
    assert set(a) == {"image", "maps", "kspace", "mask", "prior", "changed"}
    maps = a["maps"]
    assert np.allclose(np.sqrt((np.abs(maps) ** 2).sum(0)), 1, atol=1e-4)       # unit RSS coil maps
    m = a["mask"][0] != 0
    assert np.array_equal(a["kspace"][:, :, ~m], np.zeros_like(a["kspace"][:, :, ~m]))


def test_radial_and_ct_samples():
    r = SimulatedDataset(MriTask(size=24, coils=2, trajectory="noncartesian"), DataConfig(sources={"shepp": 1.0}),
                         "train", 1)[0]
    spokes = MriTask(size=24, spokes_fraction=0.125).spokes
    assert r["kspace"].shape == (2, spokes, 48) and r["coord"].shape == (spokes, 48, 2)
    assert np.abs(r["coord"]).max() <= 12 and (r["weights"] > 0).all()
    task = CtTask(size=24, views=20)
    c = SimulatedDataset(task, DataConfig(sources={"ellipses": 1.0}), "train", 1)[0]
    assert c["sinogram"].shape == task.geometry().sino_shape
    lo, hi = task.mu_range
    assert 0 < c["image"].max() <= hi and task.dose_range[0] <= float(c["dose"]) <= task.dose_range[1]


def test_prior_pairs_differ_by_the_lesion_and_a_small_warp():
    img = sources.augment(sources.base_image("shepp", "train", 0, np.random.default_rng(0), 64),
                          np.random.default_rng(1), 64)
    for kind in ("new", "removed", "both"):
        t, p, changed = sources.prior_pair(img, np.random.default_rng(2), kind=kind)
        assert changed.any() == (kind != "both")
        if kind == "new":
            assert np.abs(t - img)[changed].mean() > 0.1 and np.abs(t - img)[~changed].max() < 0.05
        if kind == "removed":
            assert np.array_equal(t, img)
        assert 0.0 < np.abs(p - t).mean() < 0.2                         # the prior is warped, not equal
    with pytest.raises(ValueError, match="kind"):
        sources.prior_pair(img, np.random.default_rng(0), kind="moved")


def test_folder_source_splits_a_users_images(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.random((4, 20, 20)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.random((20, 24)).astype(np.float32))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = str(tmp_path)
    tr, va = sources.folder_slices(folder, "train"), sources.folder_slices(folder, "val")
    assert len(tr) == 4 and va == [(str(tmp_path / "a.npy"), 2)]
    data = DataConfig(sources={"folder": 1.0}, folder=folder)
    ds = SimulatedDataset(MriTask(size=16, coils=2), data, "train", 2)
    assert ds[0]["image"].shape == (16, 16) and ds.counts() == {"folder": 4}
    res = train(TrainConfig(**dict(TINY, mri=MriTask(size=16, coils=2), data=data, out_dir=str(tmp_path / "run"))),
                log=lambda s: None)
    assert res["steps"] == 2
    with pytest.raises(ValueError, match="does not exist"):
        sources.folder_slices(str(tmp_path / "nope"), "train")
    with pytest.raises(ValueError, match="needs DataConfig.folder"):
        sources.base_image("folder", "train", 0, rng, 16)


def test_train_writes_log_curves_weights_and_resumes(tmp_path):
    out = str(tmp_path / "run")
    res = train(TrainConfig(**dict(TINY, out_dir=out, name="tiny")), log=lambda s: None)
    for f in ("tiny.safetensors", "tiny.json", "log.csv", "curves.png", "checkpoint.safetensors", "checkpoint.json"):
        assert os.path.isfile(os.path.join(out, f)), f
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert len(rows) == 1 and int(rows[0]["step"]) == 2 and np.isfinite(float(rows[0]["val_psnr"]))
    assert res["steps"] == 2 and np.isfinite(res["best"]["psnr"])
    from recon.nets import load

    m = load(os.path.join(out, "tiny"))
    card = m.card
    assert card["training"]["steps"] == 2 and card["training"]["sources"]["ellipses"]["weight"] == 1.0
    assert card["task"]["accelerations"] == [4, 8] and card["metrics"]["validation"]["psnr"] == res["best"]["psnr"]
    res2 = train(TrainConfig(**dict(TINY, out_dir=out, name="tiny", epochs=2, resume=True)), log=lambda s: None)
    assert res2["steps"] == 4
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


def test_resume_equals_uninterrupted_training(tmp_path, monkeypatch):
    import recon.nets.train as tr

    a = train(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "a"), epochs=2)), log=lambda s: None)
    save_checkpoint = tr._save_checkpoint

    def interrupted(*args):                       # the run is killed right after its first checkpoint
        save_checkpoint(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "_save_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "b"), epochs=2)), log=lambda s: None)
    monkeypatch.setattr(tr, "_save_checkpoint", save_checkpoint)
    b = train(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "b"), epochs=2, resume=True)), log=lambda s: None)
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert set(wa) == set(wb) and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert a["steps"] == b["steps"] == 4


def test_init_weights_starts_from_a_trained_model(tmp_path):
    train(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "a"), name="a")), log=lambda s: None)
    msgs = []
    res = train(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "b"), init_weights=str(tmp_path / "a" / "a"))),
                log=msgs.append)
    assert msgs[0].startswith("initialised from") and res["steps"] == 2
    from recon.nets import load

    assert load(tmp_path / "b" / "model").card["training"]["init_weights"] == str(tmp_path / "a" / "a")
    with pytest.raises(ValueError, match="differs from the configured"):
        train(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "c"), init_weights=str(tmp_path / "a" / "a"),
                                 model_config=dict(features=5, layers=2, unrolls=1, cg_iter=2))), log=lambda s: None)


def test_time_limit_and_bad_configs(tmp_path):
    res = train(TrainConfig(**dict(TINY, out_dir=str(tmp_path), epochs=50, time_limit=1e-3)), log=lambda s: None)
    assert res["steps"] == 1
    for bad, match in ((dict(task="pet"), "task"), (dict(model="lpd"), "does not fit"),
                       (dict(batch_size=0), "batch_size"), (dict(time_limit=-1.0), "time_limit"),
                       (dict(prior_dropout=2.0), "prior_dropout")):
        with pytest.raises(ValueError, match=match):
            train(TrainConfig(**dict(TINY, out_dir=str(tmp_path), **bad)))


def test_ct_training_with_prior_and_checkpointing(tmp_path):
    cfg = TrainConfig(task="ct", model="lpd", model_config=dict(iterations=1, features=4, layers=2),
                      ct=CtTask(size=16, views=12), data=DataConfig(sources={"ellipses": 1.0}, prior=True),
                      epochs=1, steps_per_epoch=2, val_samples=2, batch_size=2, checkpointing=True,
                      out_dir=str(tmp_path), progress=False)
    res = train(cfg, log=lambda s: None)
    assert {"psnr", "psnr_noprior", "psnr_changed"} <= set(res["best"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_path_with_world_size_one(tmp_path, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    try:
        res = train(TrainConfig(**dict(TINY, out_dir=str(tmp_path))), log=lambda s: None)
        assert dist.is_initialized() and dist.get_world_size() == 1 and res["steps"] == 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ---- inference helpers ---------------------------------------------------------------------------------

def test_reconstruct_mri_checks_the_card(tmp_path):
    from recon.nets import reconstruct_mri
    from recon.nets.infer import ModelCardWarning

    train(TrainConfig(**dict(TINY, out_dir=str(tmp_path), name="m")), log=lambda s: None)
    path = str(tmp_path / "m")
    s = SimulatedDataset(MriTask(size=24, coils=2, accelerations=(4,), center_fractions=(0.16,)),
                         DataConfig(sources={"shepp": 1.0}), "val", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelCardWarning)
        x = reconstruct_mri(s["kspace"], path, maps=s["maps"])
    assert x.shape == (24, 24) and x.dtype == np.complex64
    xs = reconstruct_mri(np.stack([s["kspace"]] * 3), path, maps=s["maps"], batch_size=2)
    assert xs.shape == (3, 24, 24) and np.allclose(xs[2], x, atol=1e-5)
    k = s["kspace"].copy()
    k[:, :, :11] = 0                                             # acceleration 24: never seen in training
    k[:, :, 12:] = 0
    with pytest.warns(ModelCardWarning, match="acceleration"):
        reconstruct_mri(k, path, maps=s["maps"])
    with pytest.raises(ValueError, match="trained on cartesian"):
        reconstruct_mri(s["kspace"][:, :2], path, coord=np.zeros((2, 24, 2), np.float32), im_shape=(24, 24))
    with pytest.raises(ValueError, match="maps"):
        reconstruct_mri(s["kspace"], path, maps=s["maps"][:1])
