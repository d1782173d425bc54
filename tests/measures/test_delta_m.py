"""Δm, relative changes, seed summaries, the negative-transfer flag and the
`DeltaM` callback, against numbers worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.callbacks.delta_m import DeltaM
from kmtl.data import make_dataset
from kmtl.features import Feature
from kmtl.measures.delta_m import delta_m
from kmtl.measures.delta_m import metric_direction
from kmtl.measures.delta_m import negative_transfer
from kmtl.measures.delta_m import relative_changes
from kmtl.measures.delta_m import summarize_runs

# One binary task with two metrics (so the two averages differ) and one
# regression task with a lower-is-better metric.
RESULTS = {"income": {"auc": 0.90, "accuracy": 0.80, "loss": 0.30},
           "price": {"mae": 12.0, "loss": 0.50}}
BASELINES = {"income": {"auc": 0.80, "accuracy": 0.85, "loss": 0.35},
             "price": {"mae": 10.0, "loss": 0.40}}
# income auc: 100 (0.90 - 0.80) / 0.80 = +12.5
# income accuracy: 100 (0.80 - 0.85) / 0.85 = -100/17
# price mae (lower is better): -100 (12 - 10) / 10 = -20
AUC, ACCURACY, MAE = 12.5, -100.0 / 17.0, -20.0
# flat: (12.5 - 100/17 - 20) / 3 = (212.5 - 100 - 340) / 51 = -227.5 / 51
FLAT = -227.5 / 51.0
# task: ((12.5 - 100/17) / 2 - 20) / 2 = (112.5 / 34 - 20) / 2 = -567.5 / 68
TASK = -567.5 / 68.0


def test_metric_directions():
    for name in ("auc", "accuracy", "precision", "recall", "top_k_accuracy", "r2"):
        assert metric_direction(name) == 1
    for name in ("loss", "crossentropy", "mae", "mse", "rmse"):
        assert metric_direction(name) == -1
    assert metric_direction("ndcg", {"ndcg": 1}) == 1
    assert metric_direction("auc", {"auc": -1}) == -1


def test_per_label_and_per_target_metrics_take_their_metric_s_direction():
    """`auc_micro`, `auc_<label>`: higher is better; `mae_<target>`,
    `rmse_<target>`: lower; the longest known prefix decides
    (`mean_squared_error_x` is an error, not a mean)."""
    for name in ("auc_micro", "auc_macro", "auc_sci_fi", "accuracy_a"):
        assert metric_direction(name) == 1
    for name in ("mae_height", "rmse_weight_kg", "mean_squared_error_x"):
        assert metric_direction(name) == -1
    with pytest.raises(ValueError, match="Unknown metric 'aucx'"):
        metric_direction("aucx")


def test_unknown_metric_names_the_fix():
    with pytest.raises(ValueError, match=r"'ndcg'.*directions=\{'ndcg': \+1\}"):
        metric_direction("ndcg")
    with pytest.raises(ValueError, match=r"directions\['ndcg'\] must be \+1"):
        metric_direction("ndcg", {"ndcg": 2})


def test_relative_changes_by_hand():
    changes = relative_changes(RESULTS, BASELINES)
    assert set(changes) == {"income", "price"}
    assert set(changes["income"]) == {"auc", "accuracy"}  # "loss" left out
    assert changes["income"]["auc"] == pytest.approx(AUC)
    assert changes["income"]["accuracy"] == pytest.approx(ACCURACY)
    assert changes["price"]["mae"] == pytest.approx(MAE)
    # A lower loss is better: 100 * -(0.30 - 0.35) / 0.35 = +100/7.
    with_loss = relative_changes(RESULTS, BASELINES, metrics=["loss"])
    assert with_loss["income"]["loss"] == pytest.approx(100.0 / 7.0)
    assert with_loss["price"]["loss"] == pytest.approx(-25.0)


def test_relative_change_of_a_negative_baseline_keeps_the_sign():
    # R^2 from -0.5 to -0.25 is better: 100 (-0.25 + 0.5) / |-0.5| = +50.
    changes = relative_changes({"t": {"r2": -0.25}}, {"t": {"r2": -0.5}})
    assert changes["t"]["r2"] == pytest.approx(50.0)


def test_delta_m_both_conventions():
    assert delta_m(RESULTS, BASELINES, average="flat") == pytest.approx(FLAT)
    assert delta_m(RESULTS, BASELINES, average="task") == pytest.approx(TASK)
    assert delta_m(RESULTS, BASELINES) == pytest.approx(TASK)  # the default
    # One metric per task: the conventions agree, (12.5 - 20) / 2.
    one_each = {"income": ["auc"], "price": ["mae"]}
    for average in ("flat", "task"):
        assert delta_m(RESULTS, BASELINES, one_each,
                       average=average) == pytest.approx(-3.75)


def test_delta_m_metric_selection_and_directions():
    assert delta_m(RESULTS, BASELINES, {"income": ["auc"]}) == pytest.approx(AUC)
    # A list keeps the metrics each task has.
    assert delta_m(RESULTS, BASELINES, ["auc", "mae"]) == pytest.approx(-3.75)
    # Flipping mae's direction flips its sign: (12.5 + 20) / 2.
    assert delta_m(RESULTS, BASELINES, ["auc", "mae"],
                   directions={"mae": 1}) == pytest.approx(16.25)
    # Identical results: 0.
    assert delta_m(BASELINES, BASELINES) == 0.0


def test_delta_m_errors_name_the_task_and_metric():
    with pytest.raises(ValueError, match="baseline for task 'price'"):
        delta_m(RESULTS, {"income": BASELINES["income"]})
    with pytest.raises(ValueError, match="metric 'accuracy' of task 'income'"):
        delta_m(RESULTS, {**BASELINES, "income": {"auc": 0.8}})
    with pytest.raises(ValueError, match="task 'price' metric 'mae' is 0"):
        delta_m(RESULTS, {**BASELINES, "price": {"mae": 0.0}})
    with pytest.raises(ValueError, match="Task 'price' has no result for metric "
                                         "'auc'"):
        delta_m(RESULTS, BASELINES, {"price": ["auc"]})
    with pytest.raises(ValueError, match="No task has a result for metric 'f1'"):
        delta_m(RESULTS, BASELINES, ["auc", "f1"])
    with pytest.raises(ValueError, match="Unknown average 'macro'"):
        delta_m(RESULTS, BASELINES, average="macro")
    with pytest.raises(ValueError, match="not finite"):
        delta_m({"price": {"mae": math.nan}}, BASELINES)


def test_summarize_runs_uses_the_sample_std():
    runs = [{"t": {"auc": 0.70, "mae": 3.0}}, {"t": {"auc": 0.74}},
            {"t": {"auc": 0.72, "mae": 5.0}}]
    summary = summarize_runs(runs)
    # mean 0.72; sample std sqrt((0.02^2 + 0.02^2 + 0) / (3 - 1)) = 0.02
    assert summary["t"]["auc"]["mean"] == pytest.approx(0.72)
    assert summary["t"]["auc"]["std"] == pytest.approx(0.02)
    assert summary["t"]["auc"]["n"] == 3
    # Two runs have mae: mean 4, std sqrt((1 + 1) / 1).
    assert summary["t"]["mae"] == pytest.approx(
        {"mean": 4.0, "std": math.sqrt(2.0), "n": 2})
    assert summarize_runs(runs[:1])["t"]["auc"] == {"mean": 0.70, "std": 0.0, "n": 1}
    with pytest.raises(ValueError, match="at least one run"):
        summarize_runs([])


def test_negative_transfer_beyond_seed_noise():
    multi = [{"a": {"auc": 0.70}, "b": {"auc": 0.78}, "c": {"mae": 12.0}},
             {"a": {"auc": 0.72}, "b": {"auc": 0.82}, "c": {"mae": 12.2}}]
    single = [{"a": {"auc": 0.80}, "b": {"auc": 0.80}, "c": {"mae": 10.0}},
              {"a": {"auc": 0.82}, "b": {"auc": 0.84}, "c": {"mae": 10.2}}]
    report = negative_transfer(multi, single)
    # a: 0.71 +/- 0.0141 vs 0.81 +/- 0.0141: worse by 0.10 > 0.0283, apart.
    row = report["a"]["metrics"]["auc"]
    assert row["multi_task_mean"] == pytest.approx(0.71)
    assert row["single_task_std"] == pytest.approx(0.02 / math.sqrt(2.0))
    assert row["multi_task_n"] == row["single_task_n"] == 2
    assert row["relative_change"] == pytest.approx(100.0 * (0.71 - 0.81) / 0.81)
    assert row["negative"] and report["a"]["negative"]
    # b: 0.80 +/- 0.0283 vs 0.82 +/- 0.0283: worse by 0.02 < 0.0566, overlapping.
    assert report["b"]["relative_change"] < 0
    assert not report["b"]["negative"]
    # c: mae 12.1 vs 10.1, lower is better: worse and apart.
    assert report["c"]["relative_change"] == pytest.approx(-100.0 * 2.0 / 10.1)
    assert report["c"]["negative"]
    # Swapping the sides: better is never negative transfer.
    assert not any(task["negative"]
                   for task in negative_transfer(single, multi).values())


def test_a_task_is_flagged_when_any_metric_is():
    multi = [{"t": {"auc": 0.90, "accuracy": 0.70}}]
    single = [{"t": {"auc": 0.80, "accuracy": 0.71}}]
    report = negative_transfer(multi, single)["t"]
    # One run a side: std 0, so any drop counts.
    assert not report["metrics"]["auc"]["negative"]
    assert report["metrics"]["accuracy"]["negative"]
    assert report["negative"]
    # The task's change is the mean of its metrics': (12.5 - 100/71) / 2.
    assert report["relative_change"] == pytest.approx((12.5 - 100.0 / 71.0) / 2.0)
    # Counting auc only clears the flag.
    assert not negative_transfer(multi, single, {"t": ["auc"]})["t"]["negative"]


def _epoch_logs():
    return {"loss": 1.0, "val_loss": 0.9,
            **{f"val_{task}_{name}": value for task, values in RESULTS.items()
               for name, value in values.items()}}


def test_delta_m_callback_from_logs():
    logs = _epoch_logs()
    DeltaM(BASELINES).on_epoch_end(0, logs)
    assert logs["val_delta_m"] == pytest.approx(TASK)
    logs = _epoch_logs()
    DeltaM(BASELINES, average="flat").on_epoch_end(0, logs)
    assert logs["val_delta_m"] == pytest.approx(FLAT)
    logs = {f"income_{k}": v for k, v in RESULTS["income"].items()}
    DeltaM({"income": BASELINES["income"]}, metrics=["auc"],
           prefix="").on_epoch_end(0, logs)
    assert logs["delta_m"] == pytest.approx(AUC)


def test_delta_m_callback_names_the_missing_key():
    logs = {"loss": 1.0, "income_auc": 0.9, "price_mae": 12.0}
    with pytest.raises(ValueError, match=r"no 'val_income_auc'.*validation_data"
                                         r".*'income_auc', 'loss', 'price_mae'"):
        DeltaM(BASELINES).on_epoch_end(0, logs)
    with pytest.raises(ValueError, match="Unknown average"):
        DeltaM(BASELINES, average="mean")


def test_delta_m_callback_in_fit():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(32, 2)), columns=["a", "b"])
    frame["y"] = frame["a"] - frame["b"]
    frame["z"] = (frame["a"] > 0).astype(float)
    tasks = [kmtl.Task("y", "regression"), kmtl.Task("z", "binary")]
    for task in tasks:
        task.fit(frame)
    features = [Feature(c, "numeric").fit(frame) for c in "ab"]
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=())
    model.compile(optimizer="sgd")
    data = make_dataset(frame, features, tasks, 32)
    baselines = {"y": {"mae": 0.5}, "z": {"auc": 0.9}}
    history = model.fit(data, validation_data=data, epochs=2, verbose=0,
                        shuffle=False,
                        callbacks=[DeltaM(baselines, average="flat")]).history
    for epoch in range(2):
        expected = (-100.0 * (history["val_y_mae"][epoch] - 0.5) / 0.5
                    + 100.0 * (history["val_z_auc"][epoch] - 0.9) / 0.9) / 2.0
        assert history["val_delta_m"][epoch] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="no 'val_y_mae'"):
        model.fit(data, epochs=1, verbose=0, shuffle=False,
                  callbacks=[DeltaM(baselines)])
