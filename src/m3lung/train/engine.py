"""The training engine every network in the project uses.

What it guarantees:

* **Reproducible**: the order of samples, their augmentation and the model's initialisation come from
  ``seed`` and the epoch number only (never from a global random state), so a run is repeatable and
  ``resume`` continues exactly where an interrupted run stopped (``checkpoints/last.pt`` is written
  atomically after every epoch).
* **Multi-process**: under ``torchrun`` (``WORLD_SIZE > 1``) every process takes its share of each
  global batch and DistributedDataParallel averages the gradients, so N processes compute what one
  process computes with the same global batch (BatchNorm aside: use ``freeze_bn`` or ``sync_bn``).
  NCCL on GPUs, gloo on CPUs.
* **Observable**: a progress bar per epoch (off when not a terminal), ``log.csv`` with one row per
  epoch, optional TensorBoard, ``best.pt`` chosen by a validation metric.
* **Weight averaging** (``ema``, a choice, off in the papers' recipes): an exponential moving average
  of the weights, updated after every step, is what validation sees and what ``best.pt`` holds.

The engine knows nothing about the task: a :class:`Task` builds batches, computes the loss and
evaluates.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from m3lung.errors import InputError
from m3lung.io.atomic import atomic_file
from m3lung.train.checkpoint import plain, save_model
from m3lung.train.config import TrainConfig, to_dict
from m3lung.train.inference import pick_device

log = logging.getLogger(__name__)
STATE_FORMAT = "m3lung.train-state/1"


class Task(Protocol):
    """What the engine needs from a task (e.g. the slice network on a slice table)."""

    kind: str

    def train_size(self) -> int:
        """Number of training samples (rows)."""
        ...

    def train_weights(self) -> np.ndarray | None:
        """Sampling weights per row for class-balanced sampling (None: uniform)."""
        ...

    def batch(self, rows: np.ndarray, epoch: int, device: torch.device) -> Any:
        """Inputs and targets of ``rows`` (augmented from ``epoch`` and the rows only)."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss of the batch and named figures to log."""
        ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation figures (run on rank 0 only)."""
        ...


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size from torchrun's environment."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(config: TrainConfig) -> DistInfo:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs) once; a no-op for one process."""
    info = dist_info()
    if info.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    return info


def barrier() -> None:
    """Wait for every process (no-op for one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed torch (CPU and CUDA) for model initialisation; optionally ask for deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def epoch_rows(
    n: int, epoch: int, seed: int, *, samples: int | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """The rows drawn in ``epoch``: a permutation (or weighted draw with replacement) from (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 7919])
    m = samples or n
    if weights is not None:
        p = np.asarray(weights, dtype=np.float64)
        return rng.choice(n, size=m, replace=True, p=p / p.sum())
    reps = math.ceil(m / n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:m]


def batches(rows: np.ndarray, batch_size: int, info: DistInfo) -> Iterator[np.ndarray]:
    """This process's share of every full global batch (the last partial batch is dropped)."""
    if batch_size % info.world:
        raise InputError(f"batch size {batch_size} does not split over {info.world} processes")
    per = batch_size // info.world
    for start in range(0, len(rows) - batch_size + 1, batch_size):
        yield rows[start + info.rank * per : start + (info.rank + 1) * per]


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    s = cfg.schedule
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma)
    if s.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=cfg.best_mode, factor=s.gamma, patience=s.patience)
    return None


