"""The shared test of a task type: `run_task_type_test(name, folder)`.

`tests/tasks/test_task_types.py` runs it for every name in
`kmtl.tasks.list_task_types()`, so a newly registered type is under test the
day it is registered: it fails until it has an `EXAMPLES` entry here, a small
hand-made table whose encoded labels, fitted values and decoded predictions are
written out by hand. Each check also takes another `TaskTypeExample` of the
type (`example=`), as `test_multilabel_delimited.py` does for a multilabel task
whose labels come from one delimited column.

What it checks, for one type:
- the contract: `Task(name, type)` returns the registered class, defaults are
  known metrics, the default loss is reduced over labelled rows;
- config: `get_config` / `from_config`, `kmtl.tasks.get`, `serialize` /
  `deserialize` give the same config, before and after `fit`, and JSON holds it;
- labels: `fit` learns the hand-derived values, `encode` gives the hand-written
  labels and a sample weight of exactly 0 where a target is missing, 1 elsewhere;
- `decode` of hand-written predictions;
- the head: `kmtl.build_model` output `(rows, units)`, the head layers by name,
  class and float32 dtype, a `.keras` round trip with the same predictions and
  task configs;
- masking: a batch without any label for the task adds exactly 0 to the loss.
"""

import dataclasses

import keras
import numpy as np
import pandas as pd
from helpers import assert_export_serves
from helpers import assert_family_round_trip

import kmtl
from kmtl.features import Feature
from kmtl.tasks import TASK_TYPES
from kmtl.tasks import Task

# The feature column of every example table, and a regression task labelled on
# every row that keeps the model trainable when the tested task has no label.
FEATURE = [0.0, 1.0, 2.0, 3.0, 4.0]
ANCHOR = [1.0, 2.0, 3.0, 4.0, 5.0]


@dataclasses.dataclass
class TaskTypeExample:
    """A hand-made case of one task type, named `y`, on five rows.

    Attributes:
        declare: keyword arguments of `Task("y", type, ...)`.
        columns: the target columns, `{column: five values}`, some missing.
        fitted: `{attribute: value}` that `fit` must set.
        labels: the encoded labels of the five rows (placeholder 0 where
            unlabelled).
        weights: the five sample weights.
        predictions: a few rows of model output `(rows, units)`.
        decoded: `decode(predictions)`.
        head: `{layer name: layer class name}` of the head layers.
        strata: what `strata(frame)` returns (labelled rows matter), or None.
    """

    declare: dict
    columns: dict
    fitted: dict
    labels: list
    weights: list
    predictions: list
    decoded: dict
    head: dict
    strata: list = None


EXAMPLES = {
    "binary": TaskTypeExample(
        declare={"positive": "yes"},
        columns={"y": ["yes", "no", None, "yes", "no"]},
        fitted={"positive": "yes", "units": 1},
        labels=[[1.0], [0.0], [0.0], [1.0], [0.0]],
        weights=[1.0, 1.0, 0.0, 1.0, 1.0],
        predictions=[[0.9], [0.2]],
        decoded={"y": [0.9, 0.2]},
        head={"y": "Dense"},
        strata=["yes", "no", "None", "yes", "no"],
    ),
    "multiclass": TaskTypeExample(
        declare={},
        columns={"y": ["b", "a", None, "c", "a"]},
        fitted={"classes": ["a", "b", "c"], "units": 3},
        labels=[1, 0, 0, 2, 0],
        weights=[1.0, 1.0, 0.0, 1.0, 1.0],
        predictions=[[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]],
        decoded={"y": ["b", "a"], "y_p_a": [0.1, 0.6], "y_p_b": [0.7, 0.3],
                 "y_p_c": [0.2, 0.1]},
        head={"y": "Dense"},
        strata=["b", "a", "None", "c", "a"],
    ),
    "multilabel": TaskTypeExample(
        declare={"target": ["t1", "t2"]},
        # Row 3 misses t1 and row 4 misses t2: a row is labelled only when
        # every target column is filled.
        columns={"t1": [1, 0, 1, None, 0], "t2": [0, 0, 1, 1, None]},
        fitted={"classes": ["t1", "t2"], "units": 2},
        labels=[[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]],
        weights=[1.0, 1.0, 1.0, 0.0, 0.0],
        predictions=[[0.9, 0.1], [0.4, 0.8]],
        decoded={"y_t1": [0.9, 0.4], "y_t2": [0.1, 0.8]},
        head={"y": "Dense"},
    ),
    "regression": TaskTypeExample(
        declare={},
        columns={"y": [2.0, 4.0, None, 9.0, 5.0]},
        # Mean of 2, 4, 9, 5 = 5; population variance (9 + 1 + 16 + 0) / 4.
        fitted={"target_mean": [5.0], "target_std": [6.5 ** 0.5], "units": 1},
        labels=[[2.0], [4.0], [0.0], [9.0], [5.0]],
        weights=[1.0, 1.0, 0.0, 1.0, 1.0],
        predictions=[[1.5], [2.5]],
        decoded={"y": [1.5, 2.5]},
        head={"y_head": "Dense", "y": "Rescaling"},
    ),
}


