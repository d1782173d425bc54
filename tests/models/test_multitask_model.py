"""`MultiTaskModel` itself: the fitted features it carries and its public helpers
(task losses, labelled tasks) that the measures use."""

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

import kmtl
from kmtl.data import make_dataset
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.models import MultiTaskModel


def _wired(features=None):
    inputs = {"size": keras.Input((1,), name="size"),
              "color": keras.Input((1,), dtype="string", name="color")}
    hidden = keras.layers.Dense(2, name="hidden")(inputs["size"])
    outputs = {"big": keras.layers.Dense(1, activation="sigmoid", name="big")(hidden),
               "price": keras.layers.Dense(1, name="price")(hidden)}
    tasks = [kmtl.Task("big", "binary"), kmtl.Task("price", "regression")]
    return MultiTaskModel(inputs, outputs, tasks=tasks, features=features)


def test_fitted_features_survive_a_keras_round_trip(tmp_path):
    size = Feature("size", "numeric", mean=2.5, variance=4.0, missing=True)
    color = Feature("color", "categorical", vocabulary=["red", "blue"])
    model = _wired([size, color])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [f.get_config() for f in loaded.features] == [size.get_config(),
                                                         color.get_config()]


def test_features_config_dicts_are_accepted():
    model = _wired([{"name": "size", "kind": "numeric", "mean": 1.0,
                     "variance": 1.0}])
    assert model.features[0].mean == 1.0


def test_without_fitted_features_they_are_derived_from_the_inputs(tmp_path):
    model = _wired()
    path = tmp_path / "model.keras"
    model.save(path)
    for m in (model, keras.models.load_model(path)):
        described = sorted((f.name, f.kind, f.dtype) for f in m.features)
        assert described == [("color", "categorical", "string"),
                             ("size", "numeric", "float32")]
        size = next(f for f in m.features if f.name == "size")
        assert size.mean is None  # no statistics: they were never given
        assert "features" not in m.get_config()


def test_labelled_tasks_and_stacked_losses_follow_task_names():
    model = _wired()
    labelled = model.labelled_tasks({"big": ops.convert_to_tensor([0.0, 0.0]),
                                     "price": ops.convert_to_tensor([0.0, 1.0])})
    np.testing.assert_array_equal(ops.convert_to_numpy(labelled), [False, True])
    # A task without a sample weight counts as labelled.
    labelled = model.labelled_tasks({"big": ops.convert_to_tensor([0.0])})
    np.testing.assert_array_equal(ops.convert_to_numpy(labelled), [False, True])
    stacked = model.stack_task_losses({"price": 3.0, "big": 1.0})
    np.testing.assert_array_equal(ops.convert_to_numpy(stacked), [1.0, 3.0])



def test_a_raw_input_of_the_wrong_kind_names_the_input_and_its_dtype():
    """Integer codes sent to a categorical trained on strings would all be
    out-of-vocabulary; text sent to a numeric feature fails deep in the graph.
    Both are an error naming the input, its column and the dtype it takes."""
    frame = pd.DataFrame({"home island": ["a", "b", "a", "c"] * 5,
                          "x": [1.0, 2.0, 3.0, 4.0] * 5, "t": [0, 1, 0, 1] * 5})
    features = [f.fit(frame) for f in kmtl.features.resolve_features(
        frame, exclude=["t"])]
    model = kmtl.build_model(features, [kmtl.Task("t", "binary").fit(frame)])
    x = np.array([[1.0], [2.0]], "float32")
    codes = {"home_island": np.array([[1], [2]]), "x": x}
    message = (r"Input 'home_island' \(column 'home island'\) is a categorical "
               r"feature of dtype string, as in training, but received number "
               r"values of dtype int64. Send the categories as strings")
    with pytest.raises(DataError, match=message):
        model(codes)
    with pytest.raises(DataError, match=message):
        model.predict(codes, verbose=0)
    with pytest.raises(DataError, match=r"Input 'x' is a numeric feature of dtype "
                                        r"float32, .* received text values"):
        model({"home_island": np.array([["a"], ["b"]], object),
               "x": np.array([["1"], ["2"]])})
    names = {"home_island": np.array([["a"], ["zebra"]], object), "x": x}
    assert model(names)["t"].shape == (2, 1)


def test_calling_the_model_on_an_encoded_batch_runs_the_encoded_path():
    frame = pd.DataFrame({"c": ["a", "b", "a", "zebra"] * 4,
                          "x": [1.0, np.nan, 3.0, 4.0] * 4, "t": [0, 1, 0, 1] * 4})
    features = [f.fit(frame.iloc[:8]) for f in kmtl.features.resolve_features(
        frame, exclude=["t"])]
    model = kmtl.build_model(features, [kmtl.Task("t", "binary").fit(frame)])
    encoded = next(iter(make_dataset(frame, features, batch_size=16)))
    raw = next(iter(make_dataset(frame, features, batch_size=16,
                                      encoded=False)))
    np.testing.assert_array_equal(ops.convert_to_numpy(model(encoded)["t"]),
                                  ops.convert_to_numpy(model(raw)["t"]))
