"""Shared by the benchmarks: replace (or append) one marked section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, body: list[str], heading: str) -> str:
    """Put ``body`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in BENCHMARKS.md.

    The section replaces an earlier one of the same name, or is appended under ``heading``.
    Returns the section's text.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = "\n".join([start, *body, end])
    old = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + text + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + f"\n\n## {heading}\n\n" + text + "\n"
    BENCHMARKS.write_text(new)
    return text
