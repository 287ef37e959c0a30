"""Many studies through one :class:`~m3lung.systems.screening.Screener`, for every system.

Manifests (``.csv`` with a ``path`` column), one output folder per study, resume (a study whose
``report.json`` exists is skipped), ``--shard i/n``, ``failures.json`` and ``summary.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m3lung.errors import InputError, M3LungError
from m3lung.io.atomic import require_output_folder, write_text_atomic
from m3lung.report.study import REPORT_FIELDS
from m3lung.systems.screening import Screener

__all__ = ["Study", "parse_shard", "screen_many", "studies_from", "summary_row", "write_summary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Study:
    """One entry of a batch: where it is read from and the folder name its outputs go to."""

    path: str
    study_id: str


#: what a batch writes into its output folder itself: no study folder may take these names
BATCH_FILES = ("summary.csv", "failures.json")


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:120] or "study"
    return f"{name}_study" if name in BATCH_FILES else name


def studies_from(paths: Sequence[str | os.PathLike[str]]) -> list[Study]:
    """Studies from paths; a ``.csv`` path is a manifest with a ``path`` column (and optionally ``study_id``).

    Relative paths in a manifest are relative to the manifest's folder. Output folder names are
    the study ids (default: the path's name without suffix), made unique with ``-2``, ``-3``...
    """
    out: list[Study] = []
    for p in paths:
        path = Path(p)
        if path.suffix.lower() == ".csv" and path.is_file():
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise InputError(f"{path}: a manifest needs a 'path' column (and optionally 'study_id')")
                for row in reader:
                    target = Path(row["path"].strip())
                    if not target.is_absolute():
                        target = path.parent / target
                    sid = (row.get("study_id") or "").strip() or _stem(target)
                    out.append(Study(str(target), _safe_name(sid)))
        else:
            out.append(Study(str(path), _safe_name(_stem(path))))
    # a name shared by several studies (DICOM folders all called "ct", say) gets its parent's name
    counts: dict[str, int] = {}
    for s in out:
        counts[s.study_id] = counts.get(s.study_id, 0) + 1
    out = [
        Study(s.path, _safe_name(f"{Path(s.path).parent.name}_{s.study_id}")) if counts[s.study_id] > 1 else s
        for s in out
    ]
    seen: dict[str, int] = {}
    unique = []
    for s in out:
        k = seen.get(s.study_id, 0) + 1
        seen[s.study_id] = k
        unique.append(s if k == 1 else Study(s.path, f"{s.study_id}-{k}"))
    return unique


def _stem(path: Path) -> str:
    """The file or folder name without its format suffix (``.nii.gz`` as one)."""
    from m3lung.io.formats import suffix_of

    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix else path.name


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (1 ≤ i ≤ n) → (i, n); ``None`` → (1, 1)."""
    if text is None:
        return 1, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise InputError(f"--shard must be i/n with 1 <= i <= n (e.g. 1/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def screen_many(
    screener: Screener,
    studies: Sequence[Study],
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] = (1, 1),
    overwrite: bool = False,
    progress: bool = True,
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Screen every study of this shard into ``out/<study_id>/``; skip studies whose report exists.

    A study that fails — for any reason, a broken file or an error inside a system — is recorded in
    ``failures.json`` with its error, and the batch goes on. Each study is *claimed* first
    (``out/.claims/<study_id>``), so that several runs on one ``out`` (shards, or the same command
    twice) never screen a study twice; a claim whose process is gone (a run killed with ``kill -9``)
    is taken over, and that run's half-written folders are removed. At the end ``out/summary.csv`` is
    rebuilt from every study folder in ``out``. Returns what this run screened, skipped and failed.
    """
    from tqdm import tqdm

    i, n = shard
    mine = [s for k, s in enumerate(studies) if k % n == i - 1]
    root = require_output_folder(out)
    root.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, str]] = []
    refused: list[dict[str, str]] = []
    skipped: list[str] = []
    claimed: list[str] = []
    failed: list[dict[str, str]] = []
    for study in tqdm(mine, desc="screening", unit="study", disable=None if progress else True):
        target = root / study.study_id
        if (target / "report.json").exists() and not overwrite:
            skipped.append(study.study_id)
            continue
        claim = _claim(root, study.study_id)
        if claim is None:
            claimed.append(study.study_id)
            continue
        try:
            _remove_leftovers(root, study.study_id)
            try:
                report = screener.screen(study.path, **(read_options or {}))
                report.write(target, overwrite=True)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # one study never ends the batch
                log.info("%s: %s", study.path, exc)
                failed.append({"study_id": study.study_id, "path": study.path, "error": _message(exc)})
                continue
            row = summary_row(study.study_id, report.data)
            if report.assessable:
                done.append(row)
            else:
                refused.append({**row, "why": "; ".join(report.data["quality"]["reasons"])})
        finally:
            claim.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # gone when no run holds a claim any more
        (root / ".claims").rmdir()
    write_summary(root)
    _update_failures(root, failed, done={d["study_id"] for d in done + refused})
    return {
        "screened": done,
        "not_assessable": refused,
        "skipped": skipped,
        "claimed_elsewhere": claimed,
        "failed": failed,
        "shard": f"{i}/{n}",
        "in_shard": len(mine),
    }


def _message(exc: BaseException) -> str:
    """One line for ``failures.json``: an m3lung error's own message, anything else with its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, M3LungError):
        return text
    if isinstance(exc, MemoryError):
        return "out of memory while screening this study (MemoryError); try --chunk / --batch-size smaller"
    return f"{type(exc).__name__}: {text or 'no message'} (an unexpected error; please report it)"


# ------------------------------------------------------------------------------------------ claims
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(root: Path, study_id: str) -> Path | None:
    """``root/.claims/<study_id>`` made by this process (exclusive create), or None when a live run holds it.

    A claim of this host whose process is gone is stale and taken over; one of another host is respected.
    """
    folder = root / ".claims"
    path = folder / study_id
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(3):
        folder.mkdir(exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileNotFoundError:  # another run removed the empty claims folder just now
            continue
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
            except (OSError, ValueError):
                host, pid = socket.gethostname(), "0"  # unreadable or half-written: treat as stale
            if host != socket.gethostname() or (int(pid) != os.getpid() and _alive(int(pid))):
                return None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        return path
    return None


def _remove_leftovers(root: Path, study_id: str) -> None:
    """Half-written folders of ``study_id`` left by a run that was killed (we hold its claim now)."""
    for p in (*root.glob(f".{study_id}.*.part"), *root.glob(f".{study_id}.old-*")):
        shutil.rmtree(p, ignore_errors=True)


# ------------------------------------------------------------------------------------------ summary
def summary_row(study_id: str, data: dict[str, Any]) -> dict[str, str]:
    """One ``summary.csv`` line from a ``report.json``: the study, the decision, each class's probability,
    the system's numeric extras (e.g. ``infected_share``), slices, seconds and the system."""
    patient = data["patient"]
    shown = patient.get("probs") or [None] * len(patient["classes"])  # none when not assessable
    return {
        "study_id": study_id,
        "path": str(data["study"].get("source")),
        "label": "not assessable" if patient["label"] is None else str(patient["label"]),
        **{f"p_{k}": "" if v is None else f"{float(v):.4f}" for k, v in zip(patient["classes"], shown, strict=True)},
        **{k: f"{v:.4f}" for k, v in data.items() if _is_extra_number(k, v)},
        "n_slices": str(data["study"]["n_slices"]),
        "seconds": f"{float(data['timings_s'].get('total', float('nan'))):.2f}",
        "system": str((data.get("system") or {}).get("name", "m3lung")),
    }


def write_summary(root: Path) -> Path | None:
    """Rebuild ``root/summary.csv`` from every study folder's ``report.json`` (atomically); None when there is none.

    Columns follow the first study's; a study of another system with other classes adds its columns.
    """
    rows = []
    for rep in sorted(root.glob("*/report.json")):
        try:
            rows.append(summary_row(rep.parent.name, json.loads(rep.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable report left out of summary.csv (%s)", rep, exc)
    if not rows:
        return None
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(root / "summary.csv", buf.getvalue())
    return root / "summary.csv"


def _update_failures(root: Path, failed: list[dict[str, str]], *, done: set[str]) -> None:
    """``failures.json``: earlier failures not redone in this run, then this run's; gone when none is left."""
    path = root / "failures.json"
    try:
        old = json.loads(path.read_text()) if path.exists() else []
    except ValueError:
        old = []
    now = {f["study_id"] for f in failed} | done
    keep = [f for f in old if isinstance(f, dict) and f.get("study_id") not in now]
    if keep or failed:
        write_text_atomic(path, json.dumps(keep + failed, indent=1))
    elif path.exists():
        path.unlink()


def _is_extra_number(key: str, value: Any) -> bool:
    return key not in REPORT_FIELDS and isinstance(value, int | float) and not isinstance(value, bool)
