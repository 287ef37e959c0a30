"""Commands generated from the system registry: ``systems``, ``screen``, ``train SYSTEM STAGE``, ``evaluate``.

* ``m3lung screen --system NAME``: the inference flags are the fields of every registered system's
  ``Options`` (``batch_size`` → ``--batch-size``; booleans as ``--x/--no-x``), grouped per system; a
  flag of another system than the chosen one is refused with a one-line error.
* ``m3lung train SYSTEM STAGE --recipe R --data D --out O``: one sub-command per registered stage;
  ``m3lung train slice`` / ``train patient`` are M³Lung-Sys's stages (the commands they always were).
* ``m3lung evaluate SYSTEM STAGE RUN`` (``evaluate slice|patient RUN`` for M³Lung-Sys) re-tests a run;
  ``m3lung evaluate PRED.csv`` / a screen folder computes figures with bootstrap intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from m3lung.cli.common import add_device, add_quiet, add_read_options, read_options
from m3lung.errors import InputError
from m3lung.systems.base import Stage, StageOption, System, get_system, list_systems, make_options

__all__ = ["ALIASES", "add_system_commands"]

#: ``m3lung train slice`` and ``train patient``: M³Lung-Sys's stages, as they always were
ALIASES = {"slice": ("m3lung", "slice"), "patient": ("m3lung", "patient")}


# ------------------------------------------------------------------------------------------ options → flags
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_type(field: dataclasses.Field[Any]) -> str:
    """ "bool", "int", "float" or "str" from a field's annotation (a string under postponed annotations)."""
    text = str(field.type).replace("typing.", "").replace("Optional[", "").replace("]", "")
    base = [t.strip() for t in text.split("|") if t.strip() not in ("None", "NoneType")]
    kind = base[0] if base else "str"
    return kind if kind in ("bool", "int", "float") else "str"


def _add_option_flags(p: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every system's Options fields as flags (default None: the system's own default); returns system → dests."""
    seen: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    for name in list_systems():
        system = get_system(name)
        group = p.add_argument_group(f"options of {system.title} (--system {name})")
        owners[name] = []
        for f in dataclasses.fields(system.Options):
            if f.metadata.get("cli", True) is False:
                continue
            owners[name].append(f.name)
            kind = _option_type(f)
            if f.name in seen:
                if seen[f.name] != kind:
                    raise ValueError(f"option {f.name!r} of {name!r} has another type than another system's")
                continue
            seen[f.name] = kind
            default = f.default if f.default is not dataclasses.MISSING else None
            text = str(f.metadata.get("help", f.name.replace("_", " "))) + (
                f" (default: {default})" if default is not None else ""
            )
            if kind == "bool":
                group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=text)
            else:
                group.add_argument(_flag(f.name), type={"int": int, "float": float}.get(kind, str), help=text)
    return owners


def _given_options(args: argparse.Namespace, system: type[System], owners: dict[str, list[str]]) -> dict[str, Any]:
    """The Options values given on the command line for ``system``; another system's flag is an error."""
    mine = set(owners[system.name])
    given = {d: getattr(args, d) for ds in owners.values() for d in ds if getattr(args, d, None) is not None}
    foreign = sorted(d for d in given if d not in mine)
    if foreign:
        flags = ", ".join(_flag(d) for d in foreign)
        raise InputError(f"{flags}: not an option of {system.title} (--system {system.name}); see m3lung screen -h")
    return {d: v for d, v in given.items() if d in mine}


