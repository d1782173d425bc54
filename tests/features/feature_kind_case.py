"""The shared test of a feature kind: `run_feature_kind_test(name, folder)`.

`tests/features/test_feature_kinds.py` runs it for every name in
`kmtl.features.list_feature_kinds()`, so a newly registered kind is under test
the day it is registered: it fails until it has an `EXAMPLES` entry here, a
hand-made column whose converted values, fitted statistics and preprocessed
output are written out by hand.

What it checks, for one kind:
- the contract: `Feature(name, kind)` returns the registered class with the
  default dtype, every declared dtype is accepted and another refused, `fitted`
  is False before `fit`, `embed` of no feature is empty, and `preprocess` and
  `encode` of an unfitted one a ConfigError;
- config: `get_config` / `from_config`, `kmtl.features.get`, `serialize` /
  `deserialize` agree, before and after `fit`, and JSON holds the config;
- `convert` of a column with missing values, and a value the kind refuses;
- `fit` statistics against hand-computed ones;
- the preprocessing in a tiny model (`encode_features` on this one feature):
  the encoded block and the output by hand, layer names and classes, and a
  `.keras` round trip with the same output;
- no train/serve skew: `encode` of a frame (the training pipeline) equals the
  block the preprocessing layers make from the same raw values (serving),
  value for value, missing values and unseen categories included; and a built
  model gives identical outputs on both paths;
- `kmtl.build_model` with the feature, whose `.keras` round trip keeps the
  predictions and the fitted feature;
- the same feature on a column named `2nd f (é)`: the model input is
  `col_2nd_f_e`, `make_dataset` and a few training steps take the frame with
  its own column name, and the `.keras` round trip and the export serve it.
"""

import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import assert_export_serves
from helpers import assert_family_round_trip

import kmtl
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import FEATURE_KINDS
from kmtl.features import Feature
from kmtl.models.feature_encoder import encode_features
from kmtl.models.feature_encoder import feature_inputs
from kmtl.tasks import Task

SQRT_6 = 6.0 ** 0.5  # the standard deviation of the numeric example


@dataclasses.dataclass
class FeatureKindExample:
    """A hand-made case of one feature kind, a feature named `f`.

    Attributes:
        declare: keyword arguments of `Feature("f", kind, ...)`.
        column: the training column, with missing values.
        converted: `convert` of it (a NaN equals a NaN).
        fitted: `{attribute: value}` that `fit` must set.
        serving: raw model inputs `(rows, 1)`, as a client sends them.
        options: `build_model` preprocessing options.
        encoded: the encoded block of `serving`, `(rows, width)`.
        output: the preprocessed `serving`, `(rows, d)`; or `(layer name,
            values)` for a kind whose output passes trainable layers: the
            output of the named layer before them.
        layers: `{layer name: layer class name}` of the preprocessing.
        refused: `(column, message regex)`: a column `convert` refuses.
    """

    declare: dict
    column: list
    converted: np.ndarray
    fitted: dict
    serving: np.ndarray
    options: dict
    encoded: list
    output: list
    layers: dict
    refused: tuple


