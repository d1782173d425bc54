"""End-to-end tests of `kmtl compare` on the penguins compare example.

One compare runs per module, through the command line in-process
(`kmtl.cli.main`, what the `kmtl` script calls): the example with two of its
tasks (species: accuracy, higher is better; body_mass_g: mae and rmse, lower is
better), 2 seeds and 2 epochs, i.e. 2 single-task and 2 multi-task models per
seed. The tests then read its directory back and recompute its numbers.
"""

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run_cli
from helpers import snapshot
from matplotlib.image import imread

from kmtl.errors import ConfigError
from kmtl.measures.delta_m import delta_m
from kmtl.runs.comparison import compare
from kmtl.runs.config import SINGLE_TASK
from kmtl.runs.config import as_run_config
from kmtl.runs.config import load_config
from kmtl.runs.training import RunResult

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "penguins_compare.yaml"
TASKS = ["species", "body_mass_g"]
VARIANTS = ["mmoe_ew", "shared_bottom_uncertainty"]
SEEDS = [0, 1]
EPOCHS = 2


def write_config(path, **compare):
    """The example restricted to `TASKS`, with `compare` keys overridden."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in TASKS]
    raw["compare"].update(compare)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    config = write_config(root / "penguins_compare.yaml",
                          interference={"enabled": True, "batches": 1, "every": 1})
    code, out, err = run_cli("compare", config, "--seeds", len(SEEDS), "--epochs",
                             EPOCHS, "--output-dir", root / "runs")
    assert code == 0, err[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("Compare directory: ")
    directory = Path(last.removeprefix("Compare directory: "))
    report = json.loads((directory / "report.json").read_text())
    return {"root": root, "out": out, "directory": directory, "report": report,
            "markdown": (directory / "report.md").read_text()}


def _baseline_means(report):
    """Mean over seeds of each single-task model's score, from the runs."""
    split = report["split"]
    means = {}
    for task in TASKS:
        runs = [r for r in report["runs"]
                if r["model"] == "single_task" and r["tasks"] == [task]]
        assert sorted(r["seed"] for r in runs) == SEEDS
        means[task] = {m: float(np.mean([r["metrics"][split][task][m] for r in runs]))
                       for m in runs[0]["metrics"][split][task]}
    return means


# === The compare directory ===


@pytest.mark.slow
def test_directory_holds_the_report(compared):
    directory = compared["directory"]
    assert directory.parent == compared["root"] / "runs"
    assert directory.name.startswith("penguins-compare-")
    assert sorted(p.name for p in directory.iterdir()) == [
        "plots", "report.json", "report.md"]
    assert f"Report: {directory}/report.md" in compared["out"]


@pytest.mark.slow
def test_runs_cover_every_model_and_seed(compared):
    report = compared["report"]
    assert report["seeds"] == SEEDS
    assert [v["name"] for v in report["variants"]] == VARIANTS
    models = sorted((r["model"], tuple(r["tasks"]), r["seed"]) for r in report["runs"])
    expected = [(m, tuple(TASKS), s) for m in VARIANTS for s in SEEDS] + [
        ("single_task", (t,), s) for t in TASKS for s in SEEDS]
    assert models == sorted(expected)
    for run in report["runs"]:
        assert 1 <= run["epochs"] <= EPOCHS
        assert len(run["history"]["val_loss"]) == run["epochs"]
        assert run["parameters"] > 0 and run["seconds"] > 0
        assert set(run["metrics"]) == {"validation", "test"}
        # A single-task model predicts, and so logs, its own task only.
        logged = {task for task in TASKS
                  if any(key.startswith(f"{task}_") for key in run["history"])}
        assert logged == set(run["tasks"])
    # The baseline is the config's architecture with one task: a one-task MMoE
    # has fewer parameters than the three-task one, more than its tower alone.
    single = [r for r in report["runs"] if r["model"] == "single_task"]
    mmoe = [r for r in report["runs"] if r["model"] == "mmoe_ew"]
    assert report["baseline"]["architecture"] == "mmoe"
    assert all(r["parameters"] < mmoe[0]["parameters"] for r in single)


