"""Inline SVG charts of the screening report (no script, no external resource), and the text helpers they share.

* :func:`bar_chart`: one group per patient-level rule, one bar per class;
* :func:`slice_strip`: every slice's predicted class along the volume, P(lesion) as a line.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["CLASS_COLOURS", "RULE_NOTES", "RULE_TITLES", "bar_chart", "esc", "num", "rule_title", "slice_strip"]

#: Bar and strip colours per class (Healthy, COVID-19, H1N1, CAP).
CLASS_COLOURS = ("#4c9a2a", "#c62828", "#ef6c00", "#1565c0")
#: Titles and notes of M³Lung-Sys's rules: a schema-2 report carries its rules' own (``patient.<rule>.title``),
#: a schema-1 report none, so these name them there.
RULE_TITLES = {
    "network": "Patient network",
    "nonparametric": "Non-parametric assessment",
    "maxpool": "Max pooling",
}
RULE_NOTES = {
    "network": "the patient-level network's softmax probabilities",
    "nonparametric": "share of slices voting for each class; Healthy only when the Healthy share exceeds T",
    "maxpool": "normalised [1 − highest disease score, highest slice probability of each disease]",
}


def esc(value: Any) -> str:
    """Any value as escaped HTML text ("—" for None)."""
    return "—" if value is None else html.escape(str(value), quote=True)


def num(value: Any, nd: int = 2) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.{nd}f}" if np.isfinite(v) else "—"


def rule_title(key: str, doc: dict[str, Any]) -> str:
    """A rule's title: the report's own (schema 2), else the M³Lung-Sys names of schema 1."""
    return str(doc.get("title") or RULE_TITLES.get(key, key))


def bar_chart(rules: Sequence[tuple[str, dict[str, Any], list[float]]], classes: Sequence[str]) -> str:
    """Grouped bar chart: one group per rule, one bar per class, y from 0 to 1 (inline SVG, no script)."""
    k = len(classes)
    bar, gap, group_gap = 34, 6, 46
    left, top, plot_h, bottom = 46, 16, 180, 58
    group_w = k * bar + (k - 1) * gap
    width = left + len(rules) * group_w + (len(rules) - 1) * group_gap + 20
    height = top + plot_h + bottom + 24
    parts = [
        f'<svg role="img" aria-label="Patient-level class probabilities" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1.0 - tick)
        parts.append(
            f'<line x1="{left - 4}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    for g, (key, doc, probs) in enumerate(rules):
        x0 = left + g * (group_w + group_gap)
        for c, (name, p) in enumerate(zip(classes, probs, strict=False)):
            pv = min(max(p, 0.0), 1.0)
            h = plot_h * pv
            x = x0 + c * (bar + gap)
            colour = CLASS_COLOURS[c % len(CLASS_COLOURS)]
            parts.append(
                f'<rect x="{x}" y="{top + plot_h - h:.1f}" width="{bar}" height="{h:.1f}" fill="{colour}">'
                f"<title>{esc(rule_title(key, doc))}: {esc(name)} {p:.3f}</title></rect>"
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle">{p:.2f}</text>'
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 13}" text-anchor="middle" font-size="9">'
                f"{esc(name)}</text>"
            )
        cx = x0 + group_w / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 32}" text-anchor="middle" font-weight="bold">'
            f"{esc(rule_title(key, doc))}</text>"
            f'<text x="{cx:.1f}" y="{top + plot_h + 47}" text-anchor="middle">→ {esc(doc.get("label"))}</text>'
        )
    parts.append(
        f'<line x1="{left - 4}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#333"/></svg>'
    )
    return "".join(parts)


def slice_strip(
    predicted: Sequence[str], p_lesion: Sequence[float] | None, shown: np.ndarray, classes: Sequence[str]
) -> str:
    """Every slice's predicted class as a coloured strip, P(lesion) as a line, shown slices ticked."""
    n = len(predicted)
    if n == 0:
        return ""
    width, left, strip_h, line_h = 900, 40, 18, 60
    step = (width - left - 10) / n
    index = {name: i for i, name in enumerate(classes)}
    height = strip_h + line_h + 36
    parts = [
        f'<svg role="img" aria-label="Predicted class and P(lesion) along the volume" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">'
        f'<text x="{left - 4}" y="{strip_h - 5}" text-anchor="end">class</text>'
    ]
    for i, name in enumerate(predicted):
        c = index.get(str(name))
        colour = CLASS_COLOURS[c] if c is not None and c < len(CLASS_COLOURS) else "#999"
        parts.append(
            f'<rect x="{left + i * step:.2f}" y="0" width="{max(step, 0.5):.2f}" height="{strip_h}" '
            f'fill="{colour}"><title>slice {i + 1}: {esc(name)}</title></rect>'
        )
    y0 = strip_h + 6
    if p_lesion is not None and len(p_lesion) == n:
        pl = np.clip(np.asarray(p_lesion, dtype=np.float64), 0.0, 1.0)
        xs = left + (np.arange(n) + 0.5) * step
        ys = y0 + line_h * (1.0 - pl)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{width - left - 10}" height="{line_h}" fill="none" stroke="#ccc"/>'
            f'<polyline points="{pts}" fill="none" stroke="#6a1b9a" stroke-width="1.5"/>'
            f'<text x="{left - 4}" y="{y0 + 8}" text-anchor="end">1</text>'
            f'<text x="{left - 4}" y="{y0 + line_h}" text-anchor="end">0</text>'
            f'<text x="{left - 4}" y="{y0 + line_h / 2 + 3:.1f}" text-anchor="end">P(les.)</text>'
        )
    for s in shown.tolist():
        x = left + (s + 0.5) * step
        parts.append(f'<line x1="{x:.1f}" y1="{y0 + line_h}" x2="{x:.1f}" y2="{y0 + line_h + 6}" stroke="#000"/>')
    parts.append(
        f'<text x="{left}" y="{height - 4}">slice 1 (inferior)</text>'
        f'<text x="{width - 10}" y="{height - 4}" text-anchor="end">'
        f"slice {n} (superior); ticks: slices shown below</text>"
        "</svg>"
    )
    return "".join(parts)