EXAMPLES = {
    "numeric": FeatureKindExample(
        declare={},
        column=[1.0, np.nan, 4.0, 7.0, None],
        converted=np.array([1.0, np.nan, 4.0, 7.0, np.nan], "float32"),
        # Mean of 1, 4, 7 = 4; population variance (9 + 0 + 9) / 3 = 6.
        fitted={"mean": 4.0, "variance": 6.0, "missing": True},
        serving=np.array([[1.0], [np.nan], [4.0], [7.0]], "float32"),
        options={},
        # (x - 4) / sqrt(6); a NaN stays NaN in the block.
        encoded=[[-3 / SQRT_6], [np.nan], [0.0], [3 / SQRT_6]],
        # (x - 4) / sqrt(6), a NaN is 0 (the mean), then the missing indicator.
        output=[[-3 / SQRT_6, 0.0], [0.0, 1.0], [0.0, 0.0], [3 / SQRT_6, 0.0]],
        layers={"numeric_normalization": "Normalization",
                "numeric_impute": "ImputeMissing"},
        refused=([1.0, "n/a"], r"Feature 'f' is numeric but row 1 holds 'n/a'"),
    ),
    "categorical": FeatureKindExample(
        declare={"dtype": "string"},
        column=["b", "a", None, "b", "c"],
        converted=np.array([b"b", b"a", b"", b"b", b"c"], object),
        # Counts b 2, the rest 1: most frequent first, ties in sorted order
        # ("" < "a" < "c"); the missing value is the category "".
        fitted={"vocabulary": ["b", "", "a", "c"]},
        serving=np.array([["b"], ["a"], [""], ["zebra"]], object),
        options={"categorical_encoding": "one_hot"},
        # The lookup index: 0 is out of vocabulary (zebra), then b, "", a, c.
        encoded=[[1], [3], [2], [0]],
        # One-hot of the index.
        output=[[0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0],
                [1, 0, 0, 0, 0]],
        layers={"f_lookup": "StringLookup"},
        refused=None,
    ),
    "text": FeatureKindExample(
        declare={"min_frequency": 1},
        column=["Red dress!", "red shoes", None, "dress, dress", "blue"],
        converted=np.array([b"Red dress!", b"red shoes", b"", b"dress, dress",
                            b"blue"], object),
        # Lower case without punctuation; the missing text is "" (no word).
        # Document frequencies: dress 2, red 2, blue 1, shoes 1 (most first,
        # ties sorted). idf = ln((1 + 5) / (1 + df)) + 1 over the 5 texts:
        # padding 0, out-of-vocabulary (df 0) 1 + ln 6, dress and red 1 + ln 2,
        # blue and shoes 1 + ln 3. Longest text: 2 words.
        fitted={"vocabulary": ["dress", "red", "blue", "shoes"],
                "sequence_length": 2,
                "idf": pytest.approx([0.0, 1 + np.log(6), 1 + np.log(2),
                                      1 + np.log(2), 1 + np.log(3),
                                      1 + np.log(3)], abs=1e-6)},
        serving=np.array([["Red dress"], [""], ["green red"],
                          ["dress dress"]], object),
        options={},
        # Indices: 0 padding, 1 out-of-vocabulary (green), dress 2, red 3.
        encoded=[[3, 2], [0, 0], [1, 3], [2, 2]],
        # The TF-IDF bag (1 + ln count) * idf at unit L2 norm: red and dress
        # weigh alike; green (1 + ln 6) and red (1 + ln 2); dress alone is 1.
        output=("text_f_bag", [
            [0, 0, 0.5 ** 0.5, 0.5 ** 0.5, 0, 0],
            [0] * 6,
            np.array([0, 1 + np.log(6), 0, 1 + np.log(2), 0, 0]) / np.hypot(
                1 + np.log(6), 1 + np.log(2)),
            [0, 0, 1, 0, 0, 0]]),
        layers={"f_vectorize": "TextVectorization", "text_f_bag": "TokenBag",
                "text_f_encoder": "Dense"},
        refused=([1.5, "text"], r"Text feature 'f' holds values that are not "
                                r"text, such as 1.5 \(float\) in row 0"),
    ),
}


def example_of(name):
    example = EXAMPLES.get(name)
    assert example is not None, (
        f"Feature kind {name!r} is registered but has no example: add a "
        f"FeatureKindExample for it to EXAMPLES in "
        f"tests/features/feature_kind_case.py.")
    return example


def declared_feature(name, example):
    return Feature("f", name, **example.declare)


def example_frame(example):
    return pd.DataFrame({"f": pd.Series(example.column, dtype=object),
                         "y": np.arange(len(example.column), dtype="float64")})


# === The parts ===