@pytest.mark.slow
def test_metrics_counted_with_their_directions(compared):
    report = compared["report"]
    assert report["metrics"] == {"species": ["accuracy"],
                                 "body_mass_g": ["mae", "rmse"]}
    assert report["directions"] == {"accuracy": 1, "mae": -1, "rmse": -1}


@pytest.mark.slow
def test_delta_m_equals_delta_m_recomputed_from_the_runs(compared):
    report = compared["report"]
    baseline = _baseline_means(report)
    for name in VARIANTS:
        runs = sorted((r for r in report["runs"] if r["model"] == name),
                      key=lambda r: r["seed"])
        expected = [delta_m(r["metrics"]["test"], baseline, report["metrics"],
                            average="task") for r in runs]
        scores = report["results"][name]["delta_m"]
        assert scores["per_seed"] == pytest.approx(expected, rel=1e-9)
        assert scores["mean"] == pytest.approx(np.mean(expected), rel=1e-9)
        assert scores["std"] == pytest.approx(np.std(expected, ddof=1), rel=1e-9)
        # By hand for the first seed: species' accuracy change, and the mean of
        # body_mass_g's mae and rmse changes (lower is better), averaged.
        test = runs[0]["metrics"]["test"]
        species = (test["species"]["accuracy"] / baseline["species"]["accuracy"]
                   - 1)
        mass = np.mean([1 - test["body_mass_g"][m] / baseline["body_mass_g"][m]
                        for m in ("mae", "rmse")])
        assert scores["per_seed"][0] == pytest.approx(50 * (species + mass))


@pytest.mark.slow
def test_verdict_names_the_best_variant(compared):
    report = compared["report"]
    means = {n: report["results"][n]["delta_m"]["mean"] for n in VARIANTS}
    best = max(means, key=means.get)
    verdict = report["verdict"]
    assert verdict["best"] == best
    assert verdict["delta_m"] == means[best]
    lost = [t for t, flags in report["results"][best]["negative_transfer"].items()
            if flags["negative"]]
    assert verdict["negative_transfer"] == lost
    lines = compared["markdown"].splitlines()
    assert lines[0] == "# Does multi-task learning help? `penguins`"
    std = report["results"][best]["delta_m"]["std"]
    assert lines[2].startswith(f"**Best variant by Δm: `{best}`**, Δm = "
                               f"{means[best]:+.2f} % ± {std:.2f} %")
    assert (", ".join(f"`{t}`" for t in lost) if lost else "none") in lines[2]


@pytest.mark.slow
def test_markdown_tables_hold_every_model(compared):
    markdown = compared["markdown"]
    assert "| single_task (one model per task) |" in markdown
    for name in VARIANTS:
        assert f"| {name} |" in markdown and f"| `{name}` |" in markdown


@pytest.mark.slow
def test_plots_are_pngs_referenced_by_relative_path(compared):
    report, directory = compared["report"], compared["directory"]
    plots = report["plots"]
    assert set(plots["curves"]) == set(TASKS)
    # Uncertainty weighting moves the task weights; equal weighting does not.
    assert list(plots["task_weights"]) == ["shared_bottom_uncertainty"]
    assert sorted(plots["interference"]) == sorted(VARIANTS)
    paths = [*plots["curves"].values(), plots["delta_m"],
             *plots["task_weights"].values(), *plots["interference"].values()]
    for path in paths:
        image = imread(directory / path)
        assert image.shape[0] > 50 and image.shape[1] > 50, path
        assert f"]({path})" in compared["markdown"]
    assert sorted(p.name for p in (directory / "plots").iterdir()) == sorted(
        Path(p).name for p in paths)


@pytest.mark.slow
def test_interference_matrices(compared):
    for name in VARIANTS:
        matrices = compared["report"]["interference"][name]
        assert matrices["seed"] == SEEDS[0] and matrices["tasks"] == TASKS
        cosines = np.array(matrices["cosines"], dtype=float)
        affinity = np.array(matrices["affinity"], dtype=float)
        assert cosines.shape == affinity.shape == (2, 2)
        # A gradient's cosine with itself is 1; the matrix is symmetric.
        np.testing.assert_allclose(np.diag(cosines), 1.0, atol=1e-5)
        np.testing.assert_allclose(cosines, cosines.T, atol=1e-6)
        assert np.all(np.abs(cosines) <= 1 + 1e-6)
        # A task's own SGD step lowers its own loss on the probe batch.
        assert np.all(np.diag(affinity) > 0)


