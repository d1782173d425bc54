"""Non-finite numbers (inf, or beyond float32) at the edges, and a run that
diverges: a clear error or the handling `data.non_finite` asks for, and never a
NaN model saved or exported."""

import math
import os

import numpy as np
import pandas as pd
import pytest
import yaml

import kmtl
from kmtl.cli import main
from kmtl.data import handle_non_finite
from kmtl.errors import DataError
from kmtl.errors import TrainingError
from kmtl.features import Feature
from kmtl.runs.run_dir import FAILED_FILE
from kmtl.runs.run_dir import INCOMPLETE_FILE
from kmtl.runs.training import check_finite_metrics
from kmtl.tasks import Task


@pytest.mark.parametrize("value, shown", [(np.inf, "inf"), (-np.inf, "-inf"),
                                          (1e39, r"1e\+39")])
def test_a_non_finite_feature_value_names_the_column_and_count(value, shown):
    frame = pd.DataFrame({"x": [1.0, value, np.nan, value]})
    with pytest.raises(DataError, match=rf"Feature 'x' has 2 value\(s\) that are "
                                        rf"not finite float32 numbers .* first in "
                                        rf"row 1: {shown}\. .*data.non_finite"):
        Feature("x", "numeric").convert(frame)


def test_a_non_finite_regression_label_names_the_task_and_column():
    frame = pd.DataFrame({"y": [1.0, 2.0, np.nan, -np.inf]})
    with pytest.raises(DataError, match=r"Task 'y': 1 label\(s\) in column 'y' "
                                        r"are not finite .* first in row 3: -inf"):
        Task("y", "regression").fit(frame)


def test_handle_non_finite_by_hand():
    frame = pd.DataFrame({"x": [1.0, np.inf, 2.0, np.nan],
                          "y": [0.0, 1.0, 1e39, 2.0], "name": list("abcd")})
    same, counts = handle_non_finite(frame, "error")
    assert same is frame and counts == {"x": 1, "y": 1}
    dropped, _ = handle_non_finite(frame, "drop")
    assert dropped.index.tolist() == [0, 3]
    imputed, _ = handle_non_finite(frame, "impute")
    assert imputed["x"].isna().tolist() == [False, True, False, True]
    assert imputed["y"].isna().tolist() == [False, False, True, False]
    assert frame["x"].tolist()[1] == np.inf  # the input is not changed
    with pytest.raises(ValueError, match="action must be one of"):
        handle_non_finite(frame, "clip")


def test_check_finite_metrics_names_split_task_and_metric():
    check_finite_metrics({"validation": {"a": {"loss": 0.5, "auc": 0.9}}})
    with pytest.raises(TrainingError, match=r"validation b auc = nan"):
        check_finite_metrics({"validation": {"a": {"loss": 0.5},
                                             "b": {"auc": math.nan}}})


@pytest.fixture
def workspace(tmp_path):
    frame = kmtl.datasets.load_penguins().dropna(
        subset=["bill_length_mm", "body_mass_g"]).reset_index(drop=True)
    frame.loc[[3, 7], "bill_depth_mm"] = np.inf
    frame.loc[11, "body_mass_g"] = 1e39
    frame.to_csv(tmp_path / "train.csv", index=False)
    config = {
        "name": "nf", "data": {"train": str(tmp_path / "train.csv"),
                               "split": {"method": "random", "seed": 0}},
        "features": {"numeric": ["bill_length_mm", "bill_depth_mm"]},
        "tasks": [{"name": "species", "type": "multiclass"},
                  {"name": "body_mass_g", "type": "regression"}],
        "model": {"options": {"units": [8]}, "tower_units": [4]},
        "training": {"epochs": 2, "batch_size": 32, "learning_rate": 0.01,
                     "verbose": 0}}
    return tmp_path, config


def train(folder, config, capsys):
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["train", str(path), "--output-dir", str(folder / "runs"),
                 "--export-dir", str(folder / "sm")])
    out, err = capsys.readouterr()
    return code, out, err


def test_inf_in_the_data_is_refused_before_anything_is_written(workspace, capsys):
    folder, config = workspace
    code, _, err = train(folder, config, capsys)
    assert code == 2
    # Tasks are fitted first: the label is found before the feature values.
    assert ("Task 'body_mass_g': 1 label(s) in column 'body_mass_g' are not "
            "finite") in err
    config["tasks"] = config["tasks"][:1]
    code, _, err = train(folder, config, capsys)
    assert code == 2
    # Rows 3 and 7 hold inf; the training split has one of them.
    assert "Feature 'bill_depth_mm' has 1 value(s) that are not finite" in err
    assert not (folder / "runs").exists() and not (folder / "sm").exists()


@pytest.mark.parametrize("action, expected", [
    ("drop", "dropped"), ("impute", "made them missing")])