def check_contract(name):
    example = example_of(name)
    cls = FEATURE_KINDS.get_class(name)
    assert cls.dtypes, "a kind declares the raw dtypes it takes"
    feature = Feature("f", name)
    assert type(feature) is cls and feature.kind == name
    assert feature.dtype == cls.dtypes[0]
    for dtype in cls.dtypes:
        assert Feature("f", name, dtype).dtype == dtype
    with pytest.raises(ConfigError, match=f"dtype 'complex64' does not fit kind "
                                          f"'{name}'"):
        Feature("f", name, "complex64")
    feature = declared_feature(name, example)
    assert not feature.fitted
    assert cls.embed([], None, **example.options) == []
    assert cls.encoded_key() == f"encoded:{name}"
    inputs = feature_inputs([feature])
    with pytest.raises(ConfigError, match="must be fitted"):
        cls.preprocess([feature], inputs)
    with pytest.raises(ConfigError, match="must be fitted"):
        cls.encode([feature], example_frame(example))


def check_config_round_trip(name):
    example = example_of(name)
    unfitted = declared_feature(name, example)
    fitted = declared_feature(name, example).fit(example_frame(example))
    for feature in (unfitted, fitted):
        config = feature.get_config()
        assert config["kind"] == name and config["name"] == "f"
        assert_family_round_trip(feature, kmtl.features, Feature,
                                 example.fitted if feature is fitted else ())


def check_convert(name):
    example = example_of(name)
    feature = declared_feature(name, example)
    converted = feature.convert(example_frame(example))
    assert converted.shape == (len(example.column),)
    assert converted.dtype == example.converted.dtype
    np.testing.assert_array_equal(converted, example.converted)
    with pytest.raises(DataError, match="Feature 'f' not found"):
        feature.convert(pd.DataFrame({"g": [1.0]}))
    if example.refused is not None:
        column, message = example.refused
        with pytest.raises(DataError, match=message):
            feature.convert(pd.DataFrame({"f": pd.Series(column, dtype=object)}))


def check_fit(name):
    example = example_of(name)
    feature = declared_feature(name, example).fit(example_frame(example))
    assert feature.fitted
    for attribute, value in example.fitted.items():
        got = getattr(feature, attribute)
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-6), attribute
        else:
            assert got == value, f"fit: {attribute}={got!r}, expected {value!r}"


def check_preprocessing(name, folder):
    """The tiny model `inputs -> encode_features([feature])`: output by hand,
    layers by name, and a `.keras` round trip."""
    example = example_of(name)
    feature = declared_feature(name, example).fit(example_frame(example))
    inputs = feature_inputs([feature])
    blocks, output = encode_features([feature], inputs, **example.options)
    key = type(feature).encoded_key()
    assert list(blocks) == [key]
    block = keras.ops.convert_to_numpy(
        keras.Model(inputs, blocks[key])({"f": example.serving}))
    np.testing.assert_allclose(block, example.encoded, rtol=1e-6, atol=1e-7)
    model = keras.Model(inputs, output)
    got = keras.ops.convert_to_numpy(model({"f": example.serving}))
    if isinstance(example.output, tuple):
        layer_name, expected = example.output
        part = keras.Model(inputs, model.get_layer(layer_name).output)
        part = keras.ops.convert_to_numpy(part({"f": example.serving}))
        np.testing.assert_allclose(part, np.array(expected, "float64"), rtol=1e-6,
                                   atol=1e-7)
    else:
        np.testing.assert_allclose(got, example.output, rtol=1e-6, atol=1e-7)
    for layer_name, class_name in example.layers.items():
        assert type(model.get_layer(layer_name)).__name__ == class_name, layer_name
    path = folder / f"{name}_preprocessing.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    again = keras.ops.convert_to_numpy(loaded({"f": example.serving}))
    np.testing.assert_array_equal(again, got)


def serving_frame(example):
    """The serving rows as a table: what `kmtl predict` reads."""
    values = example.serving[:, 0]
    if values.dtype == object:
        values = [v.decode() if isinstance(v, bytes) else v for v in values]
    return pd.DataFrame({"f": pd.Series(values, dtype=object)})


