"""Every registered feature kind through the shared test
(`feature_kind_case.py`), and what the kinds do together: the order of their
blocks, shared embedding tables, integer codes, declaring features from a
table."""

import keras
import numpy as np
import pandas as pd
import pytest
from feature_kind_case import EXAMPLES
from feature_kind_case import run_feature_kind_test
from helpers import fit_tasks_and_features

import kmtl
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import CategoricalFeature
from kmtl.features import Feature
from kmtl.features import NumericFeature
from kmtl.features import infer_kind
from kmtl.features import resolve_features
from kmtl.models.feature_encoder import encode_features
from kmtl.models.feature_encoder import feature_inputs
from kmtl.tasks import Task


@pytest.mark.parametrize("name", kmtl.features.list_feature_kinds())
def test_feature_kind(name, tmp_path):
    run_feature_kind_test(name, tmp_path)


def test_the_built_in_kinds_are_registered():
    assert kmtl.features.list_feature_kinds() == ["categorical", "numeric", "text"]
    assert set(EXAMPLES) == set(kmtl.features.list_feature_kinds())


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ConfigError, match=r"unknown kind 'image'. Use one of "
                                          r"\('categorical', 'numeric', 'text'\)"):
        Feature("x", "image")


def test_a_kind_class_refuses_another_kind():
    with pytest.raises(ConfigError, match="a NumericFeature has kind 'numeric'"):
        NumericFeature("x", "categorical")


def test_get_needs_name_and_kind():
    with pytest.raises(ConfigError, match="missing the key 'kind'"):
        kmtl.features.get({"name": "x"})
    with pytest.raises(ConfigError, match="Feature 'x'"):
        kmtl.features.get({"name": "x", "kind": "numeric", "vocabulary": ["a"]})


def _encoded(features, frame, **options):
    inputs = feature_inputs(features)
    model = keras.Model(inputs, encode_features(features, inputs, **options)[1])
    raw = {f.name: np.asarray(frame[f.name].tolist(),
                              object if f.dtype == "string" else f.dtype)[:, None]
           for f in features}
    return model, keras.ops.convert_to_numpy(model(raw))


def test_numeric_block_comes_first_whatever_the_feature_order():
    frame = pd.DataFrame({"c": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]})
    features = [Feature("c", "categorical").fit(frame),
                Feature("x", "numeric").fit(frame)]
    model, out = _encoded(features, frame, categorical_encoding="one_hot")
    # x: mean 2, variance 2/3 -> (x - 2) / sqrt(2/3); no missing indicator
    # (no NaN in training).
    z = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.sqrt(2 / 3)
    np.testing.assert_allclose(out[:, 0], z, rtol=1e-6)
    # c: vocabulary ["a", "b"], index 0 out of vocabulary.
    np.testing.assert_array_equal(out[:, 1:], [[0, 1, 0], [0, 0, 1], [0, 1, 0]])
    assert model.get_layer("encoded_features").__class__ is keras.layers.Concatenate


def test_categoricals_with_one_embedding_size_share_one_table():
    frame = pd.DataFrame({"c": ["a", "b", "c", "d", "a"],
                          "d": ["x", "y", "z", "x", "x"]})
    features = [Feature(n, "categorical").fit(frame) for n in "cd"]
    # 4 + 1 and 3 + 1 indices: ceil(6 * 5 ** 0.25) = ceil(6 * 4 ** 0.25) = 9.
    assert [f.embedding_dim for f in features] == [9, 9]
    model, out = _encoded(features, frame)
    layer = model.get_layer("embedding_9")
    table = keras.ops.convert_to_numpy(layer.embeddings)
    assert table.shape == (5 + 4, 9)
    # c's vocabulary ["a", "b", "c", "d"] -> indices 1..4; d's ["x", "y", "z"]
    # -> 1..3, after c's 5 rows.
    c_index = [1, 2, 3, 4, 1]
    d_index = [5 + 1, 5 + 2, 5 + 3, 5 + 1, 5 + 1]
    np.testing.assert_array_equal(out, np.concatenate([table[c_index],
                                                       table[d_index]], axis=1))


def test_embedding_dim_overrides_the_rule_of_thumb():
    frame = pd.DataFrame({"c": ["a", "b"]})
    model, out = _encoded([Feature("c", "categorical").fit(frame)], frame,
                          embedding_dim=3)
    assert out.shape == (2, 3)
    assert model.get_layer("embedding_3").output_dim == 3


def test_unknown_categorical_encoding_is_refused_even_without_categoricals():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    features = [Feature("x", "numeric").fit(frame)]
    with pytest.raises(ConfigError, match=r"categorical_encoding: unknown value "
                                          r"'hashing'"):
        encode_features(features, feature_inputs(features),
                        categorical_encoding="hashing")


def test_integer_codes_keep_integers():
    frame = pd.DataFrame({"k": [3.0, np.nan, 12.0, 3.0]})
    feature = Feature("k", "categorical", "int64")
    assert type(feature) is CategoricalFeature
    np.testing.assert_array_equal(feature.convert(frame), [3, -1, 12, 3])
    assert feature.fit(frame).vocabulary == [3, -1, 12]
    assert all(type(v) is int for v in feature.vocabulary)
    model, out = _encoded([feature], frame.fillna(-1).astype("int64"),
                          categorical_encoding="one_hot")
    assert model.get_layer("k_lookup").__class__ is keras.layers.IntegerLookup
    # vocabulary [3, -1, 12] -> indices 1, 2, 3.
    np.testing.assert_array_equal(out.argmax(axis=1), [1, 2, 3, 1])
    with pytest.raises(DataError, match="has dtype int64 but holds non-integer "
                                        "values such as 2.5"):
        feature.convert(pd.DataFrame({"k": [1.0, 2.5]}))
    with pytest.raises(DataError, match="values such as 'many'"):
        feature.convert(pd.DataFrame({"k": [np.nan, 1, "many"]}))


