"""Per-label and per-target metrics: `ColumnMetric`, the metric names a
multilabel and a regression task log (macro and micro AUC, `auc_<label>`,
`mae_<target>`, `rmse_<target>`), their numbers against hand-derived values and
scikit-learn, through `evaluate` of a built model, and a `.keras` round trip."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import kmtl
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.features import Feature
from kmtl.features import input_name
from kmtl.runs.training import nested_metrics
from kmtl.tasks import PER_COLUMN_DEFAULT_LIMIT
from kmtl.tasks import ColumnMetric
from kmtl.tasks import Task
from kmtl.tasks.metrics import column_metric_names
from kmtl.tasks.metrics import column_suffix


def _results(metrics, y_true, y_pred, weight):
    values = {}
    for metric in metrics:
        metric.update_state(y_true, y_pred, sample_weight=weight)
        values[metric.name] = float(metric.result())
    return values


# === Names ===


@pytest.mark.parametrize("column", [
    "sports", "bill length (mm)", "capital-gain", "île", "Größe", "Ærø", "収入",
    "a__b", "x_1", "Sci-Fi", "price (€)"])
def test_column_suffix_follows_the_input_name_rule(column):
    # The rule of kmtl.features.input_name, which tasks may not import.
    assert column_suffix(column) == input_name(column)


@pytest.mark.parametrize("column, suffix", [
    ("2nd home", "2nd_home"), (7, "7"), ("_x_", "x"), ("?!", "")])
def test_column_suffix_has_no_prefix(column, suffix):
    assert column_suffix(column) == suffix


def test_column_metric_names_are_distinct_and_avoid_taken_names():
    names = column_metric_names("auc", ["micro", "a b", "a-b", "?!", "a_b_2"],
                                taken={"auc", "auc_micro"})
    # `micro` is taken by the micro average, `a-b` by `a b`; `?!` has no
    # suffix, so its index names it; `a_b_2` is taken by `a-b`.
    assert names == ["auc_micro_0", "auc_a_b", "auc_a_b_2", "auc_3", "auc_a_b_2_4"]


# === ColumnMetric ===


def test_column_metric_mae_by_hand():
    metric = ColumnMetric(keras.metrics.MeanAbsoluteError(), 1)
    metric.update_state([[0.0, 10.0], [0.0, 20.0], [0.0, 0.0]],
                        [[5.0, 11.0], [9.0, 23.0], [0.0, 90.0]],
                        sample_weight=[1.0, 1.0, 0.0])
    assert float(metric.result()) == pytest.approx((1.0 + 3.0) / 2)
    assert metric.name == "mean_absolute_error_1"
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_column_metric_tracks_the_wrapped_metric_state():
    inner = keras.metrics.AUC(num_thresholds=50)
    metric = ColumnMetric(inner, 0, name="t_auc_a")
    assert metric.variables and [id(v) for v in metric.variables] == [
        id(v) for v in inner.variables]


def test_column_metric_config_round_trip():
    metric = ColumnMetric(keras.metrics.AUC(num_thresholds=50), 2, name="t_auc_c")
    config = metric.get_config()
    assert config["column"] == 2 and config["name"] == "t_auc_c"
    assert json.loads(json.dumps(config)) == config
    for clone in (ColumnMetric.from_config(config),
                  keras.metrics.deserialize(keras.metrics.serialize(metric))):
        assert type(clone) is ColumnMetric
        assert clone.get_config() == config
        assert clone.metric.num_thresholds == 50


@pytest.mark.parametrize("column", [-1, 1.0, True, "a"])
def test_column_metric_refuses_a_bad_column(column):
    with pytest.raises(ValueError, match="column must be an int >= 0"):
        ColumnMetric(keras.metrics.AUC(), column)


def test_column_metric_refuses_a_column_beyond_the_inputs():
    metric = ColumnMetric(keras.metrics.AUC(), 2, name="t_auc_c")
    with pytest.raises(ValueError, match="column 2 does not exist in y_true"):
        metric.update_state(np.zeros((4, 2)), np.zeros((4, 2)))


def test_column_metric_refuses_what_is_not_a_metric():
    with pytest.raises(ValueError, match="metric must be a keras.metrics.Metric"):
        ColumnMetric(keras.losses.MeanSquaredError(), 0)


# === Multilabel task: names ===


def test_multilabel_default_metric_names():
    task = Task("tags", "multilabel", target=["sports", "news", "Sci-Fi"])
    assert task.metrics == ["auc", "auc_micro", "auc_sports", "auc_news",
                            "auc_Sci_Fi"]
    assert [m.name for m in task.build_metrics()] == [
        "tags_auc", "tags_auc_micro", "tags_auc_sports", "tags_auc_news",
        "tags_auc_Sci_Fi"]
    # The first metric, which comparisons and report curves use, is unchanged.
    assert task.metrics[0] == "auc"


def test_multilabel_names_labels_by_classes():
    task = Task("tags", "multilabel", target=["c1", "c2"],
                classes=["sports", "news"])
    assert task.metrics[2:] == ["auc_sports", "auc_news"]


def test_per_label_metrics_are_default_up_to_the_limit():
    labels = [f"l{i}" for i in range(PER_COLUMN_DEFAULT_LIMIT + 1)]
    at_limit = Task("t", "multilabel", target=labels[:-1])
    assert at_limit.metrics == ["auc", "auc_micro"] + [f"auc_{c}" for c in
                                                       labels[:-1]]
    above = Task("t", "multilabel", target=labels)
    assert above.metrics == ["auc", "auc_micro"]
    opted_in = Task("t", "multilabel", target=labels,
                    metrics=["auc", "auc_per_label"])
    assert opted_in.metrics == ["auc"] + [f"auc_{c}" for c in labels]
    # One label: its AUC is the task's AUC, so it is not repeated.
    assert Task("t", "multilabel", target=["a"]).metrics == ["auc", "auc_micro"]


def test_multilabel_explicit_metrics_expand_and_keep_order():
    task = Task("t", "multilabel", target=["a", "b"],
                metrics=["auc_macro", "accuracy_per_label", "auc_b", "auc_micro",
                         "auc_per_label", "accuracy"])
    assert task.metrics == ["auc_macro", "accuracy_a", "accuracy_b", "auc_b",
                            "auc_micro", "auc_a", "accuracy"]
    assert task.metric_groups() == {"auc_per_label": ["auc_a", "auc_b"],
                                    "accuracy_per_label": ["accuracy_a",
                                                           "accuracy_b"]}


def test_label_names_that_clash_get_their_index():
    task = Task("t", "multilabel", target=["micro", "a b", "a-b"])
    assert task.metrics == ["auc", "auc_micro", "auc_micro_0", "auc_a_b",
                            "auc_a_b_2"]
    assert len({m.name for m in task.build_metrics()}) == 5


def test_unknown_metric_lists_groups_and_a_per_label_name():
    with pytest.raises(ConfigError, match=r"unknown metric 'auc_c'.*"
                       r"'auc_micro'.*'auc_per_label'.*such as 'auc_a'"):
        Task("t", "multilabel", target=["a", "b"], metrics=["auc_c"])


def test_per_column_groups_belong_to_their_type():
    with pytest.raises(ConfigError, match="unknown metric 'mae_per_target' for a "
                                          "multilabel"):
        Task("t", "multilabel", target=["a", "b"], metrics=["mae_per_target"])
    with pytest.raises(ConfigError, match="unknown metric 'auc_per_label' for a "
                                          "binary"):
        Task("t", "binary", metrics=["auc_per_label"])


# === Multilabel task: numbers ===


def test_macro_and_micro_auc_by_hand():
    # Label a ranks its positive first (AUC 1), label b last (AUC 0): the macro
    # average is 0.5. Micro: over the pooled pairs (positives 0.9, 0.2;
    # negatives 0.1, 0.8) 3 of the 4 pairs are ordered right: 0.75. Row 3 is
    # unlabelled (weight 0); counted, its high scores on negative placeholder
    # labels would lower every AUC.
    task = Task("t", "multilabel", target=["a", "b"],
                metrics=["auc", "auc_macro", "auc_micro", "auc_per_label"])
    y_true = np.array([[1, 1], [0, 0], [0, 0]], "float32")
    y_pred = np.array([[0.9, 0.2], [0.1, 0.8], [0.95, 0.95]], "float32")
    weight = np.array([1, 1, 0], "float32")
    got = _results(task.build_metrics(), y_true, y_pred, weight)
    assert got == pytest.approx({"t_auc": 0.5, "t_auc_macro": 0.5,
                                 "t_auc_micro": 0.75, "t_auc_a": 1.0,
                                 "t_auc_b": 0.0}, abs=1e-6)


def _grid_case(rows=40, labels=3, seed=0):
    """Labels, scores on a 0.05 grid (no two different scores within one of
    Keras's 1/199-wide threshold buckets, so Keras's AUC is exact) and a mask
    with placeholder labels 0 and high scores on the masked rows."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, (rows, labels)).astype("float32")
    y_pred = (rng.integers(1, 20, (rows, labels)) * 0.05).astype("float32")
    weight = (rng.random(rows) > 0.25).astype("float32")
    y_true[weight == 0] = 0.0
    y_pred[weight == 0] = 0.95
    return y_true, y_pred, weight


