"""Tests for the compare report: the analysis of run records (Δm per seed, its
spread, negative transfer, the verdict), report.md, report.json and the plots,
on hand-made runs whose numbers are worked out below (no training)."""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from kmtl.plotting.curves import plot_curves
from kmtl.plotting.curves import plot_delta_m
from kmtl.plotting.curves import plot_task_weights
from kmtl.plotting.curves import seed_band
from kmtl.runs.comparison import analyse
from kmtl.runs.comparison import seed_list
from kmtl.runs.config import parse_config
from kmtl.runs.report import render_markdown
from kmtl.runs.report import verdict_text
from kmtl.runs.report import weights_change
from kmtl.runs.report import write_report

METRICS = {"a": ["auc"], "b": ["mae"]}
# Single-task baselines: a's auc 0.80 and 0.90 (mean 0.85, sample std 0.0707),
# b's mae 2.0 and 4.0 (mean 3.0, sample std 1.414).
SINGLE = {0: {"a": 0.80, "b": 2.0}, 1: {"a": 0.90, "b": 4.0}}
# Variant v, seed 0: a +10 % (0.935 vs 0.85), b 0 % -> Δm 5; seed 1: a 0 %,
# b +20 % (mae 2.4 vs 3.0, lower is better) -> Δm 10. Mean 7.5, std 3.5355.
# Variant w, both seeds: a -10 % (0.765), b -10 % (3.3) -> Δm -10, std 0. Its
# a (0.765 +/- 0) is below 0.85 by 0.085 > 0.0707: negative transfer; its b
# (3.3) is within 1.414 of 3.0: not.
VARIANTS = {"v": {0: {"a": 0.935, "b": 3.0}, 1: {"a": 0.85, "b": 2.4}},
            "w": {0: {"a": 0.765, "b": 3.3}, 1: {"a": 0.765, "b": 3.3}}}


def _metrics(a, b):
    return {"test": {"a": {"loss": 0.5, "auc": a}, "b": {"loss": 1.0, "mae": b}}}


def _history(epochs, weights=None):
    history = {"loss": list(np.linspace(1.0, 0.5, epochs)),
               "val_a_auc": list(np.linspace(0.6, 0.8, epochs)),
               "val_b_mae": list(np.linspace(4.0, 3.0, epochs))}
    for task in ("a", "b"):
        history[f"{task}_weight"] = (weights or {}).get(task, [1.0] * epochs)
    return history


def make_runs():
    runs = []
    for seed, values in SINGLE.items():
        for task in ("a", "b"):
            history = {k: v for k, v in _history(3).items()
                       if k.startswith(("loss", f"val_{task}", f"{task}_"))}
            runs.append({"model": "single_task", "tasks": [task], "seed": seed,
                         "metrics": _metrics(values["a"], values["b"]),
                         "history": history, "epochs": 3, "seconds": 1.0,
                         "parameters": 100})
    for name, seeds in VARIANTS.items():
        for seed, values in seeds.items():
            weights = ({"a": [1.0, 1.2, 1.4], "b": [1.0, 0.9, 0.7]} if name == "w"
                       else None)
            runs.append({"model": name, "tasks": ["a", "b"], "seed": seed,
                         "metrics": _metrics(values["a"], values["b"]),
                         "history": _history(3 - seed, weights), "epochs": 3 - seed,
                         "seconds": 2.0 + seed, "parameters": 150})
    return runs


def make_report(names=("v", "w")):
    runs = [r for r in make_runs() if r["model"] in ("single_task", *names)]
    analysis = analyse(runs, list(names), "test", METRICS, {}, "task")
    matrices = {"v": {"seed": 0, "tasks": ["a", "b"], "batches": 2,
                      "cosines": [[1.0, -0.25], [-0.25, 1.0]],
                      "affinity": [[0.002, float("nan")], [-0.001, 0.003]]}}
    return {
        "name": "toy", "created": "2026-01-01T00:00:00", "config": {"name": "toy"},
        "tasks": [{"name": "a"}, {"name": "b"}],
        "rows": {"train": 80, "validation": 10, "test": 10},
        "seeds": [0, 1], "split": "test", "metrics": METRICS,
        "directions": {"auc": 1, "mae": -1}, "average": "task",
        "baseline": {"architecture": "mmoe", "options": {}},
        "variants": [{"name": n, "architecture": "mmoe", "options": {},
                      "weighting": "ew" if n == "v" else "uncertainty",
                      "gradients": "parameters"} for n in names],
        "runs": runs, **analysis,
        "interference": {k: v for k, v in matrices.items() if k in names},
        "seconds": 12.0,
    }


# === analyse ===