def _make_ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """The exponential moving average of ``model``'s weights and buffers (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _git_commit() -> str | None:
    try:
        import subprocess

        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best: float | None
    best_path: Path
    last_path: Path


def fit(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    model_config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``task`` for ``config.epochs`` epochs, writing into ``out_dir``.

    Files: ``checkpoints/last.pt`` (full training state, every epoch), ``best.pt`` (the model with the
    best ``config.best_metric``, with its config, provenance and weights hash), ``log.csv``.
    ``resume`` continues from ``last.pt``; without it an existing run in ``out_dir`` is an error.
    """
    from tqdm import tqdm

    info = dist_info()
    out = Path(out_dir)
    last_path = out / "checkpoints" / "last.pt"
    best_path = out / "best.pt"
    if last_path.exists() and not resume:
        raise InputError(f"{out} already holds a training run; pass --resume to continue it, or use another --out")
    init_distributed(config)
    device = pick_device(config.device, info.local_rank)
    on_cuda = device.type == "cuda"
    model.to(device)
    if config.sync_bn and info.world > 1 and on_cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.channels_last and on_cuda:
        model = model.to(memory_format=torch.channels_last)
    train_model: nn.Module = model
    if info.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    opt = _make_optimizer(model, config)
    sched = _make_scheduler(opt, config)
    ema = _make_ema(model, config.ema)
    # what validation sees and best.pt holds: the averaged weights when ema is on
    eval_model: nn.Module = ema.module if ema is not None else model
    start_epoch, best, history = 0, None, []
    if resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise InputError(f"{last_path}: not an m3lung training state")
        if (ema is not None) != (state.get("ema") is not None):
            raise InputError(
                f"{last_path}: the run was trained with train.ema={state.get('config', {}).get('ema', 0.0)}; "
                f"resume it with the same setting (got {config.ema})"
            )
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        start_epoch, best, history = int(state["epoch"]), state.get("best"), list(state.get("history", []))
        if info.main:
            log.info("resuming %s after epoch %d", out, start_epoch)
    elif resume and info.main:
        log.warning("--resume: no checkpoint in %s yet; starting from the first epoch", out)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    writer = None
    if config.tensorboard and info.main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            log.warning("TensorBoard is not installed (pip install tensorboard); logging to log.csv only")
    prov = {
        **(provenance or {}),
        "m3lung_version": _version(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "device": str(device),
        "processes": info.world,
        "seed": config.seed,
    }
    use_amp = config.amp and on_cuda
    n = task.train_size()
    weights = task.train_weights() if config.balanced else None
    sign = 1.0 if config.best_mode == "max" else -1.0
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        train_model.train()
        if config.freeze_bn:
            _freeze_bn(train_model)
        rows = epoch_rows(n, epoch, config.seed, samples=config.samples_per_epoch, weights=weights)
        n_batches = len(rows) // config.batch_size
        if n_batches == 0:
            raise InputError(f"{n} training samples are fewer than one batch of {config.batch_size}")
        sums: dict[str, float] = {}
        bar = tqdm(
            batches(rows, config.batch_size, info),
            total=n_batches,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (progress and info.main and sys.stderr.isatty()),
            leave=False,
        )
        for part in bar:
            batch = task.batch(part, epoch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, figures = task.loss(train_model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            for k, v in {"loss": float(loss.detach()), **figures}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        row: dict[str, float] = {"epoch": float(epoch + 1), "lr": float(opt.param_groups[0]["lr"])}
        row.update({f"train_{k}": v / n_batches for k, v in sums.items()})
        if info.world > 1:
            t = torch.tensor([row[k] for k in sorted(row) if k.startswith("train_")], dtype=torch.float64)
            torch.distributed.all_reduce(t)
            for k, v in zip(sorted(k for k in row if k.startswith("train_")), (t / info.world).tolist(), strict=True):
                row[k] = v
        metrics: dict[str, float] = {}
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            if info.main:
                metrics = task.evaluate(eval_model, device)
            if info.world > 1:
                box = [metrics]
                torch.distributed.broadcast_object_list(box, src=0)
                metrics = box[0]
        row.update(metrics)
        if sched is not None:
            if config.schedule.name == "plateau":
                if config.best_metric in metrics:
                    sched.step(metrics[config.best_metric])
            else:
                sched.step()
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        improved = False
        if config.best_metric in metrics:
            value = metrics[config.best_metric]
            if best is None or sign * value > sign * best:
                best, improved = value, True
        elif best is None and not any(config.best_metric in h for h in history[:-1]):
            improved = True  # no validation figure: the latest model is the best we know
        if info.main:
            if improved:
                save_model(
                    best_path,
                    eval_model,
                    kind=task.kind,
                    config=model_config or {},
                    provenance={**prov, "epoch": epoch + 1, "metrics": metrics, "train": to_dict(config)},
                )
            _write_log(out / "log.csv", history)
            if writer is not None:
                for k, v in row.items():
                    writer.add_scalar(k, v, epoch + 1)
            state = {
                "format": STATE_FORMAT,
                "epoch": epoch + 1,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()} if ema is not None else None,
                "best": best,
                "history": plain(history),
                "config": plain(to_dict(config)),
            }
            last_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(last_path) as tmp:
                torch.save(state, tmp)
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
        if info.world > 1:
            torch.distributed.barrier()
    if writer is not None:
        writer.close()
    return FitResult(history=history, best=best, best_path=best_path, last_path=last_path)


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for h in history:
        keys += [k for k in h if k not in keys]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in h.items()})


def _version() -> str:
    from m3lung._version import __version__

    return __version__