def check_no_skew(name):
    """The training pipeline's encoding (`Feature.encode`, NumPy) and the
    serving model's preprocessing layers give the same block for the same
    raw values, value for value (missing values and unseen categories
    included); a built model's outputs are identical on both paths."""
    example = example_of(name)
    frame = example_frame(example)
    feature = declared_feature(name, example).fit(frame)
    cls = type(feature)
    served = serving_frame(example)
    inputs = feature_inputs([feature])
    layers = keras.Model(inputs, cls.preprocess([feature], inputs))
    from_layers = keras.ops.convert_to_numpy(layers({"f": example.serving}))
    from_frame = cls.encode([feature], served)
    assert from_frame.dtype == from_layers.dtype
    np.testing.assert_array_equal(from_frame, from_layers)
    task = Task("y", "regression").fit(frame)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model([feature], [task], "shared_bottom", units=(4,),
                             tower_units=(), **example.options)
    raw = model.predict(make_dataset(served, [feature], encoded=False), verbose=0)
    encoded = model.predict(make_dataset(served, [feature]), verbose=0)
    np.testing.assert_array_equal(encoded["y"], raw["y"])


def check_model(name, folder):
    """`kmtl.build_model` with the feature: a `.keras` round trip keeps the
    predictions and `model.features` (the fitted feature)."""
    example = example_of(name)
    frame = example_frame(example)
    feature = declared_feature(name, example).fit(frame)
    task = Task("y", "regression").fit(frame)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model([feature], [task], "shared_bottom", units=(4,),
                             tower_units=(), **example.options)
    assert [f.get_config() for f in model.features] == [feature.get_config()]
    predictions = keras.ops.convert_to_numpy(model({"f": example.serving})["y"])
    path = folder / f"{name}_model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [f.get_config() for f in loaded.features] == [feature.get_config()]
    assert type(loaded.features[0]) is type(feature)
    again = keras.ops.convert_to_numpy(loaded({"f": example.serving})["y"])
    np.testing.assert_array_equal(again, predictions)


ODD_COLUMN = "2nd f (é)"
"""A column name Keras and TensorFlow refuse as it is; its input is
`col_2nd_f_e`."""


def check_column_name(name, folder):
    """The feature on the column `2nd f (é)`: inputs named `col_2nd_f_e`, a few
    training steps on the frame with its own column name, a `.keras` round
    trip and an export that serves it."""
    example = example_of(name)
    frame = example_frame(example).rename(columns={"f": ODD_COLUMN})
    feature = Feature(ODD_COLUMN, name, **example.declare).fit(frame)
    assert feature.input_name == "col_2nd_f_e"
    task = Task("y", "regression").fit(frame)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model([feature], [task], "shared_bottom", units=(4,),
                             tower_units=(), **example.options)
    assert list(model.input) == ["col_2nd_f_e"]
    model.compile(optimizer="adam")
    history = model.fit(make_dataset(frame, [feature], [task], 2), epochs=1,
                        verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    path = folder / f"{name}_odd_name.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [(f.name, f.input_name) for f in loaded.features] == [
        (ODD_COLUMN, "col_2nd_f_e")]
    expected = model.predict(make_dataset(frame, [feature]), verbose=0)["y"]
    again = loaded.predict(make_dataset(frame, loaded.features), verbose=0)["y"]
    np.testing.assert_array_equal(again, expected)
    assert_export_serves(loaded, {ODD_COLUMN: example.serving[:, 0]},
                         folder / f"{name}_odd_name_export")


def run_feature_kind_test(name, folder):
    """Every check above for the feature kind `name`; `folder` takes `.keras`
    files and exports (pytest's `tmp_path`)."""
    check_contract(name)
    check_config_round_trip(name)
    check_convert(name)
    check_fit(name)
    check_preprocessing(name, folder)
    check_no_skew(name)
    check_model(name, folder)
    check_column_name(name, folder)
