"""Typed training configuration and YAML recipes (one source of truth for the CLI and the API)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from m3lung.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser: SGD (paper) or Adam; ``lr`` is the initial learning rate."""

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: ``step`` (x gamma every step_size epochs, paper), ``plateau`` or ``none``."""

    name: Literal["step", "plateau", "none"] = "step"
    step_size: int = 40
    gamma: float = 0.1
    patience: int = 5


@dataclass(frozen=True)
class TrainConfig:
    """The training engine's settings (defaults: the paper's slice network, 110 epochs).

    samples_per_epoch : samples drawn per epoch (None: the training set's size).
    balanced : draw samples with probability inverse to their class frequency.
    best_metric / best_mode : the validation metric that picks ``best.pt``.
    device : "auto" (CUDA when available), "cpu" or "cuda".
    amp / channels_last : bfloat16 autocast and channels-last memory format, on CUDA only.
    freeze_bn : keep BatchNorm layers on their running statistics (small batches; multi-process
        runs on CPU, where synchronised BatchNorm does not exist). sync_bn : SyncBatchNorm on multi-GPU.
    deterministic : deterministic algorithms where the backend offers them.
    ema : 0 (off, the papers' training) or a decay in (0, 1) (choice): keep an exponential moving
        average of the weights and BatchNorm statistics, updated after every optimiser step
        (``ema = decay``; 0.999 averages about the last thousand steps). Validation, ``best.pt`` and
        the final test then use the averaged weights; ``checkpoints/last.pt`` keeps both.
    """

    epochs: int = 110
    batch_size: int = 32
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    balanced: bool = False
    samples_per_epoch: int | None = None
    best_metric: str = "val_acc"
    best_mode: Literal["max", "min"] = "max"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    channels_last: bool = True
    freeze_bn: bool = False
    sync_bn: bool = False
    deterministic: bool = True
    tensorboard: bool = False
    eval_every: int = 1
    ema: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f"train.samples_per_epoch must be at least 1 (or null), got {self.samples_per_epoch}")
        if not self.optim.lr > 0:
            raise ValueError(f"train.optim.lr must be positive, got {self.optim.lr}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"train.ema must be 0 (off) or a decay in (0, 1), got {self.ema}")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is Literal:
        if value not in args:
            raise InputError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise InputError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=True))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is Any:
        return value
    raise InputError(f"{where}: {value!r} is not a valid {getattr(tp, '__name__', tp)}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "recipe") -> T:
    """Build dataclass ``cls`` from plain data, refusing unknown keys and wrong types with the key's path."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Plain, YAML/JSON-friendly copy of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to nested plain data."""
    out = yaml.safe_load(yaml.safe_dump(data))
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_recipe_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML recipe (a file, or the name of one under the project's ``recipes/``)."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        p = recipes_dir() / f"{p.name}.yaml"
    if not p.exists():
        raise InputError(f"{path}: recipe not found (a YAML file, or one of {sorted(list_recipes())})")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p}: a recipe is a mapping of sections")
    data.setdefault("name", p.stem)
    return data


def recipes_dir() -> Path:
    """The recipes shipped with the package (``m3lung/recipes``)."""
    return Path(__file__).resolve().parents[1] / "recipes"


def list_recipes() -> list[str]:
    return [p.stem for p in recipes_dir().glob("*.yaml")]