def test_delta_m_per_seed_against_the_mean_baseline():
    analysis = analyse(make_runs(), ["v", "w"], "test", METRICS, {}, "task")
    v = analysis["results"]["v"]["delta_m"]
    assert v["per_seed"] == pytest.approx([5.0, 10.0])
    assert v["mean"] == pytest.approx(7.5)
    assert v["std"] == pytest.approx(np.sqrt(12.5))      # sample std of 5 and 10
    assert v["n"] == 2
    w = analysis["results"]["w"]["delta_m"]
    assert w["per_seed"] == pytest.approx([-10.0, -10.0])
    assert w["std"] == 0.0


def test_relative_changes_and_summaries_use_the_means():
    analysis = analyse(make_runs(), ["v", "w"], "test", METRICS, {}, "task")
    v = analysis["results"]["v"]
    # Means over seeds: a 0.8925 (+5 % of 0.85), b 2.7 (+10 % of 3.0).
    assert v["relative_changes"]["a"]["auc"] == pytest.approx(5.0)
    assert v["relative_changes"]["b"]["mae"] == pytest.approx(10.0)
    assert v["summary"]["a"]["auc"]["mean"] == pytest.approx(0.8925)
    baseline = analysis["single_task"]["summary"]
    assert baseline["a"]["auc"]["mean"] == pytest.approx(0.85)
    assert baseline["b"]["mae"]["std"] == pytest.approx(np.sqrt(2.0))
    # The baseline's cost: the per-task models of one seed together.
    assert analysis["single_task"]["parameters"] == 200
    assert v["parameters"] == 150
    assert v["seconds"] == pytest.approx(2.5)


def test_negative_transfer_and_verdict():
    analysis = analyse(make_runs(), ["v", "w"], "test", METRICS, {}, "task")
    w = analysis["results"]["w"]["negative_transfer"]
    assert w["a"]["negative"] is True and w["b"]["negative"] is False
    v = analysis["results"]["v"]["negative_transfer"]
    assert not v["a"]["negative"] and not v["b"]["negative"]
    assert analysis["verdict"] == {"best": "v", "delta_m": pytest.approx(7.5),
                                   "std": pytest.approx(np.sqrt(12.5)), "n": 2,
                                   "negative_transfer": []}
    only_w = analyse(make_runs(), ["w"], "test", METRICS, {}, "task")["verdict"]
    assert only_w["best"] == "w" and only_w["negative_transfer"] == ["a"]


def test_flat_average_counts_every_metric():
    # With one metric per task "flat" and "task" agree; count b's loss too and
    # they differ. v, seed 0: a auc +10; b mae 0, loss 0 -> task 5, flat 10/3.
    metrics = {"a": ["auc"], "b": ["mae", "loss"]}
    flat = analyse(make_runs(), ["v"], "test", metrics, {}, "flat")
    task = analyse(make_runs(), ["v"], "test", metrics, {}, "task")
    assert flat["results"]["v"]["delta_m"]["per_seed"][0] == pytest.approx(10 / 3)
    assert task["results"]["v"]["delta_m"]["per_seed"][0] == pytest.approx(5.0)


def test_seed_list():
    config = parse_config({"data": {"dataset": "penguins"},
                           "tasks": [{"name": "sex", "type": "binary"}],
                           "compare": {"seeds": 3}, "training": {"seed": 5}})
    assert seed_list(config) == [5, 6, 7]
    assert seed_list(config, 2) == [5, 6]
    assert seed_list(config, [11, 3]) == [11, 3]


# === report.md ===


def test_verdict_names_the_best_variant_and_no_losers():
    text = verdict_text(make_report())
    assert text.startswith("**Best variant by Δm: `v`**, Δm = +7.50 % ± 3.54 % "
                           "(mean ± std over 2 seeds) on the test split")
    assert "(negative transfer): none." in text
    assert "Ranking: `v` +7.50 %, `w` -10.00 %." in text


def test_verdict_when_multi_task_loses():
    text = verdict_text(make_report(names=("w",)))
    assert "`w`**, Δm = -10.00 % ± 0.00 %" in text
    assert "No variant beats the single-task baselines" in text
    # a's relative change of the means: (0.765 - 0.85) / 0.85 = -10 %.
    assert "(negative transfer): `a` (-10.00 %)." in text


