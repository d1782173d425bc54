"""Tests for `kmtl.tasks`: defaults, fitting, label encoding, errors and configs."""

import keras
import numpy as np
import pandas as pd
import pytest

from kmtl import tasks as tasks_module
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.tasks import Task


@pytest.mark.parametrize(
    "task_type, target, loss_class, metric_classes, activation",
    [
        ("binary", None, keras.losses.BinaryCrossentropy,
         [keras.metrics.AUC, keras.metrics.BinaryAccuracy], "sigmoid"),
        ("multiclass", None, keras.losses.SparseCategoricalCrossentropy,
         [keras.metrics.SparseCategoricalAccuracy], "softmax"),
        ("multilabel", ["a", "b", "c"], keras.losses.BinaryCrossentropy,
         [keras.metrics.AUC, keras.metrics.AUC] + [tasks_module.ColumnMetric] * 3,
         "sigmoid"),
        ("regression", None, keras.losses.MeanSquaredError,
         [keras.metrics.MeanAbsoluteError, keras.metrics.RootMeanSquaredError],
         None),
    ],
)
def test_defaults_per_type(task_type, target, loss_class, metric_classes,
                           activation):
    classes = ["x", "y", "z", "w"] if task_type == "multiclass" else None
    task = Task("t", task_type, target=target, classes=classes)
    loss = task.build_loss()
    assert type(loss) is loss_class
    assert loss.reduction == "mean_with_sample_weight"
    metrics = task.build_metrics()
    assert [type(m) for m in metrics] == metric_classes
    assert [m.name for m in metrics] == [f"t_{m}" for m in task.metrics]
    assert task.activation == activation
    assert task.loss_weight == 1.0
    assert task.target_columns == (target or ["t"])


def test_units_per_type():
    assert Task("t", "binary").units == 1
    assert Task("t", "multiclass", classes=["a", "b", "c", "d"]).units == 4
    assert Task("t", "multilabel", target=["a", "b", "c"]).units == 3
    assert Task("t", "regression").units == 1
    assert Task("t", "regression", target=["h", "w"]).units == 2


def test_multiclass_units_before_fit_raise():
    with pytest.raises(ConfigError, match="classes are unknown"):
        _ = Task("t", "multiclass").units


def test_named_loss_keeps_mask_reduction():
    loss = Task("t", "regression", loss="huber").build_loss()
    assert loss.reduction == "mean_with_sample_weight"
    # Huber with delta 1: 0.5 * 0.5**2 on the labelled row, the other row masked.
    value = loss(np.array([[0.0], [0.0]]), np.array([[0.5], [9.0]]),
                 sample_weight=np.array([1.0, 0.0]))
    np.testing.assert_allclose(float(value), 0.125, rtol=1e-6)


# --- fit -------------------------------------------------------------------


def test_fit_sorts_multiclass_classes():
    frame = pd.DataFrame({"kind": ["c", "a", None, "b", "a"]})
    task = Task("kind", "multiclass").fit(frame)
    assert task.classes == ["a", "b", "c"]
    assert task.units == 3


def test_fit_keeps_declared_classes_order():
    frame = pd.DataFrame({"kind": ["c", "a", "b"]})
    task = Task("kind", "multiclass", classes=["c", "b", "a"]).fit(frame)
    assert task.classes == ["c", "b", "a"]


@pytest.mark.parametrize("values", [[0, 1, 1, None], [0.0, 1.0, np.nan],
                                    [True, False, True]])
def test_fit_infers_positive_for_zero_one_labels(values):
    task = Task("y", "binary").fit(pd.DataFrame({"y": values}))
    assert task.positive == 1


def test_fit_regression_mean_and_std():
    values = [1.0, 2.0, np.nan, 6.0]
    task = Task("y", "regression").fit(pd.DataFrame({"y": values}))
    # mean of 1, 2, 6 = 3; population std = sqrt((4 + 1 + 9) / 3).
    assert task.target_mean == pytest.approx([3.0])
    assert task.target_std == pytest.approx([np.sqrt(14 / 3)])


def test_fit_regression_constant_target_has_std_one():
    task = Task("y", "regression").fit(pd.DataFrame({"y": [5.0, 5.0, 5.0]}))
    assert task.target_mean == pytest.approx([5.0])
    assert task.target_std == [1.0]


def test_fit_keeps_declared_target_scale():
    task = Task("y", "regression", target_mean=[100.0], target_std=[10.0])
    task.fit(pd.DataFrame({"y": [1.0, 2.0]}))
    assert task.target_mean == [100.0]
    assert task.target_std == [10.0]


