"""Shared by the benchmarks: replace (or append) one marked section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, body: list[str], heading: str) -> str:
    """Put ``body`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in BENCHMARKS.md.

    The section replaces an earlier one of the same name; a new one goes at the end of the part under
    ``## heading`` (the same benchmark on another device), or is appended with that heading.
    Returns the section's text.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = "\n".join([start, *body, end])
    old = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    title = f"\n## {heading}\n"
    if start in old and end in old:
        new = old[: old.index(start)] + text + old[old.index(end) + len(end) :]
    elif title in old:
        at = old.find("\n## ", old.index(title) + len(title))
        at = len(old) if at < 0 else at
        new = old[:at].rstrip() + "\n\n" + text + "\n" + old[at:]
    else:
        new = old.rstrip() + f"\n{title}\n" + text + "\n"
    BENCHMARKS.write_text(new)
    return text