def test_markdown_tables():
    report = make_report()
    report["plots"] = {"curves": {}, "delta_m": "plots/delta_m.png",
                       "task_weights": {}, "interference": {}}
    text = render_markdown(report)
    lines = text.splitlines()
    assert lines[0] == "# Does multi-task learning help? `toy`"
    assert lines[2] == verdict_text(report)
    assert ("| single_task (one model per task) | 0.8500 ± 0.0707 | 3.0000 ± 1.4142 "
            "| 200 |") in lines
    assert "| v | 0.8925 ± 0.0601 | 2.7000 ± 0.4243 | 150 |" in lines
    assert ("| `v` | mmoe | ew | +7.50 ± 3.54 | +5.00, +10.00 | +5.00 | +10.00 | "
            "none | 150 | 2.5 |") in lines
    assert ("| `w` | mmoe | uncertainty | -10.00 ± 0.00 | -10.00, -10.00 | "
            "-10.00 ⚠ | -10.00 | a | 150 | 2.5 |") in lines
    # v ranks above w.
    assert text.index("| `v` |") < text.index("| `w` |")
    assert "Not measured" in text


# === write_report ===


def test_write_report_files_and_plots(tmp_path):
    report = make_report()
    json_path, markdown_path = write_report(report, str(tmp_path))
    saved = json.loads((tmp_path / "report.json").read_text())
    assert json_path == str(tmp_path / "report.json")
    # Strict JSON: the NaN affinity cell is null.
    assert saved["interference"]["v"]["affinity"][0][1] is None
    assert saved["results"]["v"]["delta_m"]["per_seed"] == pytest.approx([5, 10])
    plots = saved["plots"]
    assert set(plots["curves"]) == {"a", "b"}
    # Only w's weighting moves the task weights; v's stay at 1.
    assert list(plots["task_weights"]) == ["w"]
    assert list(plots["interference"]) == ["v"]
    paths = [*plots["curves"].values(), plots["delta_m"],
             *plots["task_weights"].values(), *plots["interference"].values()]
    markdown = (tmp_path / "report.md").read_text()
    assert markdown_path == str(tmp_path / "report.md")
    for path in paths:
        assert not path.startswith("/") and path.startswith("plots/")
        image = imread(tmp_path / path)
        assert image.shape[0] > 50 and image.shape[1] > 50
        assert f"]({path})" in markdown
    assert "Measured on 2 fixed probe batch(es)" in markdown


def test_weights_change():
    assert not weights_change([{"a_weight": [1.0, 1.0, 1.0]}], ["a"])
    assert weights_change([{"a_weight": [1.0, 1.0]}, {"a_weight": [1.0, 1.1]}],
                          ["a"])
    assert not weights_change([{"loss": [1.0, 0.5]}], ["a"])


# === plots ===


def test_seed_band_over_runs_of_different_lengths():
    mean, low, high = seed_band([[1.0, 2.0, 3.0], [3.0, 4.0]])
    np.testing.assert_allclose(mean, [2.0, 3.0, 3.0])
    np.testing.assert_allclose(low, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(high, [3.0, 4.0, 3.0])


def test_plot_curves_draws_one_line_per_model():
    figure = plot_curves({"st": [{"val_loss": [1.0, 0.8]}],
                          "mt": [{"val_loss": [0.9, 0.7, 0.6]},
                                 {"val_loss": [1.1, 0.9]}],
                          "absent": [{"loss": [1.0]}]}, "val_loss")
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"st", "mt"}
    np.testing.assert_allclose(lines["mt"].get_ydata(), [1.0, 0.8, 0.6])
    np.testing.assert_allclose(lines["mt"].get_xdata(), [1, 2, 3])


def test_plot_curves_without_the_key():
    with pytest.raises(ValueError, match=r"No history holds the log 'val_auc'.*"
                                         r"\['loss'\]"):
        plot_curves({"st": [{"loss": [1.0]}]}, "val_auc")


def test_plot_delta_m_bars_and_error_bars():
    figure = plot_delta_m(["good", "bad"], [2.0, -1.5], [0.5, 0.25])
    ax = figure.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([2.0, -1.5])
    colours = [patch.get_facecolor()[:3] for patch in ax.patches]
    assert colours[0] != colours[1]
    with pytest.raises(ValueError, match="equal length"):
        plot_delta_m(["a"], [1.0, 2.0], [0.0])


def test_plot_task_weights_means_over_seeds():
    figure = plot_task_weights([{"a_weight": [1.0, 2.0], "b_weight": [1.0, 1.0]},
                                {"a_weight": [3.0, 4.0], "b_weight": [1.0, 1.0]}],
                               ["a", "b"])
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    np.testing.assert_allclose(lines["a"].get_ydata(), [2.0, 3.0])
    np.testing.assert_allclose(lines["b"].get_ydata(), [1.0, 1.0])
    with pytest.raises(ValueError, match="No history holds a <task>_weight log"):
        plot_task_weights([{"loss": [1.0]}], ["a"])