# --- encode ----------------------------------------------------------------


def test_encode_binary_labels_and_weights():
    frame = pd.DataFrame({"y": [1.0, 0.0, np.nan, 1.0]})
    task = Task("y", "binary").fit(frame)
    labels, weight = task.encode(frame)
    assert labels.dtype == np.float32 and labels.shape == (4, 1)
    assert weight.dtype == np.float32 and weight.shape == (4,)
    np.testing.assert_array_equal(labels[:, 0], [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(weight, [1.0, 1.0, 0.0, 1.0])


def test_encode_binary_string_labels_with_positive():
    frame = pd.DataFrame({"sex": ["female", "male", None, "female", "male"]})
    task = Task("sex", "binary", positive="female").fit(frame)
    labels, weight = task.encode(frame)
    np.testing.assert_array_equal(labels[:, 0], [1.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(weight, [1.0, 1.0, 0.0, 1.0, 1.0])


def test_encode_multiclass_index_mapping():
    train = pd.DataFrame({"kind": ["c", "a", "b"]})
    task = Task("kind", "multiclass").fit(train)
    frame = pd.DataFrame({"kind": ["b", None, "c", "a", "c"]})
    labels, weight = task.encode(frame)
    assert labels.dtype == np.int32 and labels.shape == (5,)
    # classes ["a", "b", "c"] -> 0, 1, 2; the unlabelled row holds 0 with weight 0.
    np.testing.assert_array_equal(labels, [1, 0, 2, 0, 2])
    np.testing.assert_array_equal(weight, [1.0, 0.0, 1.0, 1.0, 1.0])


def test_encode_regression_labels_in_label_units():
    frame = pd.DataFrame({"h": [1.5, np.nan, 3.0], "w": [10.0, 20.0, np.nan]})
    task = Task("size", "regression", target=["h", "w"]).fit(frame)
    labels, weight = task.encode(frame)
    assert labels.shape == (3, 2)
    # A row is labelled only when every target column is present.
    np.testing.assert_array_equal(weight, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(labels[0], [1.5, 10.0])
    np.testing.assert_array_equal(labels[1:], 0.0)


def test_encode_multilabel():
    frame = pd.DataFrame({"a": [1, 0, None], "b": [0, 1, 1]})
    task = Task("tags", "multilabel", target=["a", "b"]).fit(frame)
    labels, weight = task.encode(frame)
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(weight, [1.0, 1.0, 0.0])


# --- errors ----------------------------------------------------------------


def test_unknown_type():
    with pytest.raises(ConfigError, match="unknown type 'ordinal'"):
        Task("t", "ordinal")


def test_unknown_metric_names_metric_and_choices():
    with pytest.raises(ConfigError, match=r"unknown metric 'f1'.*'auc'"):
        Task("t", "binary", metrics=["auc", "f1"])


def test_metric_of_another_type_is_unknown():
    with pytest.raises(ConfigError, match="unknown metric 'auc' for a regression"):
        Task("t", "regression", metrics=["auc"])


@pytest.mark.parametrize("weight", [-1.0, float("nan"), "heavy"])
def test_bad_loss_weight(weight):
    with pytest.raises(ConfigError, match="loss_weight"):
        Task("t", "binary", loss_weight=weight)


def test_label_not_in_declared_classes_names_label():
    frame = pd.DataFrame({"kind": ["a", "b", "zebra"]})
    task = Task("kind", "multiclass", classes=["a", "b"]).fit(frame)
    with pytest.raises(DataError, match=r"label 'zebra' in column 'kind'"):
        task.encode(frame)


def test_binary_string_labels_without_positive():
    frame = pd.DataFrame({"sex": ["male", "female", None]})
    with pytest.raises(DataError, match=r"\['female', 'male'\].*set `positive`"):
        Task("sex", "binary").fit(frame)


def test_positive_that_never_occurs():
    frame = pd.DataFrame({"income": [" 50000+.", " - 50000."]})
    with pytest.raises(DataError, match=r"positive='50000\+\.' never occurs"):
        Task("income", "binary", positive="50000+.").fit(frame)


def test_task_without_labels():
    frame = pd.DataFrame({"y": [np.nan, np.nan], "x": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"Task 'y': no row .* has a label"):
        Task("y", "binary").fit(frame)


def test_target_column_absent_on_fit():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"target column\(s\) \['label'\] not found"):
        Task("y", "binary", target="label").fit(frame)


def test_target_column_absent_on_encode():
    task = Task("y", "binary").fit(pd.DataFrame({"y": [0, 1]}))
    with pytest.raises(DataError, match=r"\['y'\] not found.*\['x'\]"):
        task.encode(pd.DataFrame({"x": [1.0]}))


def test_regression_text_label_names_value():
    frame = pd.DataFrame({"y": [1.0, "heavy", 3.0]})
    with pytest.raises(DataError, match="found 'heavy'"):
        Task("y", "regression").fit(frame)


def test_multilabel_needs_list_target():
    with pytest.raises(ConfigError, match="list of 0/1 target"):
        Task("tags", "multilabel", target="tags")


def test_task_name_must_be_identifier():
    with pytest.raises(ConfigError, match="'my task'"):
        Task("my task", "binary")


# --- config ----------------------------------------------------------------


def test_config_round_trip_after_fit():
    frame = pd.DataFrame({"kind": ["b", "a", "c"], "y": [1.0, 2.0, 4.0],
                          "s": ["f", "m", "f"]})
    fitted = [
        Task("kind", "multiclass", loss_weight=0.5, metrics=["accuracy"]).fit(frame),
        Task("y", "regression", metrics=["mse"]).fit(frame),
        Task("s", "binary", positive="f").fit(frame),
    ]
    for task in fitted:
        config = task.get_config()
        clone = Task.from_config(config)
        assert clone.get_config() == config
    assert fitted[0].get_config()["classes"] == ["a", "b", "c"]


def test_config_of_numpy_classes_is_plain_python():
    frame = pd.DataFrame({"k": np.array([3, 1, 2], dtype="int64")})
    config = Task("k", "multiclass").fit(frame).get_config()
    assert config["classes"] == [1, 2, 3]
    assert all(type(c) is int for c in config["classes"])


def test_get_from_dict_and_task():
    task = tasks_module.get({"name": "y", "type": "binary"})
    assert isinstance(task, Task) and task.name == "y"
    assert tasks_module.get(task) is task


def test_get_unknown_key_lists_allowed():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\].*'target'"):
        tasks_module.get({"name": "y", "type": "binary", "colour": "red"})


def test_get_missing_type():
    with pytest.raises(ConfigError, match="missing the key 'type'"):
        tasks_module.get({"name": "y"})


# --- task types --------------------------------------------------------------


def test_task_dispatches_to_the_type_class():
    assert type(Task("y", "binary")) is tasks_module.BinaryTask
    assert type(Task(name="y", type="regression")) is tasks_module.RegressionTask
    assert type(tasks_module.MulticlassTask("y", classes=["a", "b"])).__name__ == (
        "MulticlassTask")
    assert tasks_module.BinaryTask("y").type == "binary"


def test_type_class_refuses_another_type():
    with pytest.raises(ConfigError, match="a BinaryTask has type 'binary'. "
                                          "Received: type='regression'"):
        tasks_module.BinaryTask("y", "regression")


def test_get_from_serialized_task():
    task = Task("y", "multiclass", classes=["a", "b"], loss_weight=0.5)
    serialized = tasks_module.serialize(task)
    assert serialized["class_name"] == "multiclass"
    clone = tasks_module.get(serialized)
    assert type(clone) is tasks_module.MulticlassTask
    assert clone.get_config() == task.get_config()


def test_unknown_type_lists_registered_types():
    with pytest.raises(ConfigError, match=r"Use one of \('binary', 'multiclass', "
                                          r"'multilabel', 'regression'\)"):
        Task("t", "ordinal")


def test_binary_pr_auc_is_the_average_precision():
    # 6 % positives, scores that rank them only partly: Keras's interpolated
    # PR AUC is scikit-learn's average precision (0.4880) to 0.002, far from
    # the ROC AUC; null like every AUC on a split with one class.
    from sklearn.metrics import average_precision_score

    from kmtl.runs.training import honest_metrics

    task = Task("y", "binary", metrics=["auc", "pr_auc"])
    roc, pr = task.build_metrics()
    assert pr.name == "y_pr_auc" and pr.curve.name == "PR"
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.06).astype("float32")
    scores = np.clip(0.3 * labels + 0.7 * rng.random(2000), 0, 1).astype("float32")
    for metric in (roc, pr):
        metric.update_state(labels, scores)
    assert float(pr.result()) == pytest.approx(
        average_precision_score(labels, scores), abs=0.002)
    assert float(roc.result()) - float(pr.result()) > 0.3
    with pytest.warns(UserWarning, match="only negative labels"):
        nulled = honest_metrics({"y": {"loss": 0.1, "auc": 0.0, "pr_auc": 0.0}},
                                {"y": (50, 0)}, "test")
    assert nulled == {"y": {"loss": 0.1, "auc": None, "pr_auc": None}}