def test_multilabel_aucs_match_scikit_learn_with_masked_rows():
    y_true, y_pred, weight = _grid_case()
    kept = weight > 0
    assert all(0 < y_true[kept, i].mean() < 1 for i in range(3))
    task = Task("t", "multilabel", target=["a", "b", "c"],
                metrics=["auc", "auc_macro", "auc_micro", "auc_per_label"])
    got = _results(task.build_metrics(), y_true, y_pred, weight)
    expected = {
        "t_auc": roc_auc_score(y_true, y_pred, average="macro",
                               sample_weight=weight),
        "t_auc_macro": roc_auc_score(y_true, y_pred, average="macro",
                                     sample_weight=weight),
        "t_auc_micro": roc_auc_score(y_true, y_pred, average="micro",
                                     sample_weight=weight),
        **{f"t_auc_{c}": roc_auc_score(y_true[:, i], y_pred[:, i],
                                       sample_weight=weight)
           for i, c in enumerate("abc")},
    }
    assert got == pytest.approx(expected, abs=1e-6)
    # The weights are a mask: the same as dropping the unlabelled rows.
    assert expected["t_auc_micro"] == pytest.approx(
        roc_auc_score(y_true[kept], y_pred[kept], average="micro"))
    assert expected["t_auc_micro"] != pytest.approx(
        roc_auc_score(y_true, y_pred, average="micro"))