# === The Python API; never overwriting ===


@pytest.mark.slow
def test_python_compare_returns_the_report_in_a_new_directory(compared,
                                                              monkeypatch):
    """`compare()` with a stand-in for the training run (the real one is tested
    through the CLI above): single-task models score accuracy 0.8 and mae/rmse
    100, multi-task ones 0.9 and 90, so every seed's Δm is the mean of +12.5 %
    (species) and +10 % (body_mass_g) = 11.25 %."""
    calls, configs = [], []

    def fake_run(config, data, tasks=None, model=None, train_data=None,
                 callbacks=()):
        tasks = data.tasks if tasks is None else tasks
        single = len(tasks) == 1
        configs.append(config)
        calls.append((config.training.seed, [t.name for t in tasks], data,
                      config.model.architecture, config.training.weighting))
        scores = {"species": {"loss": 0.5, "accuracy": 0.8 if single else 0.9},
                  "body_mass_g": {"loss": 0.3, "mae": 100.0 if single else 90.0,
                                  "rmse": 100.0 if single else 90.0}}
        metrics = {split: {t.name: scores[t.name] for t in tasks}
                   for split in ("validation", "test")}
        history = {"loss": [1.0, 0.9], "val_loss": [1.1, 1.0]}
        for t in tasks:
            for name, value in scores[t.name].items():
                history[f"val_{t.name}_{name}"] = [value, value]
            history[f"{t.name}_weight"] = [1.0, 1.0]
        return RunResult(model=None, history=history, metrics=metrics, seconds=0.5,
                         parameters=10 if single else 30)

    # The module by import path: `kmtl.runs.comparison` as an attribute is the
    # function once the package exports it.
    module = importlib.import_module("kmtl.runs.comparison")
    monkeypatch.setattr(module, "run_model", fake_run)
    before = snapshot(compared["directory"])
    config = load_config(str(write_config(
        compared["root"] / "one_variant.yaml",
        variants=[{"name": "sb", "architecture": "shared_bottom",
                   "options": {"units": [8]}, "weighting": "ew"}],
        interference={"enabled": False, "batches": 1, "every": 1})))
    lines = []
    report = compare(config, output_dir=str(compared["root"] / "runs"), seeds=2,
                     log=lines.append)

    # Seeds change the training seed only; the data is prepared once.
    assert [(seed, names) for seed, names, *_ in calls] == [
        (0, ["species"]), (0, ["body_mass_g"]), (0, TASKS),
        (1, ["species"]), (1, ["body_mass_g"]), (1, TASKS)]
    assert len({id(data) for _, _, data, *_ in calls}) == 1
    # Baselines: the config's architecture, no weighting; the variant's own.
    assert {(a, w) for _, names, _, a, w in calls if len(names) == 1} == {
        ("mmoe", None)}
    assert {(a, w) for _, names, _, a, w in calls if len(names) == 2} == {
        ("shared_bottom", "ew")}
    scores = report["results"]["sb"]["delta_m"]
    assert scores["per_seed"] == pytest.approx([11.25, 11.25])
    assert scores["std"] == 0.0
    assert report["single_task"]["parameters"] == 20

    directory = Path(report["directory"])
    assert directory.parent == compared["directory"].parent
    assert directory != compared["directory"]
    assert snapshot(compared["directory"]) == before
    saved = json.loads((directory / "report.json").read_text())
    assert saved["results"] == report["results"]
    assert saved["verdict"] == report["verdict"] == {
        "best": "sb", "delta_m": pytest.approx(11.25), "std": 0.0, "n": 2,
        "negative_transfer": []}
    assert saved["interference"] == {} and saved["plots"]["interference"] == {}
    markdown = (directory / "report.md").read_text()
    assert "Not measured" in markdown and "+11.25 % ± 0.00 %" in markdown
    assert lines[-1] == f"Compare directory: {directory}"
    # The example sets every size key but the weight decay.
    assert lines[0] == "Defaults for 240 training rows: weight_decay 1.0"
    assert lines[1] == ("[1/6] seed 0 single-task species: species_accuracy=0.8000 "
                        "(0.5 s)")
    assert report["config"]["training"]["weight_decay"] == 1.0
    assert {c.training.weight_decay for c in configs} == {1.0}