def test_non_finite_values_handled_as_asked(workspace, capsys, action, expected):
    folder, config = workspace
    config["data"]["non_finite"] = action
    code, out, err = train(folder, config, capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if "Non-finite values" in line]
    assert lines and all(expected in line for line in lines)
    assert "'bill_depth_mm'" in out and "'body_mass_g'" in out
    assert sorted(os.listdir(folder / "sm")) == ["1"]


def test_a_diverged_run_is_never_saved_or_exported(workspace, capsys):
    folder, config = workspace
    config["data"]["non_finite"] = "drop"
    config["training"]["learning_rate"] = 1e30
    code, _, err = train(folder, config, capsys)
    assert code == 1
    assert "Training diverged in epoch 1" in err and "loss = nan" in err
    assert "Nothing was saved or exported" in err
    (run,) = (folder / "runs").iterdir()
    assert FAILED_FILE in os.listdir(run) and INCOMPLETE_FILE in os.listdir(run)
    assert "model.keras" not in os.listdir(run)
    assert "metrics.json" not in os.listdir(run)
    assert not (folder / "sm").exists() or not os.listdir(folder / "sm")
    # kmtl evaluate / predict / export on it say it did not finish, and why.
    code = main(["evaluate", str(run)])
    err = capsys.readouterr().err
    assert code == 2
    assert ("is a run that did not finish (it holds INCOMPLETE and no "
            "model.keras)") in err
    assert "It failed: Training diverged in epoch 1" in err


def test_a_finished_run_is_not_marked_incomplete(workspace, capsys):
    folder, config = workspace
    config["data"]["non_finite"] = "drop"
    code, _, err = train(folder, config, capsys)
    assert code == 0, err
    (run,) = (folder / "runs").iterdir()
    assert INCOMPLETE_FILE not in os.listdir(run)


# === Honest metrics ===


def test_a_task_without_labels_or_with_one_class_reports_null(tmp_path, capsys):
    """Validation rows without any `sex` label, and test rows whose `sex`
    labels are all female: null metrics (n/a in the table, null in
    metrics.json), with a warning naming the task and the split."""
    import json

    frame = kmtl.datasets.load_penguins().dropna(
        subset=["bill_length_mm", "sex"]).reset_index(drop=True)
    validation = frame.iloc[:40].assign(sex=None)
    test = frame[frame["sex"] == "female"].iloc[:30]
    for name, part in {"train": frame.iloc[40:], "validation": validation,
                       "test": test}.items():
        part.to_csv(tmp_path / f"{name}.csv", index=False)
    config = {
        "name": "honest", "data": {name: str(tmp_path / f"{name}.csv")
                                   for name in ("train", "validation", "test")},
        "features": {"numeric": ["bill_length_mm", "bill_depth_mm"]},
        "tasks": [{"name": "species", "type": "multiclass"},
                  {"name": "sex", "type": "binary", "positive": "female"}],
        "model": {"options": {"units": [8]}, "tower_units": [4]},
        "training": {"epochs": 1, "batch_size": 32, "verbose": 0},
        "export": {"enabled": False}}
    with pytest.warns(UserWarning) as caught:
        code, out, err = train(tmp_path, config, capsys)
    assert code == 0, err
    messages = [str(w.message) for w in caught]
    assert ("Task 'sex' has no labelled rows in the validation split: its "
            "validation metrics are null (n/a).") in messages
    assert ("Task 'sex' has only positive labels in the test split (30 rows): "
            "its AUC is null (n/a).") in messages
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["sex"] == {"loss": None, "accuracy": None,
                                            "auc": None}
    assert metrics["test"]["sex"]["auc"] is None
    assert 0 <= metrics["test"]["sex"]["accuracy"] <= 1
    assert metrics["validation"]["species"]["accuracy"] is not None
    sex_rows = [line.split() for line in out.splitlines()
                if line.split()[:2] in (["validation", "sex"], ["test", "sex"])]
    assert sex_rows[0][2:] == ["n/a"] * 3
    assert sex_rows[1][-1] == "n/a"


@pytest.mark.parametrize("features", [
    {"numeric": ["bill_length_mm"]},                     # declared without it
    {"exclude": ["bill_depth_mm", "body_mass_g", "sex", "island"]},  # inferred
])
def test_drop_looks_only_at_the_columns_the_model_reads(workspace, features):
    # bill_depth_mm holds inf on 2 rows and body_mass_g 1e39 on one, but the
    # model reads neither: no row is dropped (as `error` refuses nothing).
    from kmtl.runs.data import prepare_data

    folder, config = workspace
    config["data"]["non_finite"] = "drop"
    config["features"] = features
    config["tasks"] = config["tasks"][:1]
    lines = []
    data = prepare_data(config, log=lines.append)
    rows = len(pd.read_csv(folder / "train.csv"))
    assert len(data.train) + len(data.validation) + len(data.test) == rows
    assert not [line for line in lines if "Non-finite" in line]
    config["tasks"] = config["tasks"] + [{"name": "body_mass_g",
                                          "type": "regression"}]
    data = prepare_data(config, log=lines.append)
    assert len(data.train) + len(data.validation) + len(data.test) == rows - 1
