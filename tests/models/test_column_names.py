"""Models on columns named as real tables name them (spaces, punctuation,
hyphens, non-ASCII, a leading digit): build, fit, `.keras` round trip, export
and serve, and models saved before input names were sanitized."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import FRESH_PROCESS
from helpers import assert_export_serves
from helpers import raw_columns
from helpers import served_names

import kmtl
from kmtl.data import make_dataset
from kmtl.features import resolve_features
from kmtl.models.export import INPUT_NAMES_FILE
from kmtl.models.export import describe_renamed_inputs
from kmtl.models.export import signature_inputs

NUMERIC = ["bill length (mm)", "capital-gain", "Größe", "2nd floor (m²)"]
CATEGORICAL = ["île", "Review Text", "2nd home", "work.class", "zip-code"]
# Column -> the model input name and the signature key.
EXPECTED = {
    "bill length (mm)": "bill_length_mm",
    "capital-gain": "capital_gain",
    "Größe": "Grosse",
    "2nd floor (m²)": "col_2nd_floor_m2",
    "île": "ile",
    "Review Text": "Review_Text",
    "2nd home": "col_2nd_home",
    "work.class": "work_class",
    "zip-code": "zip_code",
}


def odd_frame(rows=96, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "bill length (mm)": rng.normal(40, 5, rows),
        "capital-gain": rng.exponential(100, rows),
        "Größe": rng.normal(170, 10, rows),
        "2nd floor (m²)": rng.normal(50, 5, rows),
        "île": rng.choice(["Biscoe", "Dream", "Torgersen"], rows),
        "Review Text": rng.choice(["great", "bad", "fine"], rows),
        "2nd home": rng.choice(["yes", "no"], rows),
        "work.class": rng.integers(0, 4, rows),
        "zip-code": rng.choice(["75001", "13001"], rows),
    })
    frame.loc[3, "bill length (mm)"] = np.nan
    frame.loc[4, "île"] = None
    frame["clicked"] = (frame["bill length (mm)"].fillna(40) > 40).astype(int)
    frame["price (€)"] = frame["Größe"] * 2 + rng.normal(0, 1, rows)
    return frame


@pytest.fixture(scope="module")
def frame():
    return odd_frame()


@pytest.fixture(scope="module")
def fitted(frame):
    tasks = [kmtl.Task("clicked", "binary"),
             kmtl.Task("price", "regression", target="price (€)")]
    tasks = [t.fit(frame) for t in tasks]
    features = [f.fit(frame) for f in resolve_features(frame, NUMERIC, CATEGORICAL)]
    return features, tasks


@pytest.fixture(scope="module")
def model(fitted, frame):
    features, tasks = fitted
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=2,
                             expert_units=[8], tower_units=[4])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(make_dataset(frame, features, tasks, 32, shuffle=True), epochs=2,
              verbose=0, shuffle=False)
    return model


def new_rows(frame):
    """Held-out rows: a missing number, a missing and an unseen category."""
    rows = odd_frame(rows=6, seed=1)
    rows.loc[0, "capital-gain"] = np.nan
    rows.loc[1, "île"] = "Atlantis"
    rows.loc[2, "Review Text"] = None
    return rows


def test_inputs_are_named_by_input_name_and_features_by_column(model):
    assert {f.name: f.input_name for f in model.features} == EXPECTED
    assert sorted(model.input) == sorted(EXPECTED.values())
    assert model.get_layer("ile_lookup") is not None
    assert model.get_layer("col_2nd_home_lookup") is not None


def test_training_went_through_every_step(model):
    assert len(model.history.history["loss"]) == 2
    assert np.isfinite(model.history.history["loss"]).all()


def test_keras_round_trip_keeps_names_and_outputs(model, frame, tmp_path):
    path = tmp_path / "odd.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [(f.name, f.input_name) for f in loaded.features] == [
        (f.name, f.input_name) for f in model.features]
    rows = new_rows(frame)
    expected = model.predict(make_dataset(rows, model.features), verbose=0)
    got = loaded.predict(make_dataset(rows, loaded.features), verbose=0)
    for task in model.task_names:
        np.testing.assert_allclose(got[task], expected[task], rtol=1e-6)
    stored = json.loads(loaded.to_json())["config"]["features"]
    assert {f["name"]: f.get("input_name") for f in stored} == EXPECTED


@pytest.fixture
def tf_warnings(caplog):
    """`caplog`, also fed by TensorFlow's loggers (`absl`, `tensorflow`)."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING)
    yield caplog
    for logger in loggers:
        logger.removeHandler(caplog.handler)


def test_tf_warnings_sees_tensorflow_sanitizing(tf_warnings):
    """The check below can fail: TensorFlow warns about a name it sanitizes."""
    spec = tf.TensorSpec((None,), tf.float32, name="a b")
    tf.function(lambda x: x, input_signature=[spec]).get_concrete_function()
    assert [r for r in tf_warnings.records if "not a valid" in r.getMessage()]


def test_export_serves_under_the_signature_names(model, frame, tmp_path,
                                                 tf_warnings):
    path = assert_export_serves(model, raw_columns(model, new_rows(frame)),
                                tmp_path / "sm")
    assert served_names(path) == EXPECTED
    assert json.loads((Path(path) / INPUT_NAMES_FILE).read_text("utf-8")) == {
        "inputs": EXPECTED}
    assert signature_inputs(model) == EXPECTED
    # TensorFlow had nothing to sanitize: no warning per name.
    assert not [r for r in tf_warnings.records if "not a valid" in r.getMessage()]
    serving = tf.saved_model.load(path).signatures["serving_default"]
    specs = serving.structured_input_signature[1]
    assert sorted(specs) == sorted(EXPECTED.values())
    assert specs["col_2nd_home"].dtype == tf.string
    assert specs["work_class"].dtype == tf.int64


