"""Training loop for the unrolled networks (model code lives apart, in the model modules).

``train(TrainConfig(...))`` trains on simulated samples (:mod:`recon.nets.simulate`), validates
each epoch on a split of the training sources that shares no image with the training split
(PSNR/SSIM with fastMRI's definitions, on magnitudes), keeps the best weights
(``OUT/model.safetensors`` + card), writes ``OUT/log.csv`` and ``OUT/curves.png``, and a resumable
checkpoint (``OUT/checkpoint.safetensors`` + ``.json``: model and Adam state as tensors, never
pickle). Fixed seeds; ``time_limit`` (seconds) ends training after the step that crosses it (then one
last validation); ``checkpointing`` recomputes each unrolled stage in the backward (memory of one
stage). Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) it runs torch DDP (gloo on CPU, NCCL on
GPU) with a ``DistributedSampler``; rank 0 validates and writes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import resource
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import architectures
from .simulate import CtTask, DataConfig, MriTask, SimulatedDataset
from .weights import _atomic, make_card, save

MODELS_FOR = {"mri": ("modl", "varnet"), "ct": ("lpd", "pwls")}


@dataclass
class TrainConfig:
    """Everything a training run needs (the CLI builds one of these)."""

    task: str = "mri"                   # 'mri' or 'ct'
    model: str = "modl"                 # mri: 'modl' | 'varnet'; ct: 'lpd' | 'pwls'
    model_config: dict = field(default_factory=dict)   # fields of the model's config dataclass
    mri: MriTask = field(default_factory=MriTask)
    ct: CtTask = field(default_factory=CtTask)
    data: DataConfig = field(default_factory=DataConfig)
    prior_dropout: float = 0.3          # fraction of batches trained without their prior
    changed_weight: float = 2.0         # prior models: extra loss weight of the changed region (loss_fn)
    out_dir: str = "train_out"
    name: str = "model"
    run_prefix: str = ""                # prefix of the run files in out_dir (log.csv, curves.png, checkpoint.*)
    epochs: int = 10
    steps_per_epoch: int = 100
    val_samples: int = 16
    batch_size: int = 2
    lr: float = 1e-3
    lr_final: float = 1e-4              # cosine decay from lr to lr_final over the planned steps
    time_limit: float | None = None     # seconds of training (None: epochs only)
    seed: int = 0
    resume: bool = False
    init_weights: str | None = None     # start from these weights (same architecture; fresh optimizer)
    checkpointing: bool = False
    num_threads: int | None = 1
    progress: bool | None = None        # tqdm bar (None: only on a terminal)
    device: str = "cpu"

    def task_config(self):
        return self.mri if self.task == "mri" else self.ct


def run_files(cfg: TrainConfig) -> dict:
    """The files a run writes: ``weights`` (+ its card ``.json``), ``log``, ``curves``, ``checkpoint``
    (``.safetensors`` + ``.json``)."""
    def path(name):
        return os.path.join(cfg.out_dir, cfg.run_prefix + name)

    return {"weights": os.path.join(cfg.out_dir, cfg.name + ".safetensors"),
            "card": os.path.join(cfg.out_dir, cfg.name + ".json"), "log": path("log.csv"),
            "curves": path("curves.png"), "checkpoint": path("checkpoint.safetensors"),
            "checkpoint_meta": path("checkpoint.json")}


def _check(cfg: TrainConfig):
    if cfg.task not in MODELS_FOR:
        raise ValueError(f"task must be 'mri' or 'ct', got {cfg.task!r}")
    if cfg.model not in MODELS_FOR[cfg.task]:
        raise ValueError(f"model {cfg.model!r} does not fit task {cfg.task!r} (use one of {MODELS_FOR[cfg.task]})")
    for name in ("epochs", "steps_per_epoch", "val_samples", "batch_size"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not (np.isfinite(cfg.changed_weight) and cfg.changed_weight >= 0):
        raise ValueError(f"changed_weight must be a finite number >= 0, got {cfg.changed_weight}")
    if not 0 <= cfg.prior_dropout <= 1:
        raise ValueError(f"prior_dropout must lie in [0, 1], got {cfg.prior_dropout}")
    if cfg.time_limit is not None and not cfg.time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds, got {cfg.time_limit}")


def build_model(cfg: TrainConfig):
    cls = architectures()[cfg.model]
    kw = dict(cfg.model_config)
    kw["prior"] = cfg.data.prior
    if cfg.task == "mri":
        kw["trajectory"] = cfg.mri.trajectory
    return cls(cls.config_class(**kw))


# ---- batches --------------------------------------------------------------------------------------

def batch_inputs(cfg: TrainConfig, batch: dict, device, *, with_prior: bool = True):
    """``(data, params, prior, target)`` of a collated batch (and ``changed`` below)."""
    to = (lambda a: a.to(device)) if device != "cpu" else (lambda a: a)
    if cfg.task == "mri":
        params = {"maps": to(batch["maps"])}
        if "mask" in batch:
            params["mask"] = to(batch["mask"])
        else:
            params["coord"] = batch["coord"]
            params["weights"] = to(batch["weights"])
        data = to(batch["kspace"])
    else:
        params = {"projector": cfg.ct.projector(), "weights": to(batch["weights"])}
        data = to(batch["sinogram"])
    prior = to(batch["prior"]) if (with_prior and "prior" in batch) else None
    return data, params, prior, to(batch["image"])


def loss_fn(out, target, changed=None, changed_weight: float = 0.0):
    """Mean absolute error relative to the mean magnitude of each target (scale-free); with a
    ``changed`` mask ``(B, *im)`` (the region where the prior differs from the target) plus
    ``changed_weight`` times the mean absolute error inside that region, relative to the same mean:
    a small changed region then weighs like the whole image, so copying the prior there costs."""
    B = target.shape[0]
    e = (out - target).abs().reshape(B, -1)
    ref = target.abs().reshape(B, -1).mean(1).clamp_min(1e-12)
    err = e.mean(1)
    if changed is not None and changed_weight > 0:
        m = changed.reshape(B, -1).to(e.dtype)
        err = err + changed_weight * (e * m).sum(1) / m.sum(1).clamp_min(1.0)
    return (err / ref).mean()


def evaluate(model, cfg: TrainConfig, loader, device, *, use_prior: bool = True) -> dict:
    """Mean loss, PSNR and SSIM (fastMRI definitions on magnitudes, maxval = each target's max)
    over a loader; with priors also the PSNR inside the changed region (``psnr_changed``)."""
    from fastmri_data.metrics import psnr, ssim

    model.eval()
    losses, psnrs, ssims, changed = [], [], [], []
    with torch.inference_mode():
        for batch in loader:
            data, params, prior, target = batch_inputs(cfg, batch, device, with_prior=use_prior)
            out = model(data, params, prior)
            losses.append(float(loss_fn(out, target)))
            o, t = out.abs().cpu().numpy(), target.abs().cpu().numpy()
            for b in range(t.shape[0]):
                mx = float(t[b].max())
                psnrs.append(psnr(t[b], o[b], mx))
                ssims.append(ssim(t[b][None], o[b][None], mx))
                if "changed" in batch and bool(batch["changed"][b].any()):
                    m = batch["changed"][b].numpy()
                    changed.append(10 * np.log10(mx ** 2 / max(float(np.mean((t[b][m] - o[b][m]) ** 2)), 1e-30)))
    model.train()
    out = {"loss": float(np.mean(losses)), "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}
    if changed:
        out["psnr_changed"] = float(np.mean(changed))
    return out


# ---- checkpoints (safetensors, no pickle) ---------------------------------------------------------------

def _save_checkpoint(path_base: str, model, opt, state: dict):
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    scalars = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous().reshape(v.shape)
            else:
                scalars[f"{pid}.{k}"] = v
    meta = dict(state, param_groups=osd["param_groups"], opt_scalars=scalars)
    _atomic(path_base + ".safetensors", lambda tmp: save_file(tensors, tmp))

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1, default=float)

    _atomic(path_base + ".json", write)


def _load_checkpoint(path_base: str, model, opt) -> dict:
    from safetensors.torch import load_file

    try:
        with open(path_base + ".json") as f:
            meta = json.load(f)
        tensors = load_file(path_base + ".safetensors")
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same error for the user
        raise ValueError(f"cannot resume from {path_base}.safetensors/.json: {e}") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta.pop("opt_scalars").items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


# ---- plots and logs ----------------------------------------------------------------------------------

LOG_FIELDS = ("epoch", "step", "time_s", "train_loss", "val_loss", "val_psnr", "val_ssim", "val_psnr_noprior",
              "val_psnr_changed", "lr")


def _plot(log_path: str, png_path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    step = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(step, [float(r["train_loss"]) for r in rows], label="train")
    ax[0].plot(step, [float(r["val_loss"]) for r in rows], label="validation")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("relative L1 loss")
    ax[0].legend()
    ax[1].plot(step, [float(r["val_psnr"]) for r in rows], "o-", label="PSNR")
    if rows[0].get("val_psnr_noprior"):
        ax[1].plot(step, [float(r["val_psnr_noprior"]) for r in rows], "s--", label="PSNR, no prior")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("validation PSNR (dB)")
    ax[1].legend()
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, format="png", dpi=80)

    _atomic(png_path, write)
    plt.close(fig)


# ---- distributed --------------------------------------------------------------------------------------

def _distributed(device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if str(device).startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


# ---- the loop ---------------------------------------------------------------------------------------------

def _lr(cfg: TrainConfig, step_fraction: float, elapsed: float) -> float:
    """Cosine decay from ``lr`` to ``lr_final`` over the planned steps, or over the time limit when
    that comes first."""
    frac = step_fraction if cfg.time_limit is None else max(step_fraction, elapsed / cfg.time_limit)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + np.cos(np.pi * min(frac, 1.0)))


def train(cfg: TrainConfig, log=print) -> dict:
    """Train a model (module docstring); returns a summary dict (best validation metrics, steps,
    time, paths)."""
    import torch.distributed as dist
    from tqdm import tqdm

    _check(cfg)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    device = torch.device(cfg.device)
    rank, world = _distributed(device)
    torch.manual_seed(cfg.seed + rank)
    os.makedirs(cfg.out_dir, exist_ok=True)
    task = cfg.task_config()
    model = build_model(cfg).to(device)
    model.checkpointing = bool(cfg.checkpointing)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total_steps = cfg.epochs * cfg.steps_per_epoch
    files = run_files(cfg)
    base = files["checkpoint"][: -len(".safetensors")]
    log_path = files["log"]
    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "best": -np.inf, "best_metrics": {}}
    if cfg.init_weights and not (cfg.resume and os.path.exists(base + ".json")):
        from .weights import load

        init = load(cfg.init_weights)
        if init.arch != model.arch or init.config != model.config:
            raise ValueError(f"init_weights {cfg.init_weights}: architecture {init.arch} {init.config} differs from "
                             f"the configured {model.arch} {model.config}")
        model.load_state_dict(init.state_dict())
        log(f"initialised from {cfg.init_weights}")
    if cfg.resume and os.path.exists(base + ".json"):
        state.update(_load_checkpoint(base, model, opt))
        log(f"resumed from {base} at epoch {state['epoch']}, step {state['step']}")
    elif rank == 0:
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(LOG_FIELDS)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    train_set = SimulatedDataset(task, cfg.data, "train", cfg.steps_per_epoch * cfg.batch_size * world, cfg.seed)
    val_set = SimulatedDataset(task, cfg.data, "val", cfg.val_samples, cfg.seed)
    sampler = torch.utils.data.distributed.DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed) \
        if world > 1 else None
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=cfg.batch_size, num_workers=0)
    t_start = time.perf_counter() - state["elapsed"]
    stop = False
    show = cfg.progress if cfg.progress is not None else os.isatty(2)
    while state["epoch"] < cfg.epochs and not stop:
        epoch = state["epoch"]
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        # the batch order and the prior dropout are functions of (seed, rank, epoch): resuming
        # replays exactly what an uninterrupted run would have done
        loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler,
                                             shuffle=sampler is None, num_workers=0, drop_last=True,
                                             generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        rng = np.random.default_rng([cfg.seed, rank, epoch, 7])
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show or rank != 0, leave=False)
        for batch in bar:
            lr = _lr(cfg, state["step"] / total_steps, time.perf_counter() - t_start)
            for g in opt.param_groups:
                g["lr"] = lr
            with_prior = cfg.data.prior and rng.uniform() >= cfg.prior_dropout
            data, params, prior, target = batch_inputs(cfg, batch, device, with_prior=with_prior)
            changed = batch["changed"].to(device) if (with_prior and "changed" in batch) else None
            loss = loss_fn(net(data, params, prior), target, changed, cfg.changed_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            state["step"] += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if cfg.time_limit is not None and time.perf_counter() - t_start >= cfg.time_limit:
                stop = True
                break
        state["epoch"] = epoch + 1
        state["elapsed"] = time.perf_counter() - t_start
        if rank == 0:
            metrics = evaluate(model, cfg, val_loader, device)
            row = {"epoch": state["epoch"], "step": state["step"], "time_s": round(state["elapsed"], 1),
                   "train_loss": float(np.mean(losses)) if losses else float("nan"),
                   "val_loss": metrics["loss"], "val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"],
                   "val_psnr_changed": metrics.get("psnr_changed", ""), "lr": lr, "val_psnr_noprior": ""}
            score = metrics["psnr"]
            if cfg.data.prior:
                m0 = evaluate(model, cfg, val_loader, device, use_prior=False)
                row["val_psnr_noprior"] = m0["psnr"]
                metrics["psnr_noprior"], metrics["ssim_noprior"] = m0["psnr"], m0["ssim"]
                score = 0.5 * (metrics["psnr"] + m0["psnr"])
                if "psnr_changed" in metrics and "psnr_changed" in m0:
                    # selection also penalises copying the prior: a changed region worse with the prior
                    metrics["psnr_changed_noprior"] = m0["psnr_changed"]
                    score += min(0.0, metrics["psnr_changed"] - m0["psnr_changed"])
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([row[k] for k in LOG_FIELDS])
            _plot(log_path, files["curves"])
            log(f"epoch {state['epoch']} step {state['step']} {state['elapsed']:.0f} s: train {row['train_loss']:.4f} "
                f"val {metrics['loss']:.4f} PSNR {metrics['psnr']:.2f} SSIM {metrics['ssim']:.4f}"
                + (f" (no prior {metrics['psnr_noprior']:.2f})" if cfg.data.prior else ""))
            if score > state["best"]:
                state["best"], state["best_metrics"] = float(score), dict(metrics, epoch=state["epoch"],
                                                                         step=state["step"])
                save(model, os.path.join(cfg.out_dir, cfg.name), _card(cfg, model, train_set, val_set, state))
            _save_checkpoint(base, model, opt, state)
        if world > 1:
            dist.barrier()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if rank == 0 and state["best_metrics"]:  # final card: total steps and time of the whole run
        from .weights import read_card

        card = read_card(os.path.join(cfg.out_dir, cfg.name + ".safetensors"))
        card["training"].update(total_steps=state["step"], total_time_s=round(state["elapsed"], 1),
                                peak_memory_mb=round(peak_mb, 1))
        _rewrite_card(os.path.join(cfg.out_dir, cfg.name + ".json"), card)
    return {"best": state["best_metrics"], "steps": state["step"], "time_s": state["elapsed"],
            "weights": os.path.join(cfg.out_dir, cfg.name + ".safetensors"), "log": log_path,
            "peak_memory_mb": peak_mb}


def _rewrite_card(path: str, card: dict):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(json.dumps(card, indent=2, default=float) + "\n")

    _atomic(path, write)


SOURCE_NOTES = {"mni": "nilearn MNI152 2009 template (T1, GM/WM/CSF mixes), axial + coronal slices",
                "raw": "fully sampled multi-coil raw data (fastMRI/ISMRMRD) in DataConfig.folder, "
                       "undersampled on the fly (recon.nets.rawdata)",
                "ellipses": "random textured ellipses (recon.ct.random_ellipses)",
                "shepp": "Shepp-Logan head (fastmri_data.phantom) with texture",
                "folder": "the user's images in DataConfig.folder"}


def _card(cfg: TrainConfig, model, train_set, val_set, state) -> dict:
    task = dataclasses.asdict(cfg.task_config())
    task["modality"] = cfg.task
    if cfg.task == "ct":
        g = cfg.ct.geometry()
        task["geometry"] = {"kind": "fan", "image_shape": list(g.image_shape), "sino_shape": list(g.sino_shape)}
    training = {
        "sources": {k: {"weight": v, "train_images": train_set.counts()[k], "val_images": val_set.counts()[k]}
                    for k, v in cfg.data.sources.items()},
        "source_notes": {k: v for k, v in SOURCE_NOTES.items() if k in cfg.data.sources},
        "folder": cfg.data.folder,
        "samples_seen": state["step"] * cfg.batch_size, "steps": state["step"], "epoch": state["epoch"],
        "time_s": round(state["elapsed"], 1), "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
        "prior": cfg.data.prior, "prior_dropout": cfg.prior_dropout if cfg.data.prior else None,
        "varied_priors": cfg.data.varied_priors if cfg.data.prior else None,
        "changed_weight": cfg.changed_weight if cfg.data.prior else None,
        "lr_final": cfg.lr_final, "selection": "best validation PSNR (prior models: mean with and without prior, "
                                               "minus any loss in the changed region with the prior)",
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} thread(s), "
                   f"{cfg.device}".strip(),
        "torch": torch.__version__, "init_weights": cfg.init_weights,
    }
    metrics = {"validation": dict(state["best_metrics"], split="val split of the training sources")}
    return make_card(model, task=task, training=training, metrics=metrics, name=cfg.name)