def test_per_label_accuracy_by_hand():
    task = Task("t", "multilabel", target=["a", "b"],
                metrics=["accuracy", "accuracy_per_label"])
    y_true = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], "float32")
    y_pred = np.array([[0.9, 0.2], [0.4, 0.7], [0.3, 0.1], [0.9, 0.9]], "float32")
    weight = np.array([1, 1, 1, 0], "float32")
    # a: right, right, wrong; b: wrong, right, right; row 4 masked.
    got = _results(task.build_metrics(), y_true, y_pred, weight)
    assert got == pytest.approx({"t_accuracy": 4 / 6, "t_accuracy_a": 2 / 3,
                                 "t_accuracy_b": 2 / 3})


# === Regression task ===


def test_regression_default_metric_names():
    single = Task("y", "regression")
    assert single.metrics == ["mae", "rmse"]
    task = Task("size", "regression", target=["mass (g)", "length_mm"])
    assert task.metrics == ["mae", "rmse", "mae_mass_g", "mae_length_mm",
                            "rmse_mass_g", "rmse_length_mm"]
    assert [m.name for m in task.build_metrics()][2] == "size_mae_mass_g"
    many = Task("t", "regression",
                target=[f"y{i}" for i in range(PER_COLUMN_DEFAULT_LIMIT + 1)])
    assert many.metrics == ["mae", "rmse"]
    assert Task("y", "regression", metrics=["mse_per_target"]).metrics == ["mse_y"]


def test_regression_per_target_errors_by_hand():
    task = Task("t", "regression", target=["h", "w"],
                metrics=["mae", "rmse", "mse", "mae_per_target", "rmse_per_target",
                         "mse_per_target"])
    y_true = np.array([[10.0, 1.0], [20.0, 2.0], [0.0, 0.0]], "float32")
    y_pred = np.array([[13.0, 1.5], [16.0, 2.0], [100.0, 100.0]], "float32")
    weight = np.array([1, 1, 0], "float32")
    got = _results(task.build_metrics(), y_true, y_pred, weight)
    # h errors 3, -4; w errors 0.5, 0; row 3 masked.
    mse_h, mse_w = (9 + 16) / 2, (0.25 + 0) / 2
    assert got == pytest.approx({
        "t_mae_h": 3.5, "t_mae_w": 0.25, "t_mae": (3.5 + 0.25) / 2,
        "t_mse_h": mse_h, "t_mse_w": mse_w, "t_mse": (mse_h + mse_w) / 2,
        "t_rmse_h": mse_h ** 0.5, "t_rmse_w": mse_w ** 0.5,
        # The root of the mean of the columns' MSEs, not the mean of RMSEs.
        "t_rmse": ((mse_h + mse_w) / 2) ** 0.5}, rel=1e-6)


# === Config ===


