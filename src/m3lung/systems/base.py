"""The shape every system plugs into: a :class:`System`, its training :class:`Stage` s, one :class:`StudyResult`.

A system (M³Lung-Sys, and each related published system) is one subclass of :class:`System`,
registered by name with :func:`register_system`:

* ``name``, ``title``, ``classes`` (four, three or two class names, index order), ``description``;
* ``Options``: a dataclass of its inference options (field ``metadata={"help": ...}`` becomes the
  help of the ``m3lung screen`` flag of the same name; ``metadata={"cli": False}`` keeps it off the CLI);
* ``stages``: its training stages (:class:`Stage`: recipe dataclass, ``train``, ``evaluate``, summary);
* ``load(weights, options, device)`` → a ready instance; ``predict(volume)`` → :class:`StudyResult`;
* optionally ``default_weights()`` (weights shipped with the package, used when none are given).

Everything else — reading studies, batches, resume, shards, the report (JSON, HTML, NIfTI), the
command line — is written once for all systems (:mod:`m3lung.systems.screening`,
:mod:`m3lung.systems.batch`, :mod:`m3lung.report`, :mod:`m3lung.cli`). ``docs/architecture.md``
shows how to add a system.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from m3lung.errors import InputError
from m3lung.io import CTVolume
from m3lung.report.result import RuleResult, SliceViews, StudyResult

__all__ = [
    "RuleResult",
    "SliceViews",
    "Stage",
    "StageOption",
    "StudyResult",
    "System",
    "get_system",
    "list_systems",
    "load_recipe",
    "make_options",
    "register_system",
]


# ------------------------------------------------------------------------------------------ stages
@dataclass(frozen=True)
class StageOption:
    """An extra command-line flag of a stage's ``train`` or ``evaluate``.

    ``recipe_key`` set: the flag's value becomes the recipe override ``recipe_key=value`` (train only).
    Otherwise it is passed to the stage's function as the keyword ``dest``. ``kind``: "str", "int",
    "bool" (``--x/--no-x``, default None) or "flag" (store_true).
    """

    flag: str
    help: str
    commands: tuple[str, ...] = ("train",)
    recipe_key: str | None = None
    kind: str = "str"

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    """One training stage of a system (``m3lung train SYSTEM STAGE``).

    recipe_type : the recipe dataclass (YAML under ``recipes/`` or a path; ``--set key=value`` overrides), or
        its import path ``"module:Name"`` (resolved when first needed, so that listing systems stays cheap).
    recipe_prefix : shipped recipes of this stage are ``recipes/<prefix>_*.yaml``.
    train : ``train(recipe, data, out, *, resume, progress, **options) -> results`` (a JSON-able dict).
    evaluate : ``evaluate(run, *, data, progress, **options) -> results`` re-tests a finished run, or None.
    summarise : results → a few lines for the terminal.
    data_help / data_aliases : what ``--data`` is for this stage, other spellings of the flag.
    """

    name: str
    help: str
    recipe_type: type | str
    train: Callable[..., dict[str, Any]]
    summarise: Callable[[dict[str, Any]], str]
    evaluate: Callable[..., dict[str, Any]] | None = None
    recipe_prefix: str = ""
    data_help: str = "training data folder"
    data_aliases: tuple[str, ...] = ()
    options: tuple[StageOption, ...] = ()

    def recipes(self) -> list[str]:
        """Names of the shipped recipes of this stage."""
        from m3lung.train.config import list_recipes

        prefix = f"{self.recipe_prefix or self.name}_"
        return sorted(r for r in list_recipes() if r.startswith(prefix))

    def load_recipe(self, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Any:
        """The recipe ``path`` (a YAML file or a shipped recipe's name) with ``key=value`` overrides applied."""
        return load_recipe(self.recipe_class(), path, overrides)

    def recipe_class(self) -> type:
        """The recipe dataclass (imported now when given as ``"module:Name"``)."""
        if isinstance(self.recipe_type, type):
            return self.recipe_type
        import importlib

        module, _, name = self.recipe_type.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type)
        return cls


T = TypeVar("T")


