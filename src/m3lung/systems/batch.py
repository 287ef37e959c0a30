"""Many studies through one :class:`~m3lung.systems.screening.Screener`, for every system.

Manifests (``.csv`` with a ``path`` column), one output folder per study, resume (a study whose
``report.json`` exists is skipped), ``--shard i/n``, ``failures.json`` and ``summary.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m3lung.errors import InputError, M3LungError
from m3lung.io.atomic import write_text_atomic
from m3lung.systems.screening import Report, Screener

__all__ = ["Study", "parse_shard", "screen_many", "studies_from", "summary_row"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Study:
    """One entry of a batch: where it is read from and the folder name its outputs go to."""

    path: str
    study_id: str


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "study"
    return name[:120]


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

    A study that fails (a broken file, a non-CT image...) is recorded with its error and the batch
    goes on. ``out/summary.csv`` gets one line per study of this run. Returns counts and failures.
    """
    from tqdm import tqdm

    i, n = shard
    mine = [s for k, s in enumerate(studies) if k % n == i - 1]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    done, skipped, failed = [], [], []
    for study in tqdm(mine, desc="screening", unit="study", disable=None if progress else True):
        target = root / study.study_id
        if (target / "report.json").exists() and not overwrite:
            skipped.append(study.study_id)
            continue
        t0 = time.perf_counter()
        try:
            report = screener.screen(study.path, **(read_options or {}))
            report.data["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
            report.write(target, overwrite=True)
        except M3LungError as exc:
            log.error("%s: %s", study.path, exc)
            failed.append({"study_id": study.study_id, "path": study.path, "error": str(exc)})
            continue
        done.append(summary_row(study, report))
    _append_summary(root / "summary.csv", done)
    if failed:
        old = json.loads((root / "failures.json").read_text()) if (root / "failures.json").exists() else []
        keep = [f for f in old if f["study_id"] not in {x["study_id"] for x in failed}]
        write_text_atomic(root / "failures.json", json.dumps(keep + failed, indent=1))
    return {"screened": done, "skipped": skipped, "failed": failed, "shard": f"{i}/{n}", "in_shard": len(mine)}


def summary_row(study: Study, report: Report) -> dict[str, str]:
    """One ``summary.csv`` line: the study, the decision, each class's probability, the system's numeric
    extras (e.g. ``infected_share``), slices and seconds."""
    extras = {k: f"{v:.4f}" for k, v in report.data.items() if _is_extra_number(k, v)}
    return {
        "study_id": study.study_id,
        "path": study.path,
        "label": report.label,
        **{f"p_{k}": f"{v:.4f}" for k, v in report.probs.items()},
        **extras,
        "n_slices": str(report.volume.n_slices),
        "seconds": f"{report.data['timings_s']['total']:.2f}",
        "system": str(report.data["system"]["name"]),
    }


def _is_extra_number(key: str, value: Any) -> bool:
    from m3lung.report.study import _RESERVED

    return key not in _RESERVED and isinstance(value, int | float) and not isinstance(value, bool)


def _append_summary(path: Path, rows: list[dict[str, str]]) -> None:
    if not rows:
        return
    fields = list(rows[0])
    old: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="") as fh:
            old = [r for r in csv.DictReader(fh) if r.get("study_id") not in {x["study_id"] for x in rows}]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(old + rows)
    write_text_atomic(path, buf.getvalue())
