"""The `serving_default` signature checks its inputs by name: a wrong shape or
batch size fails inside the served graph (so TF Serving's clients get it too)
with the signature input, its column, the expected and the received shape;
`check_serving_inputs` checks dtypes by name in Python, with TF Serving's JSON
conversion rules; and the checks leave the outputs bit-identical."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import kmtl
from kmtl.data import make_dataset
from kmtl.errors import DataError
from kmtl.features import resolve_features
from kmtl.models import export as export_module
from kmtl.models.export import check_serving_inputs
from kmtl.models.export import read_served_inputs

# A float column under another signature name, a string and an int64 one.
COLUMNS = {"bill length (mm)": "bill_length_mm", "island": "island",
           "code": "code"}


def frame(rows=64, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "bill length (mm)": rng.normal(40, 5, rows),
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], rows),
        "code": rng.integers(0, 4, rows),
    })
    table["clicked"] = (table["bill length (mm)"] > 40).astype(int)
    return table


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    table = frame()
    task = kmtl.Task("clicked", "binary")
    task.fit(table)
    features = resolve_features(table, numeric=["bill length (mm)"],
                                categorical=["island", "code"])
    for feature in features:
        feature.fit(table)
    model = kmtl.build_model(features, [task], "shared_bottom",
                             units=[8], tower_units=[4])
    model.compile(optimizer="adam")
    model.fit(make_dataset(table, features, [task], 32), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return kmtl.export_saved_model(model, tmp_path_factory.mktemp("srv") / "m")


@pytest.fixture(scope="module")
def signature(exported):
    return tf.saved_model.load(exported).signatures["serving_default"]


def good(rows=3):
    return {"bill_length_mm": tf.constant([39.1, 45.0, np.nan][:rows], tf.float32),
            "island": tf.constant(["Biscoe", "Dream", "Torgersen"][:rows]),
            "code": tf.constant([0, 3, 1][:rows], tf.int64)}


def test_the_export_lists_the_renamed_column(exported):
    assert read_served_inputs(exported) == COLUMNS


# === Checks in the served graph ===


@pytest.mark.parametrize("key, value, received", [
    ("bill_length_mm", tf.constant([[39.1, 1.0]] * 3), r"\[3 2\]"),
    ("bill_length_mm", tf.constant(39.1), r"\[\]"),
    ("island", tf.constant([["Biscoe"]] * 3), r"\[3 1\]"),
    ("code", tf.constant([[[0]]] * 3, tf.int64), r"\[3 1 1\]"),
])
def test_a_wrong_shape_fails_naming_the_input_and_column(signature, key, value,
                                                         received):
    """Before: a `(batch, 2)` or scalar input failed deep in the model
    ("ConcatOp : Ranks of all input tensors should match")."""
    column = {v: k for k, v in COLUMNS.items()}[key]
    inputs = {**good(), key: value}
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        signature(**inputs)
    message = str(error.value)
    assert re.search(
        rf"serving_default input `{key}` \(column `{re.escape(column)}`\) must "
        rf"have shape \(batch,\), one row per example; received shape\] "
        rf"{received}", message), message
    assert "ConcatOp" not in message


def test_different_batch_sizes_fail_naming_both_inputs(signature):
    inputs = {**good(), "island": tf.constant(["Biscoe"])}
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        signature(**inputs)
    message = str(error.value)
    assert "serving_default input `island` (column `island`) and input " in message
    assert "must have the same batch size (rows); received] [1] [and] [3]" in message


def test_a_tf1_session_runs_the_checks_too(exported):
    """`saved_model_cli run` feeds the signature in a TF1 session, the way TF
    Serving runs it (C++ `Session::Run`): the batch check fires there too."""
    cli = Path(sys.executable).with_name("saved_model_cli")
    if not cli.is_file():
        pytest.skip(f"saved_model_cli is not installed next to {sys.executable}")
    exprs = ('island=[b"Biscoe"];bill_length_mm=[40.0,46.5];code=[0,1]')
    result = subprocess.run(
        [str(cli), "run", "--dir", exported, "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", exprs],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode != 0
    assert ("serving_default input `island` (column `island`) and input "
            "`bill_length_mm` (column `bill length (mm)`) must have the same "
            "batch size (rows); received] [1] [and] [2]") in result.stderr


def test_a_good_batch_passes_the_checks(model, signature):
    outputs = signature(**good())
    expected = model.predict(
        {"bill_length_mm": np.array([[39.1], [45.0], [np.nan]], "float32"),
         "island": tf.constant([["Biscoe"], ["Dream"], ["Torgersen"]]),
         "code": np.array([[0], [3], [1]], "int64")}, verbose=0)
    np.testing.assert_allclose(outputs["clicked"].numpy(), expected["clicked"],
                               rtol=1e-6, atol=1e-7)


def test_the_checks_leave_the_outputs_bit_identical(model, exported, signature,
                                                    tmp_path, monkeypatch):
    """The same model exported without the checks gives the same bits, for a
    batch of one and of many."""
    monkeypatch.setattr(export_module, "serving_input_checks",
                        lambda inputs, specs, columns=None: inputs)
    plain = tf.saved_model.load(kmtl.export_saved_model(
        model, tmp_path / "plain")).signatures["serving_default"]
    rng = np.random.default_rng(1)
    rows = 500
    inputs = {"bill_length_mm": tf.constant(rng.normal(40, 5, rows), tf.float32),
              "island": tf.constant(rng.choice(["Biscoe", "Dream", "x"], rows)),
              "code": tf.constant(rng.integers(0, 6, rows), tf.int64)}
    for batch in (inputs, {k: v[:1] for k, v in inputs.items()}):
        checked = signature(**batch)["clicked"].numpy()
        unchecked = plain(**batch)["clicked"].numpy()
        assert checked.tobytes() == unchecked.tobytes()


# === Dtypes: TensorFlow names them by position; check_serving_inputs by name ===


def test_tensorflow_itself_names_a_wrong_dtype_by_position_only(signature):
    """Documents TensorFlow 2.21's behaviour, which the signature cannot change
    (the dtype is checked before the graph runs): hence check_serving_inputs."""
    inputs = {**good(), "bill_length_mm": tf.constant(["39.1", "45", "1"])}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"input #\d+\(zero-based\) was expected to be a "
                             r"float tensor but is a string tensor"):
        signature(**inputs)
    # With any NumPy argument TensorFlow compares every argument with the
    # signature first: a wrong shape is then a TypeError naming the spec.
    inputs = {**good(), "bill_length_mm": np.ones((3, 2), "float32")}
    with pytest.raises(TypeError, match=r"Can not cast TensorSpec\(shape=\(3, 2\), "
                                        r"dtype=tf.float32, name='bill_length_mm'\)"):
        signature(**inputs)


@pytest.mark.parametrize("key, value, pattern", [
    ("bill_length_mm", np.array(["39.1", "45", "1"]),
     r"input `bill_length_mm` \(column `bill length \(mm\)`\) expects numbers "
     r"\(float32\); received strings \(first value '39.1'\)"),
    ("island", np.array([1.0, 2.0, 3.0]),
     r"input `island` \(column `island`\) expects strings; received floats"),
    ("code", np.array([0.5, 1.0, 2.0]),
     r"input `code` \(column `code`\) expects int64 codes \(integers\); received "
     r"floats that are not all whole numbers"),
    ("bill_length_mm", np.array([True, False, True]),
     r"`bill_length_mm`.* expects numbers \(float32\); received booleans"),
    ("bill_length_mm", np.array([1, 2**24 + 1, 3], "int64"),
     r"`bill_length_mm`.* cannot hold 16777217 as float32 without loss"),
    ("bill_length_mm", np.array([1.0, 1e39, 3.0]),
     r"`bill_length_mm`.* cannot hold 1e\+39 as float32 without loss"),
    ("island", np.array(["Biscoe", None, "Dream"], dtype=object),
     r"`island`.* expects strings; received object values"),
    ("bill_length_mm", np.array([[39.1, 1.0]] * 3),
     r"input `bill_length_mm` \(column `bill length \(mm\)`\) must have shape "
     r"\(batch,\), one row per example; received shape \(3, 2\)"),
    ("bill_length_mm", np.float32(39.1),
     r"`bill_length_mm`.* must have shape \(batch,\).*received shape \(\)"),
    ("island", np.array(["Biscoe"]),
     r"same batch size \(rows\); received `bill_length_mm` \(column "
     r"`bill length \(mm\)`\): 3; `code` \(column `code`\): 3; `island` "
     r"\(column `island`\): 1\.$"),
])
def test_check_serving_inputs_names_a_bad_input(signature, exported, key, value,
                                                pattern):
    inputs = {**good(), key: value}
    with pytest.raises(DataError, match=pattern):
        check_serving_inputs(signature, inputs, read_served_inputs(exported))


def test_check_serving_inputs_names_missing_and_unknown_inputs(signature,
                                                               exported):
    inputs = {k: v for k, v in good().items() if k != "bill_length_mm"}
    inputs["bill length (mm)"] = [39.1, 45.0, 1.0]
    with pytest.raises(DataError) as error:
        check_serving_inputs(signature, inputs, read_served_inputs(exported))
    assert str(error.value).startswith(
        "missing serving_default input `bill_length_mm` (column `bill length "
        "(mm)`); serving_default has no input `bill length (mm)`. Send exactly "
        "the inputs ['bill_length_mm', 'code', 'island']")


def test_check_serving_inputs_converts_as_tf_serving_converts_json(signature):
    """Python numbers and lists, int64 for float32, whole floats for int64 codes
    and bytes for strings are converted exactly; the outputs equal those of the
    exact dtypes."""
    expected = signature(**good())["clicked"].numpy()
    loose = {"bill_length_mm": [39.1, 45, float("nan")],
             "island": np.array([b"Biscoe", b"Dream", b"Torgersen"]),
             "code": np.array([0.0, 3.0, 1.0])}
    inputs = check_serving_inputs(signature, loose)
    assert {k: v.dtype for k, v in inputs.items()} == {
        "bill_length_mm": tf.float32, "island": tf.string, "code": tf.int64}
    assert signature(**inputs)["clicked"].numpy().tobytes() == expected.tobytes()
    ints = check_serving_inputs(signature, {**good(), "bill_length_mm":
                                            np.array([39, 45, 2**24], "int64")})
    np.testing.assert_array_equal(ints["bill_length_mm"].numpy(),
                                  np.array([39.0, 45.0, 16777216.0], "float32"))


def test_an_image_input_is_checked_with_its_trailing_shape(tmp_path):
    """An encoder input of shape `(batch, 2, 3)`: the trailing dimensions are
    checked too; `None` in the spec takes any size."""
    specs = {"pixels": tf.TensorSpec((None, 2, 3), tf.float32, name="pixels"),
             "tokens": tf.TensorSpec((None, None), tf.int64, name="tokens")}

    class Served(tf.Module):
        @tf.function(input_signature=[specs])
        def serve(self, inputs):
            inputs = export_module.serving_input_checks(
                inputs, specs, {"pixels": "photo"})
            return {"sum": tf.reduce_sum(inputs["pixels"], [1, 2])
                    + tf.cast(tf.reduce_sum(inputs["tokens"], 1), tf.float32)}

    module = Served()
    tf.saved_model.save(module, str(tmp_path / "m"),
                        signatures={"serving_default": module.serve})
    signature = tf.saved_model.load(str(tmp_path / "m")).signatures[
        "serving_default"]
    # Tensors, not arrays: an array makes TensorFlow compare every argument
    # with the signature (a TypeError) before the graph runs.
    ones = tf.ones((4, 2, 3))
    tokens = tf.ones((4, 5), tf.int64)
    np.testing.assert_array_equal(
        signature(pixels=ones, tokens=tokens)["sum"].numpy(), [11.0] * 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            "serving_default input `pixels` (column `photo`) must have shape "
            "(batch, 2, 3), one row per example; received shape] [4 3 2]")):
        signature(pixels=tf.ones((4, 3, 2)), tokens=tokens)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            "serving_default input `tokens` (column `tokens`) must have shape "
            "(batch, ?), one row per example; received shape] [4]")):
        signature(pixels=ones, tokens=tf.ones(4, tf.int64))