def example_of(name):
    example = EXAMPLES.get(name)
    assert example is not None, (
        f"Task type {name!r} is registered but has no example: add a "
        f"TaskTypeExample for it to EXAMPLES in tests/tasks/task_type_case.py.")
    return example


def example_frame(example):
    """The example's five rows: feature `x`, anchor target `z`, the targets."""
    return pd.DataFrame({"x": FEATURE, "z": ANCHOR, **example.columns})


def declared_task(name, example):
    return Task("y", name, **example.declare)


# === The parts ===


def check_contract(name, example=None):
    """The registered class, its defaults and its loss reduction."""
    example = example or example_of(name)
    cls = TASK_TYPES.get_class(name)
    task = declared_task(name, example)
    assert type(task) is cls and task.type == name, "Task(name, type) dispatch"
    assert isinstance(task, Task)
    assert cls.registered_name == name
    factories = task.all_metric_factories()
    groups = task.metric_groups()
    defaults = list(task.default_metrics)
    assert set(defaults) <= set(factories) | set(groups), (
        f"default metrics {defaults} are not all in all_metric_factories() "
        f"{sorted(factories)} or metric_groups() {sorted(groups)}")
    assert task.metrics == [n for m in defaults for n in groups.get(m, [m])]
    assert set(groups) == {f"{m}_per_{cls.column_kind}" for m in cls.column_metrics}
    for names in groups.values():
        assert len(names) == len(task.metric_columns()) == task.units
        assert set(names) <= set(factories)
    everything = [make(f"y_{m}") for m, make in factories.items()]
    assert [m.name for m in everything] == [f"y_{m}" for m in factories]
    assert all(isinstance(m, keras.metrics.Metric) for m in everything)
    loss = task.build_loss()
    assert isinstance(loss, keras.losses.Loss)
    assert loss.reduction == kmtl.tasks.LOSS_REDUCTION
    assert type(cls("y", **example.declare)) is cls, "direct construction"


def check_config_round_trip(name, example=None):
    """Config round trips before and after `fit`; the config is plain JSON."""
    example = example or example_of(name)
    frame = example_frame(example)
    unfitted = declared_task(name, example)
    fitted = declared_task(name, example).fit(frame)
    for task in (unfitted, fitted):
        config = task.get_config()
        assert config["type"] == name and config["name"] == "y"
        assert_family_round_trip(task, kmtl.tasks, Task,
                                 example.fitted if task is fitted else ())


