"""A self-contained HTML page for one screened CT study (in the manner of M³Lung-Sys Fig. 11/12).

:func:`render_html` turns the JSON-able screening report (``report.json``) plus the lung crops and
lesion maps of the slices chosen for display into one HTML string that needs nothing else: images are
PNG data URIs, the probability chart is hand-written inline SVG, the style sheet is inline, and there
is no script and no external URL, so the page opens offline and leaks nothing when viewed.

Page content: the study's identifiers, what the model was trained on and a research-use notice, the
warnings, the patient decision with every rule's probabilities (bar chart and table), the infected
share of the lung, a strip of every slice's prediction along the volume, and the gallery of shown
slices with their lesion-map overlays and slice predictions.

Choices:

* Greyscale: the crop is windowed at ``window = (centre, width)`` (default -600 / 1200 HU, the
  network's middle window): clipped to ``[c - w/2, c + w/2]`` and mapped linearly to 0..255.
* Overlay: a "jet" colour map of the lesion map, blended with ``alpha = 0.6 · value`` where the map
  exceeds 0.5 and not at all elsewhere, so the lung stays readable and only the regions the map
  calls lesion (the same 0.5 used for Dice and the infected share) are coloured.
* Slices are numbered 1..N in canonical order (inferior → superior); the file and JSON index is
  number − 1.
* Every string from the report is HTML-escaped; numbers are formatted by this module.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from m3lung.classes import CLASSES
from m3lung.errors import InputError
from m3lung.report.charts import CLASS_COLOURS, RULE_NOTES, RULE_TITLES, bar_chart, esc, num, rule_title, slice_strip

__all__ = ["OVERLAY_ALPHA", "OVERLAY_THRESHOLD", "render_html"]

#: Map values above this are coloured in the overlay.
OVERLAY_THRESHOLD = 0.5
#: Opacity of the overlay at map value 1 (opacity = OVERLAY_ALPHA x value above the threshold).
OVERLAY_ALPHA = 0.6
_NOTICE = "Research use only; not a medical device. Not for diagnosis or treatment decisions."

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:16px;color:#1a1a1a;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
font-size:.92em}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.notice{border:2px solid #b71c1c;background:#fff3f3;padding:8px 12px;margin:10px 0;font-weight:600}
.trained{border:2px solid #37474f;background:#eceff1;padding:8px 12px;margin:10px 0}
.warnings{border:2px solid #e65100;background:#fff8e1;padding:8px 12px;margin:10px 0}
.ok{border:1px solid #9e9e9e;background:#fafafa;padding:6px 12px;margin:10px 0}
.decision{font-size:1.3em;font-weight:700;margin:.4em 0}
.notassessable{border:2px solid #6a1b9a;background:#f3e5f5;padding:8px 12px;margin:10px 0}.why{margin:.2em 0 .6em}
.muted{color:#555;font-size:.9em}
.gallery{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:260px}
figure img{width:256px;height:auto;image-rendering:pixelated;border:1px solid #333;display:block}
figcaption{font-size:.82em;margin-top:3px}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.85em;word-break:break-all}footer{margin-top:2em;border-top:1px solid #ccc;padding-top:8px}
""".strip()


# ------------------------------------------------------------------------------------------ images
def _jet(x: np.ndarray) -> np.ndarray:
    """The 'jet' colour map of values in [0, 1], any shape → shape + (3,) float32 RGB in [0, 1]."""
    v = np.asarray(x, dtype=np.float32)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue peak at 3/4, 1/2, 1/4
    return np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)


