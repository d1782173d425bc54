"""Regression tests found by the fuzz tests (tests/fuzz): a task config with
an argument of the wrong type is a ConfigError naming the task, the argument
and the value (it was a raw TypeError, or a task that failed later); 0/1
binary labels that are all 0 say so (the error blamed `positive`)."""

import math

import pandas as pd
import pytest

import kmtl
from kmtl import tasks
from kmtl.errors import ConfigError
from kmtl.errors import DataError


@pytest.mark.parametrize("kind, key, value", [
    ("binary", "target", 7),
    ("regression", "target", [1, 2]),
    ("multilabel", "target", {"a": 1}),
    ("binary", "positive", [1]),
    ("binary", "positive", {"yes": 1}),
    ("multiclass", "classes", math.inf),
    ("multiclass", "classes", "abc"),
    ("multiclass", "classes", [["a"], ["b"]]),
    ("binary", "metrics", True),
    ("binary", "metrics", "auc"),
    ("regression", "metrics", [["mae"]]),
    ("regression", "target_mean", math.nan),
    ("regression", "target_std", 0.0),
    ("regression", "target_std", [1.0, -1.0]),
    ("regression", "target_std", True),
])
def test_an_argument_of_the_wrong_type_is_a_config_error(kind, key, value):
    with pytest.raises(ConfigError, match=rf"Task 't': {key} must be .* "
                                          rf"Received: {key}="):
        tasks.get({"name": "t", "type": kind, key: value})


@pytest.mark.parametrize("derived_from", [[["a"], ["b"]], [{"a": 1}, "b"], [1, 2]])
def test_derived_from_holds_task_names(derived_from):
    with pytest.raises(ConfigError, match="derived_from must be a list of task "
                                          "names"):
        tasks.get({"name": "t", "type": "binary", "derived_from": derived_from})


def test_a_binary_positive_of_the_wrong_type_no_longer_fails_in_fit():
    # `positive: [1]` passed construction and failed in `fit` with
    # "unhashable type: 'list'".
    frame = pd.DataFrame({"t": [0, 1, 1]})
    with pytest.raises(ConfigError, match=r"positive must be one label value"):
        kmtl.Task("t", "binary", positive=[1]).fit(frame)


def test_well_typed_arguments_are_kept():
    task = tasks.get({"name": "t", "type": "regression", "target": ("a", "b"),
                      "target_mean": [0, 1.5], "target_std": [2, 0.5],
                      "metrics": ("mae",)})
    assert task.target_columns == ["a", "b"]
    assert (task.target_mean, task.target_std) == ([0, 1.5], [2, 0.5])
    assert task.metrics == ["mae"]
    binary = tasks.get({"name": "b", "type": "binary", "positive": True,
                        "classes": None, "metrics": ["auc"]})
    assert binary.positive is True


def test_binary_labels_all_zero_name_the_missing_class():
    frame = pd.DataFrame({"t": [0.0, None, 0.0]})
    with pytest.raises(DataError, match=r"Task 't': every training label in "
                                        r"column 't' is 0\.0, so the positive "
                                        r"class 1 never occurs; a binary task "
                                        r"needs both classes"):
        kmtl.Task("t", "binary").fit(frame)
    # A declared positive that never occurs is still named as such.
    with pytest.raises(DataError, match=r"positive='yes' never occurs"):
        kmtl.Task("t", "binary", positive="yes").fit(frame)


@pytest.mark.parametrize("kind", ["regression", "multilabel"])
def test_text_in_a_later_target_column_is_named(kind):
    # Only the first target column was searched for the bad label: with the
    # text in the second, the error was pandas' IndexError.
    frame = pd.DataFrame({"s": [1.0, 0.0, 1.0], "n": [1, "yes", 0]})
    task = kmtl.Task("t", kind, target=["s", "n"])
    with pytest.raises(DataError, match=rf"Task 't': {kind} labels in column "
                                        rf"'n' must be numbers; found 'yes'"):
        task.fit(frame).encode(frame) if kind == "multilabel" else task.fit(frame)
