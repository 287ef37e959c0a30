"""Reading predictions to evaluate: the CSV format, class names, screen output folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m3lung.errors import InputError
from m3lung.evaluate.predictions import parse_classes, read_predictions, read_screen_outputs, write_predictions


def test_round_trip_with_probabilities(tmp_path):
    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1]])
    path = write_predictions(tmp_path / "p.csv", ["a", "b"], [0, 1], [0, 2], proba)
    p = read_predictions(path)
    assert p.ids.tolist() == ["a", "b"] and p.y_true.tolist() == [0, 1] and p.y_pred.tolist() == [0, 2]
    np.testing.assert_allclose(p.proba, proba) and p.per_patient and p.groups() is None


def test_names_indices_aliases_and_slices(tmp_path):
    (tmp_path / "p.csv").write_text("patient_id,label,pred\nx,normal,0\nx,COVID,covid-19\ny,cap,3\n")
    p = read_predictions(tmp_path / "p.csv")
    assert p.y_true.tolist() == [0, 1, 3] and p.y_pred.tolist() == [0, 1, 3] and p.proba is None
    assert not p.per_patient and p.groups().tolist() == [0, 0, 1]
    three = parse_classes("NP,CAP,COVID-19")
    (tmp_path / "q.csv").write_text("patient_id,label,pred\na,NP,COVID-19\n")
    assert read_predictions(tmp_path / "q.csv", three).y_pred.tolist() == [2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("patient_id,label\na,0\n", "missing column"),
        ("patient_id,label,pred\n", "no prediction rows"),
        ("patient_id,label,pred\na,flu,0\n", "not one of the classes"),
        ("patient_id,label,pred\na,0,7\n", "not one of the classes"),
        ("patient_id,label,pred,p_Healthy\na,0,0,1\n", "some classes only"),
        ("patient_id,label,pred,p_Healthy,p_COVID-19,p_H1N1,p_CAP\na,0,0,x,0,0,0\n", "must be numbers"),
        ("patient_id,label,pred,p_Healthy,p_COVID-19,p_H1N1,p_CAP\na,0,0,nan,0,0,0\n", "finite"),
    ],
)
def test_bad_files(tmp_path, text, match):
    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(InputError, match=match):
        read_predictions(tmp_path / "p.csv")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "the predictions file is empty"),
        (b"\n \n", "the predictions file is empty"),
        (b"patient_id,label,pred\na,0,0\n\x89PNG\xff\xfe\n", r"line 3: not UTF-8 text \(byte 0x89\)"),
        (b"\x00\x01\x02binary", r"line 1: a NUL byte: this is a binary file"),
        (b"patient_id,label,pred\na,0,0\nb,1\n", r"line 3: 2 field\(s\) where the header has 3"),
        (b"patient_id,label,pred\na,0,0,COVID-19\n", r"line 2: 4 field\(s\) where the header has 3"),
        (b'patient_id,label,pred\na,"0,0\n', "line 2"),  # an unclosed quote swallows the rest
    ],
)
def test_binary_ragged_and_empty_files(tmp_path, data, match):
    # issue 17: UnicodeDecodeError / AttributeError tracebacks before
    (tmp_path / "p.csv").write_bytes(data)
    with pytest.raises(InputError, match=match) as err:
        read_predictions(tmp_path / "p.csv")
    assert str(tmp_path / "p.csv") in str(err.value) and "\n" not in str(err.value)


def test_trailing_empty_fields_and_blank_lines_are_fine(tmp_path):
    (tmp_path / "p.csv").write_text("patient_id,label,pred\na,0,0,\n\nb,1,1\n")
    assert read_predictions(tmp_path / "p.csv").y_pred.tolist() == [0, 1]


def test_bad_labels_and_reports_of_screen_folders(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "labels.csv").write_bytes(b"study_id,label\ns1\n")
    with pytest.raises(InputError, match=r"labels.csv, line 2: 1 field"):
        read_screen_outputs(tmp_path, tmp_path / "labels.csv")
    (tmp_path / "labels.csv").write_bytes(b"\xff\xfe\x00s\x00t")
    with pytest.raises(InputError, match=r"labels\.csv, line 1"):
        read_screen_outputs(tmp_path, tmp_path / "labels.csv")
    (tmp_path / "labels.csv").write_text("study_id,label\ns1,CAP\n")
    (tmp_path / "s1" / "report.json").write_text('{"patient": {"classes": []')
    with pytest.raises(InputError, match=r"report.json: not a report.json of m3lung screen"):
        read_screen_outputs(tmp_path, tmp_path / "labels.csv")


def test_bad_class_lists():
    for bad in ("COVID", "a,A", ""):
        with pytest.raises(InputError, match="two distinct"):
            parse_classes(bad)


def test_screen_folders(tmp_path):
    for sid, label, probs in (("s1", "COVID-19", [0.1, 0.8, 0.05, 0.05]), ("s2", "Healthy", [0.9, 0.1, 0, 0])):
        (tmp_path / sid).mkdir()
        patient = {
            "classes": ["Healthy", "COVID-19", "H1N1", "CAP"],
            "label": label,
            "decided_by": "network",
            "network": {"probs": probs, "label": label},
        }
        (tmp_path / sid / "report.json").write_text(json.dumps({"patient": patient}))
    (tmp_path / "labels.csv").write_text("study_id,label\ns1,COVID-19\ns2,CAP\n")
    p = read_screen_outputs(tmp_path, tmp_path / "labels.csv")
    assert p.y_true.tolist() == [1, 3] and p.y_pred.tolist() == [1, 0] and p.proba[0, 1] == 0.8
    (tmp_path / "labels.csv").write_text("study_id,label\ns3,CAP\n")
    with pytest.raises(InputError, match=r"no report\.json"):
        read_screen_outputs(tmp_path, tmp_path / "labels.csv")