@pytest.mark.parametrize("declare", [
    {"type": "multilabel", "target": ["sports", "news", "Sci-Fi", "micro"]},
    {"type": "multilabel", "target": ["a", "b"], "metrics": ["auc_per_label",
                                                              "auc_macro"]},
    {"type": "regression", "target": ["mass (g)", "length_mm"]},
])
def test_expanded_metrics_survive_the_config(declare):
    task = Task("t", **declare)
    config = task.get_config()
    assert config["metrics"] == task.metrics
    assert not any(m.endswith(("_per_label", "_per_target"))
                   for m in config["metrics"])
    for clone in (Task.from_config(config), kmtl.tasks.get(dict(config)),
                  kmtl.tasks.deserialize(kmtl.tasks.serialize(task))):
        assert clone.get_config() == config
        assert [m.get_config() for m in clone.build_metrics()] == [
            m.get_config() for m in task.build_metrics()]


# === Through a model ===


def _table(rows=60, seed=0):
    """A feature, three 0/1 labels and two targets of very different scales,
    with missing labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    frame = pd.DataFrame({
        "x": x,
        "sports": (x + rng.normal(size=rows) > 0).astype(float),
        "news": (rng.random(rows) > 0.6).astype(float),
        "Sci-Fi": (x - rng.normal(size=rows) > 0.3).astype(float),
        "mass (g)": 4000 + 500 * x + rng.normal(0, 200, rows),
        "length_mm": 40 + 3 * x + rng.normal(0, 1, rows),
    })
    frame.loc[[1, 7, 20, 33], "news"] = np.nan
    frame.loc[[2, 8, 41], "length_mm"] = np.nan
    return frame


def _model(frame):
    features = [Feature("x", "numeric").fit(frame)]
    tasks = [Task("tags", "multilabel",
                  target=["sports", "news", "Sci-Fi"]).fit(frame),
             Task("size", "regression", target=["mass (g)", "length_mm"]).fit(frame)]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,),
                             tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(make_dataset(frame, features, tasks, batch_size=16, shuffle=True),
              epochs=3, verbose=0)
    return features, tasks, model


def _bucketed(scores):
    """Keras's AUC sees a score only through the thresholds i / 199 below it:
    scores with the same count tie. scikit-learn on that count is its exact
    reference."""
    return np.ceil(scores.astype("float64") * 199)


def _reference(frame, tasks, predictions):
    """`{log key: value}` from scikit-learn and NumPy on the labelled rows."""
    tags, size = tasks
    labels, weight = tags.encode(frame)
    kept = weight > 0
    scores = _bucketed(predictions["tags"])
    expected = {
        "tags_auc": roc_auc_score(labels[kept], scores[kept], average="macro"),
        "tags_auc_micro": roc_auc_score(labels[kept], scores[kept],
                                        average="micro"),
    }
    for i, name in enumerate(["sports", "news", "Sci_Fi"]):
        expected[f"tags_auc_{name}"] = roc_auc_score(labels[kept, i],
                                                     scores[kept, i])
    labels, weight = size.encode(frame)
    kept = weight > 0
    error = predictions["size"][kept].astype("float64") - labels[kept]
    mae, mse = np.abs(error).mean(axis=0), (error ** 2).mean(axis=0)
    expected.update({"size_mae": mae.mean(), "size_rmse": mse.mean() ** 0.5})
    for i, name in enumerate(["mass_g", "length_mm"]):
        expected[f"size_mae_{name}"] = mae[i]
        expected[f"size_rmse_{name}"] = mse[i] ** 0.5
    return expected


def test_evaluate_reports_per_label_and_per_target_metrics(tmp_path):
    frame = _table()
    features, tasks, model = _model(frame)
    dataset = make_dataset(frame, features, tasks, batch_size=16)
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    predictions = model.predict(make_dataset(frame, features, None, 16), verbose=0)
    expected = _reference(frame, tasks, predictions)
    assert {k: logs[k] for k in expected} == pytest.approx(expected, rel=1e-4)
    assert set(logs) >= {f"{t.name}_{m}" for t in tasks for m in t.metrics}
    # Per-target errors are in each target's own units: grams and millimetres.
    assert logs["size_mae_mass_g"] > 50 * logs["size_mae_length_mm"]
    # Run results (metrics.json) keep every metric under its task.
    nested = nested_metrics(logs, tasks)
    assert list(nested["tags"]) == ["loss"] + tasks[0].metrics
    assert list(nested["size"]) == ["loss"] + tasks[1].metrics

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [t.metrics for t in loaded.tasks] == [t.metrics for t in tasks]
    assert "metrics" not in loaded.get_compile_config()
    again = loaded.evaluate(dataset, return_dict=True, verbose=0)
    assert again == pytest.approx(logs, rel=1e-6)