def load_recipe(recipe_type: type[T], path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> T:
    """Read a recipe YAML (or the name of a shipped one) as ``recipe_type`` and apply ``key=value`` overrides."""
    from m3lung.train.config import apply_overrides, from_dict, load_recipe_data

    data = apply_overrides(load_recipe_data(path), list(overrides))
    return from_dict(recipe_type, data, where=str(path))


# ------------------------------------------------------------------------------------------ systems
class System:
    """Base class of a complete system. Subclass it, fill the class attributes, register it.

    An instance is a system loaded with its weights, ready to :meth:`predict` any number of studies.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    classes: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = object
    stages: ClassVar[tuple[Stage, ...]] = ()
    #: what the command line says of the shipped weights when it uses them
    default_weights_note: ClassVar[str] = ""

    options: Any
    device: Any

    @classmethod
    def default_weights(cls) -> Path | None:
        """Weights shipped with the package for this system, or None (then ``--weights`` is required)."""
        return None

    @classmethod
    def load(cls, weights: str | os.PathLike[str], options: Any, device: str = "auto") -> System:
        """The system with ``weights`` loaded on ``device`` ("auto", "cpu" or "cuda"), ready to predict."""
        raise NotImplementedError

    def predict(self, volume: CTVolume) -> StudyResult:
        """Screen one study."""
        raise NotImplementedError

    @classmethod
    def stage(cls, name: str) -> Stage:
        """The training stage ``name``; an unknown one is an :class:`InputError` listing the stages."""
        for s in cls.stages:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in cls.stages) or "none"
        raise InputError(f"system {cls.name!r} has no training stage {name!r} (stages: {known})")


S = TypeVar("S", bound=type[System])
_SYSTEMS: dict[str, type[System]] = {}
#: words the command line uses itself; no system may be named so
_RESERVED = {"slice", "patient", "systems"}


def register_system(cls: S) -> S:
    """Class decorator: register a :class:`System` subclass under its ``name``."""
    if not cls.name or cls.name in _RESERVED:
        raise ValueError(f"a system needs a name other than {sorted(_RESERVED)}, got {cls.name!r}")
    if not cls.classes or not dataclasses.is_dataclass(cls.Options):
        raise ValueError(f"system {cls.name!r} needs its classes and an Options dataclass")
    if cls.name in _SYSTEMS and _SYSTEMS[cls.name] is not cls:
        raise ValueError(f"system {cls.name!r} is registered already")
    _SYSTEMS[cls.name] = cls
    return cls


def unregister_system(name: str) -> None:
    """Remove a registered system (for tests that register their own)."""
    _SYSTEMS.pop(name, None)


def get_system(name: str) -> type[System]:
    """The registered system ``name``; an unknown one is an :class:`InputError` listing the known ones."""
    try:
        return _SYSTEMS[name]
    except KeyError:
        raise InputError(f"no system named {name!r}; known systems: {', '.join(list_systems())}") from None


def list_systems() -> list[str]:
    """Names of every registered system, the package's own first (M³Lung-Sys first of all)."""
    return list(_SYSTEMS)


def make_options(system: type[System], options: Any = None, **values: Any) -> Any:
    """``system.Options`` from an instance, or from keyword values (None values mean "the default").

    An unknown keyword is an :class:`InputError` naming the system's options.
    """
    if options is not None:
        if values:
            raise InputError("give either options or keyword options, not both")
        if not isinstance(options, system.Options):
            raise InputError(f"options for {system.name!r} must be a {system.Options.__name__}")
        return options
    names = {f.name for f in dataclasses.fields(system.Options)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(
            f"system {system.name!r} has no option {', '.join(unknown)} (its options: {', '.join(sorted(names))})"
        )
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return system.Options(**given)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{system.name}: {exc}") from exc


def check_options(name: str, checks: Mapping[str, tuple[bool, str]]) -> None:
    """Raise one :class:`InputError` for the first failing ``{option: (ok, requirement)}`` check."""
    for option, (ok, requirement) in checks.items():
        if not ok:
            raise InputError(f"--{option.replace('_', '-')} {requirement} ({name})")
