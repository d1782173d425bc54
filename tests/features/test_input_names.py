"""Model input names of columns as real tables name them: `input_name`, the
collision check, and the name kept in a feature's config."""

import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.features import Feature
from kmtl.features import check_input_names
from kmtl.features import input_name
from kmtl.features import resolve_features


@pytest.mark.parametrize("column, expected", [
    # Valid names are kept as they are (byte-identical models).
    ("island", "island"),
    ("bill_length_mm", "bill_length_mm"),
    ("x__1_", "x__1_"),
    ("A", "A"),
    # Spaces, punctuation, hyphens.
    ("bill length (mm)", "bill_length_mm"),
    ("Review Text", "Review_Text"),
    ("capital-gain", "capital_gain"),
    ("a.b", "a_b"),
    ("income ($/yr)", "income_yr"),
    # Non-ASCII: accents dropped, a few letters transliterated, other scripts
    # by code point.
    ("île", "ile"),
    ("Größe", "Grosse"),
    ("Æble ø", "AEble_o"),
    ("収入", "u53ce_u5165"),
    # A leading digit or underscore.
    ("2nd home", "col_2nd_home"),
    ("_id", "id"),
    ("1", "col_1"),
    ("???", "col"),
    (7, "col_7"),
])
def test_input_name(column, expected):
    assert input_name(column) == expected


@pytest.mark.parametrize("column", [
    "bill length (mm)", "île", "Größe", "2nd home", "capital-gain", "収入", "_x",
    " ", "a  b ", "ü-ß", "9",
])
def test_an_input_name_is_valid_and_fixed(column):
    name = input_name(column)
    assert name.isascii() and name.replace("_", "").isalnum()
    assert name[0].isalpha()
    assert input_name(name) == name


def test_a_feature_keeps_its_column_name_and_gets_an_input_name():
    frame = pd.DataFrame({"bill length (mm)": [1.0, 2.0],
                          "île": ["Dream", "Biscoe"]})
    numeric, categorical = resolve_features(
        frame, ["bill length (mm)"], ["île"])
    assert (numeric.name, numeric.input_name) == ("bill length (mm)",
                                                  "bill_length_mm")
    assert (categorical.name, categorical.input_name) == ("île", "ile")


def test_the_input_name_is_in_the_config_only_when_it_differs():
    frame = pd.DataFrame({"2nd home": ["yes", "no"], "island": ["a", "b"]})
    odd, plain = (f.fit(frame) for f in resolve_features(frame))
    assert odd.get_config()["input_name"] == "col_2nd_home"
    assert "input_name" not in plain.get_config()
    assert list(plain.get_config()) == ["name", "kind", "dtype", "vocabulary"]


def test_a_stored_input_name_is_kept_on_revival():
    """A saved model keeps the names it was built with, whatever the rule."""
    config = {"name": "a b", "kind": "numeric", "dtype": "float32", "mean": 0.0,
              "variance": 1.0, "missing": False, "encoding": None,
              "edges": [-1.0, 1.0], "input_name": "stored_name"}
    feature = kmtl.features.get(config)
    assert (feature.name, feature.input_name) == ("a b", "stored_name")
    assert feature.get_config() == config
    revived = kmtl.features.deserialize(kmtl.features.serialize(feature))
    assert revived.input_name == "stored_name"


@pytest.mark.parametrize("columns", [("a b", "a_b"), ("île", "ile"),
                                     ("x-1", "x.1")])
def test_columns_that_collide_after_sanitizing_are_a_config_error(columns):
    first, second = columns
    frame = pd.DataFrame({first: [1.0, 2.0], second: [3.0, 4.0], "y": [0, 1]})
    with pytest.raises(kmtl.ConfigError) as error:
        resolve_features(frame, exclude=["y"])
    message = str(error.value)
    assert repr(first) in message and repr(second) in message
    assert repr(input_name(first)) in message
    with pytest.raises(kmtl.ConfigError, match="both become"):
        resolve_features(frame, numeric=[first], categorical=[second])


def test_build_model_checks_features_made_by_hand():
    frame = pd.DataFrame({"a b": [1.0, 2.0], "a_b": [3.0, 4.0],
                          "y": [0.0, 1.0]})
    features = [Feature(c, "numeric").fit(frame) for c in ("a b", "a_b")]
    with pytest.raises(kmtl.ConfigError, match="'a b' and 'a_b' both become"):
        check_input_names(features)
    task = kmtl.Task("y", "regression").fit(frame)
    with pytest.raises(kmtl.ConfigError, match="'a b' and 'a_b' both become"):
        kmtl.build_model(features, [task])


def test_convert_reads_the_column_under_its_own_name():
    frame = pd.DataFrame({"Größe": [1.5, np.nan]})
    feature = Feature("Größe", "numeric")
    np.testing.assert_array_equal(feature.convert(frame), [1.5, np.nan])


def test_a_table_with_the_input_name_instead_of_the_column_is_told_so():
    feature = Feature("bill length (mm)", "numeric")
    frame = pd.DataFrame({"bill_length_mm": [1.0]})
    with pytest.raises(kmtl.DataError, match="has its model input name "
                       "'bill_length_mm' instead.*rename the column to "
                       r"'bill length \(mm\)'"):
        feature.convert(frame)
