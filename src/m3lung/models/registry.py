"""Named model families (timm-style): every network of every system is built from its name and config.

A family is a ``torch.nn.Module`` class (or factory) with a frozen config dataclass. Registering it::

    @register_model("slice_net", SliceNetConfig, description="M³Lung-Sys slice network")
    def _slice_net(config: SliceNetConfig) -> SliceNet: ...

makes it buildable by name (:func:`build_model`), listable (:func:`list_models`) and loadable from a
checkpoint (:func:`model_from_checkpoint`): a checkpoint names its model family (``model``; older
files: ``kind``) and carries the config it was built with, so nothing else has to know which class
to instantiate. Models never read files; reading checkpoints lives in :mod:`m3lung.train.checkpoint`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from m3lung.errors import M3LungError

__all__ = [
    "ModelFamily",
    "WeightsError",
    "build_model",
    "check_state",
    "get_model",
    "list_models",
    "load_state_checked",
    "model_from_checkpoint",
    "register_model",
]

M = TypeVar("M", bound=Callable[..., nn.Module])


class WeightsError(M3LungError):
    """Weights that cannot be loaded into the model they are meant for."""


@dataclass(frozen=True)
class ModelFamily:
    """One registered network: its name, its config dataclass, the builder and a one-line description."""

    name: str
    config_type: type
    build: Callable[[Any], nn.Module]
    description: str = ""

    def config(self, config: Any = None, **overrides: Any) -> Any:
        """A config of this family from a dataclass, a mapping (a checkpoint's ``config``) or defaults."""
        if config is None:
            config = self.config_type()
        elif isinstance(config, Mapping):
            known = {f.name for f in dataclasses.fields(self.config_type)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise WeightsError(
                    f"model {self.name!r}: unknown config field(s) {', '.join(unknown)} (a newer m3lung's file?)"
                )
            config = self.config_type(**config)
        elif not isinstance(config, self.config_type):
            raise TypeError(f"model {self.name!r} takes a {self.config_type.__name__}, got {type(config).__name__}")
        return dataclasses.replace(config, **overrides) if overrides else config


_MODELS: dict[str, ModelFamily] = {}


def register_model(name: str, config_type: type, *, description: str = "") -> Callable[[M], M]:
    """Decorator: register ``builder(config) -> nn.Module`` under ``name`` (a name is registered once)."""

    def deco(builder: M) -> M:
        if name in _MODELS and _MODELS[name].build is not builder:
            raise ValueError(f"model {name!r} is registered already")
        _MODELS[name] = ModelFamily(name, config_type, builder, description)
        return builder

    return deco


def get_model(name: str) -> ModelFamily:
    """The registered family ``name``; an unknown name is a :class:`WeightsError` listing the known ones."""
    try:
        return _MODELS[name]
    except KeyError:
        raise WeightsError(f"no model named {name!r}; known models: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """Names of every registered model family, sorted."""
    return sorted(_MODELS)


def build_model(name: str, config: Any = None, **overrides: Any) -> nn.Module:
    """A fresh (randomly initialised) network of family ``name`` with ``config`` (dataclass, mapping or None)."""
    family = get_model(name)
    return family.build(family.config(config, **overrides))


def check_state(own: Mapping[str, Any], state_dict: Mapping[str, Any], *, source: str, target: str) -> None:
    """Raise one clear :class:`WeightsError` naming both sides when keys or shapes do not fit."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} tensor(s) of another shape (e.g. {k}: {tuple(state_dict[k].shape)} in the file, "
                f"{tuple(own[k].shape)} in the model)"
            )
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise WeightsError(f"weights from {source} do not fit {target}: " + "; ".join(parts))


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or ``model`` itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def load_state_checked(model: nn.Module, state_dict: Mapping[str, Any], *, source: str, target: str) -> None:
    """``load_state_dict`` after :func:`check_state`."""
    check_state(unwrap(model).state_dict(), state_dict, source=source, target=target)
    unwrap(model).load_state_dict(state_dict)


def checkpoint_model_name(doc: Mapping[str, Any]) -> str:
    """The model family a loaded checkpoint names (``model``, or ``kind`` in files written before it)."""
    return str(doc.get("model") or doc.get("kind"))


def model_from_checkpoint(doc: Mapping[str, Any], *, source: str, expect: str | None = None) -> nn.Module:
    """The network of a loaded checkpoint: built from the family and config it names, weights checked to fit.

    ``expect``: the family the caller needs; another one is a :class:`WeightsError` saying what the file holds.
    """
    name = checkpoint_model_name(doc)
    if expect is not None and name != expect:
        raise WeightsError(f"{source}: holds a {name!r} model, not a {expect!r} model")
    family = get_model(name)
    try:
        config = family.config(doc.get("config") or {})
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: the {name!r} config does not fit this m3lung ({exc})") from exc
    model = family.build(config)
    load_state_checked(model, doc["state_dict"], source=source, target=type(model).__name__)
    return model