def check_labels(name, example=None):
    """`fit` and `encode` against the hand-written values."""
    example = example or example_of(name)
    frame = example_frame(example)
    task = declared_task(name, example).fit(frame)
    for attribute, value in example.fitted.items():
        got = getattr(task, attribute)
        if isinstance(value, list) and value and isinstance(value[0], float):
            np.testing.assert_allclose(got, value, rtol=1e-12)
        else:
            assert got == value, f"fit: {attribute}={got!r}, expected {value!r}"
    labels, weight = task.encode(frame)
    expected = np.asarray(example.labels)
    assert labels.shape == expected.shape
    assert labels.dtype == ("int32" if expected.dtype.kind == "i" else "float32")
    np.testing.assert_array_equal(labels, expected)
    assert weight.dtype == "float32" and weight.shape == (len(frame),)
    np.testing.assert_array_equal(weight, example.weights)
    # Weight 0 exactly where a target column is missing.
    missing = frame[task.target_columns].isna().any(axis=1).to_numpy()
    np.testing.assert_array_equal(weight == 0, missing)
    strata = task.strata(frame)
    if example.strata is None:
        assert strata is None
    else:
        assert list(strata[~missing]) == [s for s, m in zip(example.strata, missing)
                                          if not m]


def check_decode(name, example=None):
    example = example or example_of(name)
    task = declared_task(name, example).fit(example_frame(example))
    decoded = task.decode(np.asarray(example.predictions, "float32"))
    assert list(decoded) == list(example.decoded)
    for column, values in example.decoded.items():
        got = decoded[column]
        if isinstance(values[0], str):
            assert list(got) == values
        else:
            np.testing.assert_allclose(got, values, rtol=1e-6)


def _tiny_model(name, example):
    frame = example_frame(example)
    features = [Feature("x", "numeric").fit(frame)]
    tasks = [declared_task(name, example).fit(frame),
             Task("anchor", "regression", target="z").fit(frame)]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=(3,))
    return frame, features, tasks, model


def _inputs(frame):
    return {"x": frame["x"].to_numpy("float32")[:, None]}


def check_model(name, folder, example=None):
    """The head's layout and a `.keras` round trip with the same predictions."""
    example = example or example_of(name)
    frame, _, tasks, model = _tiny_model(name, example)
    task = tasks[0]
    predictions = keras.ops.convert_to_numpy(model(_inputs(frame))["y"])
    assert predictions.shape == (len(frame), task.units)
    assert predictions.dtype == "float32"
    for layer_name, class_name in example.head.items():
        layer = model.get_layer(layer_name)
        assert type(layer).__name__ == class_name, layer_name
        assert layer.dtype_policy.name == "float32", layer_name
    path = folder / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(t) for t in loaded.tasks] == [type(t) for t in tasks]
    assert [t.get_config() for t in loaded.tasks] == [t.get_config() for t in tasks]
    again = keras.ops.convert_to_numpy(loaded(_inputs(frame))["y"])
    np.testing.assert_array_equal(again, predictions)
    assert_export_serves(loaded, {"x": frame["x"].to_numpy("float32")},
                         folder / f"{name}_serving")


def check_masking(name, example=None):
    """A batch without labels for the task: its loss is exactly 0 and the total
    loss is the anchor task's alone; with labels, its loss is positive."""
    example = example or example_of(name)
    frame, features, tasks, model = _tiny_model(name, example)
    model.compile(optimizer="sgd")
    unlabelled = frame.copy()
    unlabelled[list(example.columns)] = None
    logs = {}
    for key, table in (("unlabelled", unlabelled), ("labelled", frame)):
        x, y, weight = next(iter(kmtl.data.make_dataset(table, features, tasks,
                                                        batch_size=len(table))))
        model.reset_metrics()
        logs[key] = model.test_on_batch(x, y, weight, return_dict=True)
    assert float(logs["unlabelled"]["y_loss"]) == 0.0
    assert float(logs["unlabelled"]["loss"]) == float(logs["unlabelled"]["anchor_loss"])
    assert float(logs["labelled"]["y_loss"]) > 0.0
    for metric in tasks[0].metrics:
        assert f"y_{metric}" in logs["labelled"]


def run_task_type_test(name, folder):
    """Every check above for the task type `name`; `folder` takes a `.keras`
    file (pytest's `tmp_path`)."""
    check_contract(name)
    check_config_round_trip(name)
    check_labels(name)
    check_decode(name)
    check_model(name, folder)
    check_masking(name)