def _tiles(crops: np.ndarray, maps: np.ndarray | None, window: tuple[float, float]) -> np.ndarray:
    """Windowed crops (K, S, S) with the lesion-map overlay → (K, S, S, 3) uint8, for all tiles at once."""
    centre, width = float(window[0]), float(window[1])
    grey = np.clip((crops.astype(np.float32) - np.float32(centre - width / 2.0)) / np.float32(width), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if maps is not None:
        m = np.clip(maps.astype(np.float32), 0.0, 1.0)
        alpha = np.where(m > OVERLAY_THRESHOLD, np.float32(OVERLAY_ALPHA) * m, np.float32(0.0))[..., None]
        rgb = rgb * (1.0 - alpha) + _jet(m) * alpha
    return np.rint(rgb * 255.0).astype(np.uint8)


def _png_data_uri(tile: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(tile)).save(buf, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _probs(value: Any, n: int) -> list[float] | None:
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64).ravel()
    return [float(v) for v in a] if a.size == n else None


def _rules(patient: dict[str, Any], n_classes: int) -> list[tuple[str, dict[str, Any], list[float]]]:
    """The rules present in the report, in display order, with their probabilities."""
    out = []
    for key in patient.get("rules") or RULE_TITLES:
        doc = patient.get(key)
        if isinstance(doc, dict):
            p = _probs(doc.get("probs"), n_classes)
            if p is not None:
                out.append((key, doc, p))
    return out


# ------------------------------------------------------------------------------------------ page
def _check_arrays(
    crops: np.ndarray, maps: np.ndarray | None, shown: np.ndarray, n_slices: int, window: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    c = np.asarray(crops)
    s = np.asarray(shown)
    if s.ndim != 1 or (s.size and not np.issubdtype(s.dtype, np.integer)):
        raise InputError(f"shown must be a 1-D array of slice indices, got shape {s.shape} dtype {s.dtype}")
    s = s.astype(np.int64)
    if s.size == 0 and c.size == 0:
        c = np.zeros((0, 1, 1), np.float32)
        maps = None if maps is None else c
    if c.ndim != 3 or c.shape[0] != s.size:
        raise InputError(f"crops must be (K, S, S) with K = len(shown) = {s.size}, got shape {c.shape}")
    if c.size and not np.isfinite(c).all():
        raise InputError("crops hold NaN or infinite values")
    if s.size and (s.min() < 0 or s.max() >= n_slices):
        raise InputError(f"shown slice indices must lie in [0, {n_slices}), got [{s.min()}, {s.max()}]")
    m = None
    if maps is not None:
        m = np.asarray(maps)
        if m.shape != c.shape:
            raise InputError(f"maps {m.shape} must have the shape of crops {c.shape}")
        if m.size and not np.isfinite(m).all():
            raise InputError("maps hold NaN or infinite values")
    if len(window) != 2 or not float(window[1]) > 0:
        raise InputError(f"window must be (centre, width) with width > 0, got {tuple(window)}")
    return c, m, s


def render_html(
    report: dict[str, Any],
    *,
    crops: np.ndarray,
    maps: np.ndarray | None,
    shown: np.ndarray,
    window: tuple[float, float] = (-600.0, 1200.0),
) -> str:
    """The HTML page of one screened study, as one self-contained string.

    Parameters
    ----------
    report : the JSON-able screening report (``report.json``): ``study``, ``patient``, ``slices``,
        ``infected_share``, ``weights``, ``warnings``, ``timings_s``, ``schema``, ``m3lung_version``.
    crops : (K, S, S) HU lung crops of the shown slices.
    maps : (K, S, S) lesion maps in [0, 1] on those crops, or None (no overlay).
    shown : (K,) canonical slice indices of the crops (0 = most inferior).
    window : (centre, width) in HU of the greyscale display.

    Raises
    ------
    InputError
        When the arrays do not fit each other or the report (shapes, indices, NaN).
    """
    study = report.get("study") or {}
    patient = report.get("patient") or {}
    slices = report.get("slices") or {}
    weights = report.get("weights") or {}
    classes = [str(c) for c in (patient.get("classes") or CLASSES)]
    predicted = [str(p) for p in (slices.get("predicted") or [])]
    p_multi = slices.get("p_slice") or slices.get("p_multi") or []
    p_lesion = slices.get("p_lesion")
    n_slices = int(study.get("n_slices") or len(predicted))
    c, m, s = _check_arrays(crops, maps, shown, max(n_slices, len(predicted)), window)

    rules = _rules(patient, len(classes))
    decided_by = patient.get("decided_by") or next((k for k, _, _ in rules if k in ("network", "nonparametric")), None)
    decision = patient.get("label")
    if decision is None and decided_by and isinstance(patient.get(decided_by), dict):
        decision = patient[decided_by].get("label")
    pid = study.get("patient_id")
    title = str((report.get("system") or {}).get("title") or "M³Lung-Sys")
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)} screening report — {esc(pid if pid else 'unknown patient')}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)} screening report</h1>",
        f'<div class="notice">{esc(_NOTICE)}</div>',
        '<div class="trained"><strong>What the model was trained on:</strong> '
        f"{esc(weights.get('trained_on') or 'not recorded')}</div></header>",
    ]

    # --- study
    spacing = study.get("spacing_mm")
    spacing_s = " × ".join(num(v, 3) for v in spacing) + " mm" if isinstance(spacing, list | tuple) else "—"
    out.append("<section><h2>Study</h2><table>")
    for label, value in (
        ("Patient ID", pid),
        ("Study UID", study.get("study_uid")),
        ("Series UID", study.get("series_uid")),
        ("Source", study.get("source")),
        ("Slices", n_slices),
    ):
        out.append(f'<tr><th>{label}</th><td class="mono">{esc(value)}</td></tr>')
    out.append(f'<tr><th>Spacing (z, y, x)</th><td class="mono">{esc(spacing_s)}</td></tr></table></section>')

    # --- warnings
    warns = [str(w) for w in (report.get("warnings") or [])]
    if warns:
        items = "".join(f"<li>{esc(w)}</li>" for w in warns)
        out.append(f'<section class="warnings"><strong>Warnings ({len(warns)})</strong><ul>{items}</ul></section>')
    else:
        out.append('<section class="ok">No warnings.</section>')

    # --- patient decision
    out.append("<section><h2>Patient-level result</h2>")
    quality = report.get("quality") or {}
    if report.get("assessable") is False:
        why = "".join(f"<li>{esc(r)}</li>" for r in quality.get("reasons") or [])
        out.append(
            '<div class="notassessable"><div class="decision">Not assessable: no class is given</div>'
            f"<p>The input quality gate found that this is not a chest CT in Hounsfield units:</p><ul>{why}</ul>"
            "<p>The screening system did not run on it.</p></div>"
        )
    if decision is not None:
        by_doc = patient.get(str(decided_by))
        by = rule_title(str(decided_by), by_doc if isinstance(by_doc, dict) else {}) if decided_by else "—"
        out.append(f'<div class="decision">Screening result: {esc(decision)}</div>')
        out.append(f'<div class="muted">decided by: {esc(by)}</div>')
        if isinstance(by_doc, dict) and by_doc.get("why"):
            out.append(f'<div class="why">Why: {esc(by_doc["why"])}.</div>')
    if rules:
        out.append(bar_chart(rules, classes))
        head = "".join(f"<th>{esc(name)}</th>" for name in classes)
        out.append(f"<table><tr><th>Rule</th>{head}<th>Label</th><th>Notes</th></tr>")
        for key, doc, probs in rules:
            cells = "".join(f'<td class="num">{num(p, 3)}</td>' for p in probs)
            note = str(doc.get("note") or RULE_NOTES.get(key, ""))
            if doc.get("threshold") is not None:
                note += f" (threshold {num(doc.get('threshold'), 2)})"
            if doc.get("counts") is not None:
                note += "; slice votes " + ", ".join(esc(v) for v in doc["counts"])
            if doc.get("why"):
                note += f"; here: {doc['why']}"
            title = esc(rule_title(key, doc))
            out.append(f"<tr><td>{title}</td>{cells}<td>{esc(doc.get('label'))}</td><td>{esc(note)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No patient-level probabilities in this report.</p>")
    share = report.get("infected_share")
    share_s = f"{100.0 * float(share):.1f} %" if share is not None and np.isfinite(float(share)) else "not available"
    out.append(f"<p><strong>Infected share of the lung:</strong> {esc(share_s)}")
    if report.get("infected_share_method"):
        out.append(f' <span class="muted">({esc(report["infected_share_method"])})</span>')
    out.append("</p></section>")

    # --- slices along the volume
    pl_list = [float(v) for v in p_lesion] if p_lesion is not None else None
    out.append("<section><h2>Slices along the volume</h2>")
    legend = " ".join(
        f'<span style="color:{CLASS_COLOURS[i % len(CLASS_COLOURS)]}">■</span> {esc(name)}'
        for i, name in enumerate(classes)
    )
    out.append(f'<div class="muted">{legend}</div>')
    out.append(slice_strip(predicted, pl_list, s, classes))
    out.append("</section>")

    # --- gallery
    out.append(f"<section><h2>Shown slices ({s.size} of {n_slices})</h2>")
    overlay = (
        f"lesion map overlaid (jet colours where the map exceeds {OVERLAY_THRESHOLD:g}, "
        f"opacity {OVERLAY_ALPHA:g} × value)"
        if m is not None
        else "no lesion map available (no overlay)"
    )
    out.append(
        f'<p class="muted">Lung crops at window centre {num(window[0], 0)} HU, width {num(window[1], 0)} HU; '
        f"{overlay}. "
        "Slices numbered 1..N from inferior to superior.</p>"
    )
    if s.size == 0:
        out.append("<p><em>No slices were selected for display.</em></p>")
    else:
        tiles = _tiles(c, m, (float(window[0]), float(window[1])))
        out.append('<div class="gallery">')
        for j, idx in enumerate(s.tolist()):
            name = predicted[idx] if idx < len(predicted) else None
            p_cls = None
            if name is not None and name in classes and idx < len(p_multi):
                row = p_multi[idx]
                k = classes.index(name)
                p_cls = row[k] if k < len(row) else None
            caption = f"slice {idx + 1} / {n_slices} — {esc(name)} (p={num(p_cls)})"
            if pl_list is not None and idx < len(pl_list):
                caption += f", P(lesion)={num(pl_list[idx])}"
            out.append(
                f'<figure><img src="{_png_data_uri(tiles[j])}" alt="slice {idx + 1}" width="{tiles.shape[2]}" '
                f'height="{tiles.shape[1]}"><figcaption>{caption}</figcaption></figure>'
            )
        out.append("</div>")
    out.append("</section>")

    # --- footer
    hashes = weights.get("hashes") or {"slice": weights.get("slice_hash"), "patient": weights.get("patient_hash")}
    timings = report.get("timings_s") or {}
    timing_s = ", ".join(f"{esc(k)} {num(v, 2)} s" for k, v in timings.items()) if timings else "—"
    out.append(
        "<footer>"
        f'<div class="notice">{esc(_NOTICE)}</div>'
        '<table class="muted">'
        + "".join(
            f'<tr><th>{esc(part.capitalize())} weights</th><td class="mono">{esc(digest)}</td></tr>'
            for part, digest in hashes.items()
        )
        + f"<tr><th>m3lung</th><td>{esc(report.get('m3lung_version'))} "
        f"(report schema {esc(report.get('schema'))})</td></tr>"
        f"<tr><th>Timings</th><td>{timing_s}</td></tr>"
        "</table></footer></body></html>"
    )
    return "\n".join(out)