# === Errors stop the compare before anything is written ===


def test_bad_variant_option_exits_2_before_writing(tmp_path):
    config = write_config(tmp_path / "bad.yaml", variants=[
        {"name": "bad", "architecture": "mmoe", "options": {"experts": 2}}])
    code, out, err = run_cli("compare", config, "--output-dir", tmp_path / "runs")
    assert code == 2
    assert err.startswith("kmtl compare: error: compare.variants[0] (bad): ")
    assert "'mmoe' does not take option(s) ['experts']" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_weighting_names_the_variant(tmp_path):
    config = load_config(str(write_config(tmp_path / "c.yaml", variants=[
        {"weighting": "ew"}, {"weighting": "pcgradd"}])))
    with pytest.raises(ConfigError, match=r"compare.variants\[1\].weighting: "
                                          r".*'pcgradd'"):
        compare(config, output_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_duplicate_variant_names(tmp_path):
    config = load_config(str(write_config(tmp_path / "c.yaml", variants=[
        {"architecture": "mmoe", "weighting": "ew"},
        {"name": "mmoe_ew", "weighting": "uncertainty"}])))
    with pytest.raises(ConfigError, match=r"\['mmoe_ew'\] occur more than once"):
        compare(config, output_dir=str(tmp_path / "runs"))


def test_unknown_counted_metric(tmp_path):
    config = load_config(str(write_config(tmp_path / "c.yaml",
                                          metrics={"species": ["auc"]})))
    with pytest.raises(ConfigError, match=r"compare.metrics.species: task "
                                          r"'species' does not compute 'auc'"):
        compare(config, output_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_one_task_is_not_a_comparison(tmp_path):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["tasks"] = raw["tasks"][:1]
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="compare needs at least two tasks"):
        compare(load_config(str(tmp_path / "one.yaml")))


def test_metricless_task_stops_before_training(tmp_path):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in TASKS]
    raw["tasks"][0]["metrics"] = []
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"Task 'species' has no metrics "
                                          r"\(tasks\[\]\.metrics: \[\]\)"):
        compare(load_config(str(tmp_path / "c.yaml")),
                output_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


# === Derived tasks (ESMM) ===


def _esmm_config(tmp_path, **compare_section):
    """A click / purchase table (purchase only after a click) and the ESMM
    tasks: ctr, cvr (no target) and ctcvr = ctr x cvr."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    click = rng.random(600) < 1 / (1 + np.exp(-x[:, 0]))
    buy = click & (rng.random(600) < 1 / (1 + np.exp(-x[:, 1])))
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    frame["click"], frame["buy"] = click.astype(float), buy.astype(float)
    frame.to_csv(tmp_path / "esmm.csv", index=False)
    raw = {
        "name": "esmm",
        "data": {"train": str(tmp_path / "esmm.csv"),
                 "split": {"method": "random", "validation": 0.2, "test": 0.2}},
        "features": {"numeric": ["x0", "x1", "x2"]},
        "tasks": [{"name": "ctr", "type": "binary", "target": "click"},
                  {"name": "cvr", "type": "binary", "target": []},
                  {"name": "ctcvr", "type": "binary", "target": "buy",
                   "derived_from": ["ctr", "cvr"]}],
        "model": {"architecture": "shared_bottom", "options": {"units": [8]},
                  "tower_units": [4]},
        "training": {"epochs": 2, "batch_size": 64, "verbose": 0},
        "export": {"enabled": False},
        "compare": {"variants": [{"name": "esmm", "architecture": "shared_bottom",
                                  "options": {"units": [8]}, "weighting": "ew"}],
                    "seeds": 1, "interference": {"enabled": False},
                    **compare_section},
    }
    (tmp_path / "esmm.yaml").write_text(yaml.safe_dump(raw))
    return load_config(str(tmp_path / "esmm.yaml"))


def test_esmm_compare_scores_labelled_tasks_against_plain_baselines(tmp_path):
    report = compare(_esmm_config(tmp_path), output_dir=str(tmp_path / "runs"),
                     log=lambda line: None)
    baselines = [r for r in report["runs"] if r["model"] == "single_task"]
    # CVR has no target: no baseline. CTCVR's baseline is a plain binary
    # model on `buy`, whose test AUC is a real number.
    assert [r["tasks"] for r in baselines] == [["ctr"], ["ctcvr"]]
    assert np.isfinite(baselines[1]["metrics"]["test"]["ctcvr"]["auc"])
    assert report["metrics"] == {"ctr": ["auc", "accuracy"],
                                 "ctcvr": ["auc", "accuracy"]}
    assert set(report["results"]["esmm"]["negative_transfer"]) == {"ctr", "ctcvr"}
    assert np.isfinite(report["results"]["esmm"]["delta_m"]["mean"])
    markdown = (Path(report["directory"]) / "report.md").read_text()
    assert ("A derived task (ctcvr) is compared with a plain single-task model on "
            "its own target. A task without a target (cvr) has no baseline and is "
            "not scored.") in markdown


def test_esmm_compare_refuses_to_score_a_task_without_target(tmp_path):
    config = _esmm_config(tmp_path, metrics={"cvr": ["auc"]})
    with pytest.raises(ConfigError, match=r"compare.metrics.cvr: task 'cvr' has "
                                          r"no target"):
        compare(config, output_dir=str(tmp_path / "runs"))


def test_a_list_of_weightings_is_a_grid(tmp_path):
    from kmtl.runs.comparison import resolve_variants

    config = load_config(str(write_config(tmp_path / "c.yaml", variants=[
        {"architecture": "mmoe", "weighting": ["ew", "pcgrad"]},
        {"name": "sb", "architecture": "shared_bottom", "options": {"units": [8]},
         "weighting": ["uncertainty", "cagrad(c=0.2)", "cagrad(c=0.5)"]},
        {"name": "plain", "weighting": "dwa"}])))
    variants = resolve_variants(config)
    assert [(v["name"], v["architecture"], v["weighting"]) for v in variants] == [
        ("mmoe_ew", "mmoe", "ew"), ("mmoe_pcgrad", "mmoe", "pcgrad"),
        ("sb_uncertainty", "shared_bottom", "uncertainty"),
        ("sb_cagrad_c0.2", "shared_bottom", "cagrad(c=0.2)"),
        ("sb_cagrad_c0.5", "shared_bottom", "cagrad(c=0.5)"),
        ("plain", "mmoe", "dwa")]
    assert variants[2]["options"] == variants[4]["options"] == {"units": [8]}


def test_an_empty_weighting_grid_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"compare.variants\[0\].weighting must "
                                          r"be a weighting name or spec"):
        load_config(str(write_config(tmp_path / "c.yaml", variants=[
            {"architecture": "mmoe", "weighting": []}])))


def test_baselines_train_without_the_multi_task_schedules(tmp_path):
    # A task curriculum and task sampling name every task: the single-task
    # baselines train without them (a curriculum over one task of two would
    # be refused), the variant with them.
    path = write_config(tmp_path / "c.yaml",
                        variants=[{"name": "sb", "architecture": "shared_bottom",
                                   "options": {"units": [8]}}],
                        interference={"enabled": False, "batches": 1, "every": 1})
    config = as_run_config(load_config(str(path))).replace({
        "training.curriculum": {"order": ["body_mass_g", "species"]},
        "training.sampling": {"method": "uniform", "steps_per_epoch": 4},
        "training.epochs": 2})
    report = compare(config, output_dir=str(tmp_path / "runs"), seeds=1,
                     log=lambda line: None)
    history = {run["model"]: run["history"] for run in report["runs"]}
    assert "species_scale" not in history[SINGLE_TASK]
    assert history["sb"]["species_scale"] == [0.0, 1.0]
    assert history["sb"]["species_frequency"][0] > 0
