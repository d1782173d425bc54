"""Tests for `kmtl.layers.ImputeMissing`: mean imputation (a 0 after
normalization) with a 0/1 missing indicator per column."""

import keras
import numpy as np
import pytest

from kmtl.layers import ImputeMissing


def test_impute_missing_values():
    x = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 0.0]], "float32")
    out = ImputeMissing()(x)
    assert out.shape == (2, 6)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out),
        [[1, 0, 3, 0, 1, 0], [0, 0, 0, 1, 1, 0]])


def test_impute_missing_fill_value_and_config():
    layer = ImputeMissing(fill_value=-2.5, name="impute")
    out = keras.ops.convert_to_numpy(layer(np.array([[np.nan, 4.0]], "float32")))
    np.testing.assert_array_equal(out, [[-2.5, 4.0, 1.0, 0.0]])
    config = layer.get_config()
    assert config["fill_value"] == -2.5
    clone = ImputeMissing.from_config(config)
    assert clone.get_config() == config
    assert layer.compute_output_shape((None, 3)) == (None, 6)
    assert not layer.trainable_weights


def test_impute_missing_indicators_only_where_allowed():
    layer = ImputeMissing(indicators=[True, False, True])
    x = np.array([[np.nan, np.nan, np.nan], [1.0, np.nan, 2.0]], "float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(x)),
        [[0, 0, 0, 1, 0, 1], [1, 0, 2, 0, 0, 0]])
    clone = ImputeMissing.from_config(layer.get_config())
    assert clone.get_config()["indicators"] == [True, False, True]
    with pytest.raises(ValueError, match="indicators has 3 entries for 2 columns"):
        ImputeMissing(indicators=[True, False, True])(np.zeros((1, 2), "float32"))


def test_impute_missing_without_nan_is_identity_plus_zeros():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(ImputeMissing()(x))
    np.testing.assert_array_equal(out[:, :5], x)
    np.testing.assert_array_equal(out[:, 5:], 0.0)


def test_drop_unused_leaves_out_the_always_zero_indicators():
    x = np.array([[np.nan, np.nan, np.nan], [1.0, np.nan, 2.0]], "float32")
    layer = ImputeMissing(indicators=[True, False, True], drop_unused=True)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(out, [[0, 0, 0, 1, 1], [1, 0, 2, 0, 0]])
    assert layer.compute_output_shape((None, 3)) == (None, 5)
    clone = ImputeMissing.from_config(layer.get_config())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), out)
    none_used = ImputeMissing(indicators=[False, False, False], drop_unused=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(none_used(x)),
                                  [[0, 0, 0], [1, 0, 2]])
    assert none_used.compute_output_shape((None, 3)) == (None, 3)
    # Without `indicators` every column may be missing: nothing is dropped.
    assert ImputeMissing(drop_unused=True)(x).shape == (2, 6)


def test_infinite_values_are_missing_too():
    layer = ImputeMissing(fill_value=0.5)
    x = np.array([[np.inf, 1.0], [-np.inf, np.nan], [2.0, 3.0]], "float32")
    assert keras.ops.convert_to_numpy(layer(x)).tolist() == [
        [0.5, 1.0, 1.0, 0.0], [0.5, 0.5, 1.0, 1.0], [2.0, 3.0, 0.0, 0.0]]


def test_a_served_model_answers_inf_as_a_missing_value(penguins, tmp_path):
    """The export fed +-inf (or 1e39, inf in float32) gives the outputs of a
    missing value, finite, where it used to give NaN."""
    import tensorflow as tf
    from helpers import fit_tasks_and_features

    import kmtl
    from kmtl.tasks import Task

    frame = penguins.dropna(subset=["bill_length_mm", "sex"])
    features, tasks = fit_tasks_and_features(
        frame, [Task("sex", "binary", positive="female")],
        numeric=["bill_length_mm", "bill_depth_mm"])
    model = kmtl.build_model(features, tasks, units=(4,), tower_units=())
    path = kmtl.export_saved_model(model, str(tmp_path / "export"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    depth = tf.constant([18.0, 18.0, 18.0, 18.0])
    length = tf.constant([np.nan, np.inf, -np.inf, 1e39], tf.float32)
    sex = serve(bill_length_mm=length, bill_depth_mm=depth)["sex"].numpy()
    assert np.isfinite(sex).all()
    np.testing.assert_allclose(sex[1:], np.repeat(sex[:1], 3, axis=0), rtol=1e-6)
