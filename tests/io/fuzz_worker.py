"""Worker process for ``test_fuzz.py``: reads mutated inputs with ``read_ct`` (and ``m3lung info``).

Run as ``python fuzz_worker.py``. Each line on stdin is a JSON case ``{"path", "baseline", "cli"}``;
for each case one line ``@@RESULT <json>`` is written to stdout (anything else there is noise from
libraries). The parent kills and restarts this process when a case exceeds its timeout, so a hang
fails that case instead of hanging the test run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import traceback
import warnings
from typing import Any

import numpy as np

_BASELINES: dict[str, np.ndarray] = {}


def _baseline(path: str) -> np.ndarray:
    if path not in _BASELINES:
        _BASELINES[path] = np.load(path)
    return _BASELINES[path]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    from m3lung.errors import M3LungError
    from m3lung.io import read_ct

    res: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = read_ct(case["path"])
    except M3LungError as exc:
        res.update(outcome="error", type=type(exc).__name__, message=str(exc))
    except BaseException as exc:
        res.update(outcome="crash", type=type(exc).__name__, message=str(exc), traceback=traceback.format_exc())
    else:
        res.update(outcome="volume", shape=list(vol.shape), warnings=list(vol.warnings))
        res["spacing"] = [float(s) for s in vol.spacing]
        base = _baseline(case["baseline"]) if case.get("baseline") else None
        if base is not None and base.shape == vol.voxels.shape:
            diff = vol.voxels != base
            res["equal"] = not bool(diff.any())
            res["changed_max_fraction"] = float(diff.reshape(diff.shape[0], -1).mean(axis=1).max())
            res["changed_slices"] = int(diff.reshape(diff.shape[0], -1).any(axis=1).sum())
        else:
            res["equal"] = False
            res["changed_max_fraction"] = 1.0
            res["changed_slices"] = -1
    if case.get("cli"):
        res.update(_run_cli(case["path"]))
    return res


def _run_cli(path: str) -> dict[str, Any]:
    from m3lung.cli import main

    out, err = io.StringIO(), io.StringIO()
    show = warnings.showwarning
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            try:
                rc: Any = main(["info", path])
            except SystemExit as exc:
                rc = exc.code
            except BaseException:
                rc = "uncaught"
                err.write(traceback.format_exc())
    finally:
        warnings.showwarning = show  # main() installs its own printer
    return {"cli_rc": rc, "cli_stderr": err.getvalue()[-4000:]}


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not mix with results
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    for line in sys.stdin:
        if not line.strip():
            continue
        res = run_case(json.loads(line))
        out.write("@@RESULT " + json.dumps(res) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