def test_constant_numeric_column_gets_variance_one():
    feature = Feature("x", "numeric").fit(pd.DataFrame({"x": [2.0, 2.0]}))
    assert (feature.mean, feature.variance, feature.missing) == (2.0, 1.0, False)


@pytest.mark.parametrize("values, expected", [
    ([True, False], ("categorical", "int64")),
    ([1, 2], ("numeric", "float32")),
    ([1.5, np.nan], ("numeric", "float32")),
    (["a", None], ("categorical", "string")),
])
def test_infer_kind(values, expected):
    assert infer_kind(pd.Series(values)) == expected


def test_resolve_features_declared_and_inferred():
    frame = pd.DataFrame({"c": ["a", "b"], "n": [1, 2], "x": [0.5, 1.5],
                          "y": [0, 1]})
    declared = resolve_features(frame, numeric=["x"], categorical=["n", "c"])
    assert [(f.name, f.kind, f.dtype) for f in declared] == [
        ("x", "numeric", "float32"), ("n", "categorical", "int64"),
        ("c", "categorical", "string")]
    inferred = resolve_features(frame, exclude=["y"])
    assert [(f.name, type(f)) for f in inferred] == [
        ("c", CategoricalFeature), ("n", NumericFeature), ("x", NumericFeature)]
    with pytest.raises(ConfigError, match=r"\['y'\] are declared as features"):
        resolve_features(frame, numeric=["y"], exclude=["y"])
    with pytest.raises(DataError, match=r"\['z'\] not found"):
        resolve_features(frame, numeric=["z"])


def test_a_nan_where_training_had_none_is_mean_imputation(tiny_frame):
    """x1 had a NaN in training (its indicator is learned), x2 had none: a NaN
    in x2 at prediction time gives exactly the prediction at x2's training
    mean, while a NaN in x1 differs from x1's mean (the indicator weighs in)."""
    keras.utils.set_random_seed(0)
    features, tasks = fit_tasks_and_features(
        tiny_frame, [Task("price", "regression")], ["x1", "x2"], [])
    assert [(f.name, f.missing) for f in features] == [("x1", True), ("x2", False)]
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,))
    means = {f.name: np.float32(f.mean) for f in features}

    def predict(x1, x2):
        return model.predict({"x1": np.array([x1], "float32"),
                              "x2": np.array([x2], "float32")}, verbose=0)["price"]

    np.testing.assert_array_equal(predict(3.0, np.nan), predict(3.0, means["x2"]))
    assert not np.allclose(predict(np.nan, 0.0), predict(means["x1"], 0.0))


def test_a_text_column_that_looks_like_free_text_or_an_id_is_left_out():
    rows = 40
    frame = pd.DataFrame({
        "review": [f"review number {i}, quite unlike the others" for i in range(rows)],
        "colour": ["red", "blue"] * (rows // 2),
        "few": [f"v{i % 19}" for i in range(rows)],   # 19 values: under the minimum
        "x": np.arange(rows, dtype=float),
    })
    with pytest.warns(UserWarning, match=r"Column 'review' is not used as a "
                                         r"feature: 40 of its 40 values are "
                                         r"distinct \(100%\)"):
        features = resolve_features(frame)
    assert [f.name for f in features] == ["colour", "few", "x"]
    declared = resolve_features(frame, categorical=["review"], numeric=["x"])
    assert [f.name for f in declared] == ["x", "review"]  # declared: kept


def test_unseen_share_counts_held_out_values_outside_the_vocabulary():
    train = pd.DataFrame({"c": ["a", "a", "b", None], "n": [1, 1, 2, 2]})
    held_out = pd.DataFrame({"c": ["a", "z", "y", None, "x"], "n": [1, 3, 3, 2, 3]})
    strings = Feature("c", "categorical").fit(train)
    assert strings.unseen_share(held_out) == 0.75   # z, y, x of a, z, y, x
    codes = Feature("n", "categorical", "int64").fit(train)
    assert codes.unseen_share(held_out) == 0.6      # three 3s of five values
    assert Feature("n", "numeric").fit(train).unseen_share(held_out) is None
    assert strings.unseen_share(held_out.iloc[3:4]) is None  # only a missing value


def test_mostly_unseen_held_out_values_warn_with_the_share():
    from kmtl.runs.data import warn_unseen

    train = pd.DataFrame({"user": ["u1", "u2", "u1"], "c": ["a", "b", "a"]})
    test = pd.DataFrame({"user": ["u7", "u8", "u1"], "c": ["a", "b", "b"]})
    features = [Feature(n, "categorical").fit(train) for n in ("user", "c")]
    with pytest.warns(UserWarning, match=r"Feature 'user': 67% of its test values "
                                         r"never occur in the training split"):
        warned = warn_unseen(features, {"validation": None, "test": test})
    assert list(warned) == [("user", "test")]