# ------------------------------------------------------------------------------------------ systems
def cmd_systems(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for name in list_systems():
        s = get_system(name)
        rows.append(
            {
                "name": name,
                "title": s.title,
                "description": s.description,
                "classes": list(s.classes),
                "options": [f.name for f in dataclasses.fields(s.Options)],
                "stages": [{"name": st.name, "help": st.help, "recipes": st.recipes()} for st in s.stages],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']}: {r['title']} — {r['description']}")
        print(f"  classes: {', '.join(r['classes'])}")
        for st in r["stages"]:
            print(f"  train {r['name']} {st['name']}: {st['help']}; recipes: {', '.join(st['recipes']) or '-'}")
        print(f"  screen options: {', '.join(_flag(o) for o in r['options'])}")
    return 0


# ------------------------------------------------------------------------------------------ screen
def cmd_screen(args: argparse.Namespace) -> int:
    from m3lung.io.atomic import require_output_folder
    from m3lung.systems.batch import parse_shard, screen_many, studies_from
    from m3lung.systems.screening import Screener

    require_output_folder(args.out)
    system = get_system(args.system)
    options = make_options(system, **_given_options(args, system, args.option_owners))  # checked up front
    shard = parse_shard(args.shard)
    studies = studies_from(args.paths)
    weights = args.weights
    if weights is None:
        weights = system.default_weights()
        if weights is None:
            raise InputError(f"{system.title} ships no weights: pass --weights FILE")
        note = f", {system.default_weights_note}" if system.default_weights_note else ""
        print(
            f"m3lung: note: no --weights given; using the weights shipped with m3lung ({weights}){note}",
            file=sys.stderr,
        )
    screener = Screener(weights, system=system, options=options, device=args.device, quality_gate=args.quality_gate)
    result = screen_many(
        screener,
        studies,
        args.out,
        shard=shard,
        overwrite=args.overwrite,
        progress=not args.quiet,
        read_options=read_options(args),
    )
    fixed = {"study_id", "path", "label", "n_slices", "seconds", "system"}
    for row in result["screened"]:
        extras = "".join(
            f", {k.replace('_', ' ')} {float(v):.1%}" if k.endswith("_share") else f", {k.replace('_', ' ')} {v}"
            for k, v in row.items()
            if k not in fixed and not k.startswith("p_")
        )
        print(
            f"{row['study_id']}: {row['label']} (p {row['p_' + row['label']]}){extras}, "
            f"{row['n_slices']} slices in {row['seconds']} s"
        )
    for row in result["not_assessable"]:
        print(f"{row['study_id']}: not assessable, no class given: {row['why']}")
    if result["claimed_elsewhere"]:
        print(f"{len(result['claimed_elsewhere'])} study(ies) being screened by another run on {args.out}, left to it")
    if result["skipped"]:
        print(f"{len(result['skipped'])} study(ies) already screened in {args.out}, skipped (--overwrite redoes them)")
    for f in result["failed"]:
        print(f"m3lung: error: {f['study_id']}: {f['error']}", file=sys.stderr)
    print(f"outputs: {args.out}/<study>/report.json, report.html, lesion_map.nii.gz; summary.csv")
    return 2 if result["failed"] else 3 if result["not_assessable"] else 0


def _add_screen(sub: Any) -> None:
    p = sub.add_parser("screen", help="screen CT studies: report.json, report.html and lesion_map.nii.gz each")
    p.add_argument("paths", nargs="+", metavar="PATH", help="studies (DICOM folder, NIfTI, ...) or CSV manifests")
    p.add_argument("--out", required=True, help="output folder: one sub-folder per study, summary.csv")
    p.add_argument("--system", default="m3lung", choices=list_systems(), help="which system screens (default m3lung)")
    p.add_argument("--weights", help="the system's weights (default: the weights shipped for it, if any)")
    add_device(p)
    p.add_argument("--shard", help="i/n: screen only the i-th of n interleaved parts of the list (1-based)")
    p.add_argument("--overwrite", action="store_true", help="screen again studies that already have a report")
    p.add_argument(
        "--quality-gate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refuse studies that are clearly not a chest CT in HU (not assessable: no class, exit status 3); "
        "--no-quality-gate screens everything (research only)",
    )
    add_quiet(p)
    add_read_options(p)
    p.set_defaults(func=cmd_screen, option_owners=_add_option_flags(p))


# ------------------------------------------------------------------------------------------ train
def _stage_kwargs(args: argparse.Namespace, stage: Stage, command: str) -> dict[str, Any]:
    return {
        o.dest: getattr(args, o.dest)
        for o in stage.options
        if command in o.commands and o.recipe_key is None and getattr(args, o.dest, None) is not None
    }


def cmd_train(args: argparse.Namespace) -> int:
    stage = get_system(args.system_name).stage(args.stage_name)
    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"train.device={args.device}")
    for o in stage.options:
        if o.recipe_key and "train" in o.commands and getattr(args, o.dest, None) is not None:
            overrides.append(f"{o.recipe_key}={getattr(args, o.dest)}")
    recipe = stage.load_recipe(args.recipe, overrides)
    results = stage.train(
        recipe, args.data, args.out, resume=args.resume, progress=not args.quiet, **_stage_kwargs(args, stage, "train")
    )
    if results:  # ranks other than the first of a distributed run return nothing
        print(stage.summarise(results))
    return 0


def _add_stage_option(p: argparse.ArgumentParser | Any, o: StageOption) -> None:
    if o.kind == "bool":
        p.add_argument(o.flag, dest=o.dest, action=argparse.BooleanOptionalAction, default=None, help=o.help)
    elif o.kind == "flag":
        p.add_argument(o.flag, dest=o.dest, action="store_true", default=None, help=o.help)
    else:
        p.add_argument(o.flag, dest=o.dest, type=int if o.kind == "int" else str, help=o.help)


def _add_stage_parser(tsub: Any, name: str, system: type[System], stage: Stage) -> None:
    recipes = ", ".join(stage.recipes()) or "none shipped"
    t = tsub.add_parser(name, help=f"{stage.help} ({system.title})")
    t.add_argument("--recipe", required=True, help=f"recipe YAML, or a shipped one: {recipes}")
    t.add_argument("--data", *stage.data_aliases, dest="data", required=True, help=stage.data_help)
    t.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, best.pt, results.json")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    add_device(t, default=None, help="overrides the recipe's train.device")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. train.epochs=3")
    add_quiet(t)
    for o in stage.options:
        if "train" in o.commands:
            _add_stage_option(t, o)
    t.set_defaults(func=cmd_train, system_name=system.name, stage_name=stage.name)


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a system's network from a recipe: train SYSTEM STAGE (m3lung systems)")
    tsub = p.add_subparsers(dest="system_or_stage", required=True, metavar="SYSTEM")
    for alias, (system_name, stage_name) in ALIASES.items():
        system = get_system(system_name)
        _add_stage_parser(tsub, alias, system, system.stage(stage_name))
    for name in list_systems():
        system = get_system(name)
        s = tsub.add_parser(name, help=f"{system.title}: {system.description}")
        ssub = s.add_subparsers(dest="stage", required=True, metavar="STAGE")
        for stage in system.stages:
            _add_stage_parser(ssub, stage.name, system, stage)


# ------------------------------------------------------------------------------------------ evaluate
def _evaluate_run(args: argparse.Namespace, system: type[System], stage: Stage, run: str) -> int:
    if stage.evaluate is None:
        raise InputError(f"{system.title}'s stage {stage.name!r} has no evaluation")
    takes = {o.dest for o in stage.options if "evaluate" in o.commands}
    foreign = [o for o in args.stage_options if o not in takes and getattr(args, o, None) is not None]
    if foreign:
        raise InputError(f"m3lung evaluate {system.name} {stage.name} does not take {_flag(foreign[0])}")
    kwargs = {o: getattr(args, o) for o in takes if getattr(args, o, None) is not None}
    print(stage.summarise(stage.evaluate(run, data=args.data, progress=not args.quiet, **kwargs)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    first = args.inputs[0]
    if first in ALIASES:
        if len(args.inputs) != 2:
            raise InputError(f"m3lung evaluate {first} takes one run folder: m3lung evaluate {first} RUN")
        system = get_system(ALIASES[first][0])
        return _evaluate_run(args, system, system.stage(ALIASES[first][1]), args.inputs[1])
    if first in list_systems():
        if len(args.inputs) != 3:
            raise InputError(
                f"m3lung evaluate {first} takes a stage and a run folder: m3lung evaluate {first} STAGE RUN"
            )
        system = get_system(first)
        return _evaluate_run(args, system, system.stage(args.inputs[1]), args.inputs[2])
    from m3lung.evaluate.summary import evaluate_files

    if len(args.inputs) != 1:
        raise InputError("m3lung evaluate takes one predictions file or screen folder (use --compare for another)")
    result = evaluate_files(
        first,
        compare=args.compare,
        labels=args.labels,
        classes=args.classes,
        n_resamples=args.bootstrap,
        seed=args.seed,
        out=args.out,
    )
    print(json.dumps(result["json"], indent=1, allow_nan=False) if args.json else result["markdown"])
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="figures with bootstrap CIs from predictions; or re-test a training run "
        "(evaluate SYSTEM STAGE RUN; evaluate slice|patient RUN)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="PRED.csv (patient_id,label,pred[,p_<class>...]), an `m3lung screen` folder (with --labels), "
        "or `SYSTEM STAGE RUN` (`slice RUN` / `patient RUN`) to re-test a training run on its held-out data",
    )
    p.add_argument("--compare", help="a second system's predictions (same patients): paired-bootstrap p-values")
    p.add_argument("--labels", help="labels CSV (study_id,label) for `m3lung screen` folders")
    p.add_argument("--classes", help="class names in index order (default Healthy,COVID-19,H1N1,CAP)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over patients (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of Markdown tables")
    p.add_argument("--out", help="folder for figures (ROC, confusion matrix, calibration; PNG and SVG) and JSON")
    aliases: list[str] = []
    options: dict[str, StageOption] = {}
    for name in list_systems():
        for stage in get_system(name).stages:
            aliases += [a for a in stage.data_aliases if a not in aliases]
            for o in stage.options:
                if "evaluate" in o.commands:
                    options.setdefault(o.flag, o)
    p.add_argument("--data", *aliases, dest="data", help="re-testing a run: the data (or feature cache) it trained on")
    group = p.add_argument_group("re-testing a run (evaluate SYSTEM STAGE RUN): the stages' own options")
    for o in options.values():
        _add_stage_option(group, o)
    add_quiet(p)
    p.set_defaults(func=cmd_evaluate, stage_options=[o.dest for o in options.values()])


def add_system_commands(sub: Any) -> None:
    """``systems``, ``train``, ``screen`` and ``evaluate``, from the registry as it stands now."""
    p = sub.add_parser("systems", help="list every system: its classes, training stages, recipes and options")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_systems)
    _add_train(sub)
    _add_screen(sub)
    _add_evaluate(sub)
