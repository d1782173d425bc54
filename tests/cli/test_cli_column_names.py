"""`kmtl train | predict | evaluate | export` on a CSV whose headers are named
as real tables name them: spaces, punctuation, hyphens, non-ASCII, a leading
digit. Runs in-process through `kmtl.cli.main`, as `test_bad_input.py` does."""

import contextlib
import io
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from helpers import served_names

import kmtl
from kmtl.cli import main
from kmtl.data import make_dataset
from kmtl.runs.run_dir import RunDir

# Penguin columns -> the headers of the CSV.
HEADERS = {"bill_length_mm": "bill length (mm)", "bill_depth_mm": "bill-depth",
           "flipper_length_mm": "Flossenlänge", "year": "2nd year",
           "island": "île", "body_mass_g": "body mass (g)"}
# Header -> the model input name and signature key.
RENAMED = {"bill length (mm)": "bill_length_mm", "bill-depth": "bill_depth",
           "Flossenlänge": "Flossenlange", "2nd year": "col_2nd_year",
           "île": "ile", "2nd home": "col_2nd_home"}
NUMERIC = ["bill length (mm)", "bill-depth", "Flossenlänge", "2nd year"]
CATEGORICAL = ["île", "2nd home"]


def odd_penguins():
    frame = kmtl.datasets.load_penguins().rename(columns=HEADERS)
    frame["2nd home"] = np.where(np.arange(len(frame)) % 3 == 0, "yes", "no")
    return frame


