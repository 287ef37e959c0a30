"""Patient-level figures of the decision rules: Table IV's figures, fusion decisions, the decision table."""

from __future__ import annotations

import numpy as np

from m3lung.data.features import ScanFeatures
from m3lung.evaluate.patients import decision_table, fusion_decisions, rule_figures, write_rule_predictions
from m3lung.evaluate.predictions import read_predictions


def test_rule_figures_match_the_published_matrix():
    c = np.array([[99, 2, 1, 0], [1, 95, 0, 0], [0, 0, 41, 0], [7, 3, 0, 43]])
    y = np.repeat(np.arange(4), c.sum(1))
    pred = np.concatenate([np.repeat(np.arange(4), row) for row in c])
    figs = rule_figures(y, pred)
    assert figs["confusion"] == c.tolist()
    assert round(100 * figs["acc"], 2) == 95.21 and round(100 * figs["fpe"], 2) == 2.94
    assert round(100 * figs["fne"], 2) == 4.21 and round(100 * figs["fdpe"], 2) == 1.58


def _scan(pid: str, label: int, p_multi: np.ndarray, p_lesion: np.ndarray | None) -> ScanFeatures:
    n = p_multi.shape[0]
    return ScanFeatures(
        patient_id=pid,
        label=label,
        features=np.zeros((2, n, 3), np.float16),
        p_multi=np.stack([p_multi, p_multi]),
        p_lesion=None if p_lesion is None else np.stack([p_lesion, p_lesion]),
        slice_lesion=np.full(n, -1, np.int8),
    )


def _scans() -> list[ScanFeatures]:
    healthy = np.tile([0.97, 0.01, 0.01, 0.01], (4, 1))
    covid = np.array([[0.1, 0.8, 0.05, 0.05], [0.9, 0.05, 0.03, 0.02], [0.2, 0.7, 0.05, 0.05]])
    no_lesion = np.tile([0.999, 0.001], (4, 1))
    lesion = np.array([[0.0, 1.0], [0.9, 0.1], [0.0, 1.0]])
    return [_scan("h", 0, healthy, no_lesion), _scan("c", 1, covid, lesion)]


def test_fusion_decisions_give_every_rule_a_label_per_scan():
    out = fusion_decisions(_scans(), threshold=0.99, maxpool_threshold=0.5)
    assert set(out) == {"nonparametric", "maxpool"}
    for labels, probs in out.values():
        assert labels.tolist() == [0, 1] and probs.shape == (2, 4)
    # without lesion probabilities only max pooling decides
    plain = [_scan(s.patient_id, s.label, s.p_multi[0], None) for s in _scans()]
    assert set(fusion_decisions(plain)) == {"maxpool"}


def test_decision_table_and_prediction_files(tmp_path):
    scans = _scans()
    decisions = {"maxpool": (np.array([0, 2]), np.array([[0.9, 0.1, 0, 0], [0.2, 0.3, 0.5, 0.0]]))}
    rows = decision_table(scans, decisions)
    assert rows[1] == {
        "patient_id": "c",
        "label": "COVID-19",
        "n_slices": 3,
        "maxpool": "H1N1",
        "p_maxpool": [0.2, 0.3, 0.5, 0.0],
    }
    (path,) = write_rule_predictions(tmp_path, scans, np.array([0, 1]), decisions)
    assert path.name == "predictions_maxpool.csv"
    back = read_predictions(path)
    assert back.ids.tolist() == ["h", "c"] and back.y_pred.tolist() == [0, 2]