def test_a_fresh_process_serves_the_export_with_tensorflow_alone(model, frame,
                                                               tmp_path):
    """The renamed inputs and the asset file trouble neither a process that
    imports TensorFlow alone nor `saved_model_cli`."""
    path = kmtl.export_saved_model(model, str(tmp_path / "sm"))
    rows = new_rows(frame)
    columns = raw_columns(model, rows)
    keys = served_names(path)
    inputs_file = tmp_path / "inputs.json"
    inputs_file.write_text(json.dumps(
        {keys[column]: values.tolist() for column, values in columns.items()}))
    script = tmp_path / "serve.py"
    script.write_text(FRESH_PROCESS)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    outputs_file = tmp_path / "outputs.npz"
    result = subprocess.run(
        [sys.executable, str(script), path, str(inputs_file), str(outputs_file)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["kmtl"] is False
    served = np.load(outputs_file)
    expected = model.predict(make_dataset(rows, model.features), verbose=0)
    for task in model.task_names:
        np.testing.assert_allclose(served[task], expected[task], rtol=1e-5,
                                   atol=1e-5)
    cli = Path(sys.executable).with_name("saved_model_cli")
    if cli.is_file():
        shown = subprocess.run([str(cli), "show", "--dir", path, "--all"],
                               capture_output=True, text=True, env=env,
                               timeout=300)
        assert shown.returncode == 0, shown.stderr[-2000:]
        for key in EXPECTED.values():
            assert f"inputs['{key}']" in shown.stdout


def test_the_note_lists_each_renamed_column(model):
    note = describe_renamed_inputs(model)
    assert "assets/kmtl_inputs.json" in note
    for column, key in EXPECTED.items():
        assert f"{column!r} -> {key}" in note


def test_valid_names_give_no_note_and_no_listing(tmp_path):
    frame = odd_frame().rename(columns=EXPECTED)
    task = kmtl.Task("clicked", "binary").fit(frame)
    features = [f.fit(frame) for f in resolve_features(
        frame, [EXPECTED[c] for c in NUMERIC], [EXPECTED[c] for c in CATEGORICAL])]
    assert all(f.input_name == f.name for f in features)
    assert all("input_name" not in f.get_config() for f in features)
    model = kmtl.build_model(features, [task], tower_units=[4], units=[4])
    assert describe_renamed_inputs(model) is None
    columns = raw_columns(model, frame.head(4))
    path = assert_export_serves(model, columns, tmp_path / "sm")
    assert sorted(p.name for p in Path(path).iterdir()) == [
        "assets", "fingerprint.pb", "saved_model.pb", "variables"]
    assert list((Path(path) / "assets").iterdir()) == []


def legacy_model(frame):
    """A model as kmtl built it before input names were sanitized: inputs and
    lookups named after the columns (`capital-gain`, `zip-code_lookup`), and
    feature configs without `input_name`."""
    task = kmtl.Task("clicked", "binary").fit(frame)
    features = [f.fit(frame) for f in resolve_features(
        frame, ["capital-gain"], ["zip-code", "work.class"])]
    for feature in features:
        feature.input_name = feature.name
    keras.utils.set_random_seed(0)
    return kmtl.build_model(features, [task], tower_units=[4], units=[4])


def test_a_model_saved_with_column_named_inputs_loads_and_serves(frame, tmp_path):
    model = legacy_model(frame)
    assert sorted(model.input) == ["capital-gain", "work.class", "zip-code"]
    path = tmp_path / "legacy.keras"
    model.save(path)
    stored = json.loads(model.to_json())["config"]["features"]
    assert all("input_name" not in f for f in stored)
    loaded = keras.saving.load_model(path)
    assert [(f.name, f.input_name) for f in loaded.features] == [
        ("capital-gain", "capital-gain"), ("zip-code", "zip-code"),
        ("work.class", "work.class")]
    rows = new_rows(frame)
    expected = model.predict(make_dataset(rows, model.features), verbose=0)
    got = loaded.predict(make_dataset(rows, loaded.features), verbose=0)
    np.testing.assert_allclose(got["clicked"], expected["clicked"], rtol=1e-6)
    # The signature keys are the ones TensorFlow used to sanitize to.
    exported = assert_export_serves(loaded, raw_columns(loaded, rows),
                                    tmp_path / "sm")
    assert served_names(exported) == {"capital-gain": "capital_gain",
                                      "zip-code": "zip_code",
                                      "work.class": "work_class"}


def test_an_input_named_like_a_layer_is_a_config_error():
    frame = pd.DataFrame({"island": ["a", "b"] * 5,
                          "island lookup": np.arange(10.0), "y": np.arange(10.0)})
    task = kmtl.Task("y", "regression").fit(frame)
    features = [f.fit(frame) for f in resolve_features(frame, exclude=["y"])]
    with pytest.raises(kmtl.ConfigError, match=r"\"island_lookup\" is used 2 "
                       r"times.*Input names: \['island', 'island_lookup'\]"):
        kmtl.build_model(features, [task], units=(4,))