def run_main(capsys, *args):
    """`kmtl ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def config_for(root, **features):
    return {
        "name": "odd",
        "data": {"train": str(root / "penguins.csv"),
                 "split": {"method": "random", "validation": 0.2, "test": 0.2}},
        "features": features or {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "tasks": [{"name": "species", "type": "multiclass"},
                  {"name": "body_mass", "type": "regression",
                   "target": "body mass (g)"}],
        "model": {"architecture": "shared_bottom", "options": {"units": [8]},
                  "tower_units": [4]},
        "training": {"epochs": 2, "batch_size": 64, "verbose": 0},
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd_names")
    odd_penguins().to_csv(root / "penguins.csv", index=False)
    return root


@pytest.fixture(scope="module")
def trained(workspace):
    """One `kmtl train` run; returns (run directory, stdout)."""
    path = workspace / "odd.yaml"
    path.write_text(yaml.safe_dump(config_for(workspace), allow_unicode=True),
                    encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(path), "--output-dir", str(workspace / "runs"),
                     "--export-dir", str(workspace / "sm")])
    assert code == 0
    (run,) = (workspace / "runs").iterdir()
    return run, out.getvalue()


def test_train_prints_the_renamed_inputs(trained):
    _, out = trained
    assert "take under another name" in out
    assert "assets/kmtl_inputs.json" in out
    for column, key in RENAMED.items():
        assert f"{column!r} -> {key}" in out
    assert out.strip().splitlines()[-1].startswith("Run directory: ")


def test_config_yaml_keeps_the_column_names_and_lists_the_input_names(trained):
    run, _ = trained
    text = (run / "config.yaml").read_text(encoding="utf-8")
    stored = yaml.safe_load(text)
    assert stored["features"]["numeric"] == NUMERIC
    assert stored["features"]["categorical"] == CATEGORICAL
    comment = "\n".join(line[2:] for line in text.splitlines()
                        if line.startswith("# "))
    listing = yaml.safe_load(comment.split("takes them:\n", 1)[1])
    assert listing == RENAMED
    config = RunDir.open(run).read_config()
    assert list(config.features.numeric) == NUMERIC


def test_the_saved_model_has_column_names_and_input_names(trained):
    run, _ = trained
    model = keras.saving.load_model(run / "model.keras")
    assert {f.name: f.input_name for f in model.features} == RENAMED
    assert sorted(model.input) == sorted(RENAMED.values())


def test_predict_takes_the_csv_with_its_own_headers(trained, workspace, capsys):
    run, _ = trained
    rows = odd_penguins().iloc[[0, 3, 152, 276]].reset_index(drop=True)
    rows.loc[1, "île"] = "Atlantis"
    source = workspace / "rows.csv"
    rows.to_csv(source, index=False)
    output = workspace / "predictions.csv"
    code, out, err = run_main(capsys, "predict", run, source, output)
    assert code == 0, err
    predicted = pd.read_csv(output)
    model = keras.saving.load_model(run / "model.keras")
    expected = model.predict(make_dataset(pd.read_csv(source), model.features),
                             verbose=0)
    np.testing.assert_allclose(predicted["body_mass"], expected["body_mass"][:, 0],
                               rtol=1e-4)
    assert len(predicted) == 4


def test_evaluate_on_a_csv_with_its_own_headers(trained, workspace, capsys):
    run, _ = trained
    code, out, err = run_main(capsys, "evaluate", run, workspace / "penguins.csv",
                              "--json")
    assert code == 0, err
    metrics = json.loads(out[out.index("{"):])
    assert set(metrics["penguins.csv"]) == {"species", "body_mass"}
    code, out, err = run_main(capsys, "evaluate", run)
    assert code == 0, err


def test_export_prints_the_names_and_serves_them(trained, workspace, capsys):
    run, _ = trained
    code, out, err = run_main(capsys, "export", run, "--export-dir",
                              workspace / "sm")
    assert code == 0, err
    assert "assets/kmtl_inputs.json" in out
    for column, key in RENAMED.items():
        assert f"{column!r} -> {key}" in out
    path = Path(out.split("SavedModel for TF Serving: ")[1].splitlines()[0])
    assert path.name == "2"  # `kmtl train` exported version 1
    assert served_names(path) == RENAMED
    assert served_names(workspace / "sm" / "1") == RENAMED
    # A REST body in the row format, keyed by the signature names.
    instance = {"bill_length_mm": 39.1, "bill_depth": 18.7, "Flossenlange": 181.0,
                "col_2nd_year": 2007.0, "ile": "Torgersen", "col_2nd_home": "no"}
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = serving.structured_input_signature[1]
    assert set(specs) == set(instance)
    served = serving(**{key: tf.constant([value], specs[key].dtype)
                        for key, value in instance.items()})
    model = keras.saving.load_model(run / "model.keras")
    frame = pd.DataFrame([{column: instance[key]
                           for column, key in RENAMED.items()}])
    expected = model.predict(make_dataset(frame, model.features), verbose=0)
    for task in ("species", "body_mass"):
        np.testing.assert_allclose(served[task].numpy(), expected[task],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("features", [
    {"numeric": ["a b", "a_b"]},
    {},  # every column a feature, by its dtype
])
def test_colliding_columns_are_an_error_before_anything_is_written(
        tmp_path, capsys, features):
    frame = odd_penguins()
    frame["a b"] = 1.0
    frame["a_b"] = 2.0
    frame.to_csv(tmp_path / "penguins.csv", index=False)
    config = config_for(tmp_path, **features)
    if not features:
        del config["features"]
    path = tmp_path / "clash.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    code, out, err = run_main(capsys, "train", path, "--output-dir",
                              tmp_path / "runs", "--export-dir", tmp_path / "sm")
    assert code == 2
    assert "'a b' and 'a_b' both become the model input 'a_b'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "sm").exists()


def test_train_without_export_still_prints_the_input_names(workspace, tmp_path,
                                                           capsys):
    config = {**config_for(workspace), "export": {"enabled": False}}
    config["training"] = {**config["training"], "epochs": 1}
    path = tmp_path / "no_export.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    code, out, err = run_main(capsys, "train", path, "--output-dir",
                              tmp_path / "runs")
    assert code == 0, err
    assert "SavedModel for TF Serving" not in out
    for column, key in RENAMED.items():
        assert f"{column!r} -> {key}" in out
