"""`kmtl tune`: the search space from YAML, its errors, seeded trials, resume,
best.yaml and the command line, on a small synthetic table whose column names
hold spaces (2 epochs per model)."""

import json
import textwrap
from pathlib import Path

import keras_tuner
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run_cli

from kmtl.errors import ConfigError
from kmtl.errors import TrainingError
from kmtl.runs import tuning
from kmtl.runs.config import parse_config
from kmtl.runs.config import read_config
from kmtl.runs.training import prepare_run
from kmtl.runs.training import train

ROWS = 300


def write_table(path):
    """Two numeric features, one categorical, a binary and a regression task
    that depend on them; column names with spaces."""
    rng = np.random.default_rng(0)
    one, two = rng.normal(size=ROWS), rng.normal(size=ROWS)
    colour = rng.choice(["red", "green", "blue"], size=ROWS)
    frame = pd.DataFrame({
        "feature one": one, "feature two": two, "colour name": colour,
        "big label": (one + 0.5 * two + rng.normal(scale=0.5, size=ROWS)
                      > 0).astype(int),
        "size value": 2 * one - two + (colour == "red") + rng.normal(size=ROWS),
    })
    frame.to_csv(path, index=False)
    return path


def raw_config(table, **tune):
    raw = yaml.safe_load(textwrap.dedent(f"""\
        name: synthetic
        data:
          train: {table}
          split: {{method: random, validation: 0.2, test: 0.2, seed: 0}}
        features:
          numeric: [feature one, feature two]
          categorical: [colour name]
        tasks:
          - {{name: big, type: binary, target: big label}}
          - {{name: size, type: regression, target: size value}}
        model:
          architecture: mmoe
          options: {{num_experts: 2, expert_units: [8]}}
          tower_units: [4]
        training:
          epochs: 2
          batch_size: 64
          learning_rate: 0.01
          early_stopping_patience: 2
          verbose: 0
        export: {{enabled: false}}
        tune:
          algorithm: random
          trials: 2
          seed: 3
          objective: delta_m
          space:
            tasks.big.loss_weight: {{min: 0.25, max: 4.0, log: true}}
            training.learning_rate: {{min: 1e-3, max: 3e-2, log: true}}
            model.options.expert_units: [[8], [16, 8]]
            model.options.num_experts: {{min: 2, max: 3}}
        """))
    raw["tune"].update(tune)
    return raw


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_table(tmp_path_factory.mktemp("tune") / "synthetic table.csv")


# === The search space ===


def test_space_from_yaml_becomes_kerastuner_parameters(table):
    config = parse_config(raw_config(table, space={
        "tasks.big.loss_weight": {"min": 0.25, "max": "4e0", "log": True},
        "model.options.num_experts": {"min": 2, "max": 6, "step": 2},
        "model.options.expert_units": [[8], [16, 8]],
        "training.weighting": ["ew", "cagrad"],
        "training.weighting.c": [0.2, 0.5]}))
    hp = tuning.search_space(config)
    by_name = {p.name: p for p in hp.space}
    weight = by_name["tasks.big.loss_weight"]
    assert type(weight).__name__ == "Float"
    assert (weight.min_value, weight.max_value, weight.sampling) == (0.25, 4.0, "log")
    experts = by_name["model.options.num_experts"]
    assert type(experts).__name__ == "Int"
    assert (experts.min_value, experts.max_value, experts.step) == (2, 6, 2)
    units = by_name["model.options.expert_units"]
    assert units.values == ["[8]", "[16, 8]"]  # lists travel as JSON
    # c is active only when the method takes it.
    hp.values.update({"training.weighting": "ew", "training.weighting.c": 0.2,
                      "model.options.expert_units": "[16, 8]"})
    values = tuning.decode_values(config, hp)
    assert values["model.options.expert_units"] == [16, 8]
    assert "training.weighting.c" not in values
    hp.values["training.weighting"] = "cagrad"
    values = tuning.decode_values(config, hp)
    assert values["training.weighting.c"] == 0.2
    changed = tuning.trial_config(config, values)
    assert changed.training.weighting == "cagrad(c=0.2)"
    assert changed.model.options["expert_units"] == [16, 8]
    assert [t.model_extra.get("loss_weight") for t in changed.tasks] == [
        values["tasks.big.loss_weight"], None]


@pytest.mark.parametrize("space, message", [
    ({"training.learnin_rate": [0.1]},
     "tune.space.training.learnin_rate: training.learnin_rate cannot be searched"),
    ({"model.head_units": [[8]]}, "tune.space.model.head_units: model.head_units "
     "cannot be searched"),
    ({"optimizer.beta_1": [0.9]}, "tune.space.optimizer.beta_1: unknown parameter"),
    ({"training.learning_rate": {"min": 0.01, "max": 0.01}},
     "tune.space.training.learning_rate: the range is empty (min == max"),
    ({"training.learning_rate": {"min": 0.1, "max": 0.01}},
     "tune.space.training.learning_rate: the range is inverted"),
    ({"tasks.big.loss_weight": []},
     "tune.space.tasks.big.loss_weight: the list of choices is empty"),
    ({"tasks.bigg.loss_weight": [1.0, 2.0]},
     "tune.space.tasks.bigg.loss_weight: unknown task 'bigg'"),
    ({"training.weighting": ["ew", "pcgrad"], "training.weighting.c": [0.2, 0.4]},
     "tune.space.training.weighting.c: no weighting method of the search takes "
     "the argument 'c'"),
    ({"training.weighting.c": [0.2]},
     "tune.space.training.weighting.c: no weighting method"),
    ({"model.options.experts": [2, 3]},
     "tune.space.model.options.experts: the architecture 'mmoe' does not take"),
    ({"model.tower_units": {"min": 4, "max": 8}},
     "tune.space.model.tower_units takes a list of choices, not a range"),
    ({"training.learning_rate": 0.01},
     "tune.space.training.learning_rate must be a range"),
])
def test_space_errors_name_the_key(table, space, message):
    with pytest.raises(ConfigError) as error:
        parse_config(raw_config(table, space=space))
    assert message in str(error.value)


def test_refused_value_stops_the_search_before_writing(table, tmp_path):
    config = raw_config(table, space={"training.weighting": ["cagrad"],
                                      "training.weighting.c": [0.5, -1.0]})
    with pytest.raises(ConfigError, match=r"tune.space.training.weighting.c"):
        tuning.tune(config, output_dir=tmp_path / "runs", log=lambda line: None)
    assert not (tmp_path / "runs").exists()


# === Trials ===


def test_a_refused_pair_of_weighting_and_gradients_stops_the_search(table,
                                                                    tmp_path):
    # Each value alone is fine; db_mtl with representation gradients is not.
    config = raw_config(table, space={
        "training.weighting": ["ew", "db_mtl"],
        "training.gradients": ["parameters", "representation"]})
    with pytest.raises(ConfigError, match=(
            r"tune.space.training.weighting and tune.space.training.gradients: "
            r"the value 'db_mtl' with 'representation' is refused: "
            r"training.weighting: The weighting 'db_mtl' does not take")):
        tuning.tune(config, output_dir=tmp_path / "runs", log=lambda line: None)
    assert not (tmp_path / "runs").exists()


def test_same_values_and_seed_give_the_same_objective(table, tmp_path):
    config, data = prepare_run(parse_config(raw_config(
        table, objective="size/rmse")))
    objective = tuning.Objective.from_config(config, data.tasks)
    assert objective.direction == -1
    search = tuning._Search(config, data, objective, log=lambda line: None)
    scores = []
    for index in range(2):
        hp = tuning.search_space(config)
        hp.values.update({"tasks.big.loss_weight": 2.0,
                          "training.learning_rate": 0.01,
                          "model.options.expert_units": "[8]",
                          "model.options.num_experts": 2})
        trial = keras_tuner.engine.trial.Trial(hp, trial_id=str(index))
        folder = tmp_path / str(index)
        folder.mkdir()
        scores.append(search.run_trial(trial, str(folder))["objective"])
        record = json.loads((folder / tuning.TRIAL_FILE).read_text())
        assert record["objective"] == scores[-1]
        assert record["metrics"]["size"]["rmse"] == scores[-1]
    assert scores[0] == scores[1]


@pytest.fixture(scope="module")
def searched(table, tmp_path_factory, request):
    """A 2-trial Δm search, run again unchanged, then extended to 3 trials;
    the trainings of each call counted."""
    output = tmp_path_factory.mktemp("tune_runs")
    counts = []
    monkeypatch = pytest.MonkeyPatch()
    request.addfinalizer(monkeypatch.undo)
    original = tuning.run_model

    def counting(*args, **kwargs):
        counts[-1] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(tuning, "run_model", counting)
    reports = []
    for trials in (2, 2, 3):
        counts.append(0)
        reports.append(tuning.tune(raw_config(table), output_dir=output,
                                   trials=trials, log=lambda line: None))
    return {"counts": counts, "reports": reports, "output": output}


def test_resumed_search_does_not_rerun_finished_trials(searched):
    # 2 baselines + 2 trials; nothing; 1 more trial (baselines cached).
    assert searched["counts"] == [4, 0, 1]
    first, again, extended = searched["reports"]
    assert [r["objective"] for r in again["trials"]] == [
        r["objective"] for r in first["trials"]]
    objectives = [r["objective"] for r in extended["trials"]]
    assert len(set(objectives)) == 3  # other values, other objectives
    assert [r["trial"] for r in extended["trials"]] == ["0", "1", "2"]
    directory = Path(extended["directory"])
    table = pd.read_csv(directory / tuning.TRIALS_FILE)
    assert list(table["trial"]) == [0, 1, 2]
    assert set(table["status"]) == {"completed"}
    assert {"tasks.big.loss_weight", "big/auc", "size/rmse"} <= set(table.columns)
    np.testing.assert_allclose(table["objective"],
                               [r["objective"] for r in extended["trials"]])


def test_objective_is_delta_m_against_the_cached_baselines(searched):
    from kmtl.measures.delta_m import delta_m

    report = searched["reports"][-1]
    baselines = report["baselines"]["metrics"]
    # compare's default: every metric of every task, each task counting once.
    assert {t: sorted(m) for t, m in baselines.items()} == {
        "big": ["accuracy", "auc"], "size": ["mae", "rmse"]}
    for record in report["trials"]:
        metrics = record["metrics"]
        changes = [100 * (metrics["big"][m] - baselines["big"][m])
                   / baselines["big"][m] for m in ("auc", "accuracy")]
        changes_size = [-100 * (metrics["size"][m] - baselines["size"][m])
                        / baselines["size"][m] for m in ("mae", "rmse")]
        expected = (np.mean(changes) + np.mean(changes_size)) / 2
        assert record["objective"] == pytest.approx(expected)
        assert record["objective"] == pytest.approx(delta_m(metrics, baselines))
    best = max(report["trials"], key=lambda r: r["objective"])
    assert report["best"]["trial"] == best["trial"]


def test_best_yaml_round_trips_and_trains(searched, tmp_path):
    report = searched["reports"][-1]
    path = Path(report["directory"]) / tuning.BEST_FILE
    config = read_config(str(path))
    best = report["best"]["values"]
    assert config.training.learning_rate == pytest.approx(
        best["training.learning_rate"])
    assert config.model.options["expert_units"] == best["model.options.expert_units"]
    assert config.model.options["num_experts"] == best["model.options.num_experts"]
    assert config.tasks[0].model_extra["loss_weight"] == pytest.approx(
        best["tasks.big.loss_weight"])
    result = train(config, output_dir=tmp_path, log=lambda line: None)
    assert set(result["metrics"]["test"]) == {"big", "size"}


def test_report_and_plots(searched):
    directory = Path(searched["reports"][-1]["directory"])
    markdown = (directory / "report.md").read_text()
    assert "**Best trial:" in markdown and "plots/objective.png" in markdown
    for name in ("objective.png", "parameters.png"):
        assert (directory / "plots" / name).stat().st_size > 0
    stored = json.loads((directory / "report.json").read_text())
    assert len(stored["trials"]) == 3


def test_another_config_is_not_resumed(searched, table):
    raw = raw_config(table)
    raw["training"]["batch_size"] = 32
    with pytest.raises(ConfigError, match=r"training.batch_size: 64 -> 32"):
        tuning.tune(raw, output_dir=searched["output"], log=lambda line: None)


def test_a_failed_trial_is_recorded_and_the_search_goes_on(table, tmp_path,
                                                           monkeypatch):
    original = tuning.run_model
    calls = []

    def diverging(config, data, **kwargs):
        calls.append(config.training.learning_rate)
        if len(calls) == 1:
            raise TrainingError("Training diverged in epoch 1: loss = nan.")
        return original(config, data, **kwargs)

    monkeypatch.setattr(tuning, "run_model", diverging)
    report = tuning.tune(raw_config(table, objective="big/auc"),
                         output_dir=tmp_path, log=lambda line: None)
    statuses = [r["status"] for r in report["trials"]]
    assert statuses == ["failed", "completed"]
    assert "diverged" in report["trials"][0]["message"]
    assert report["best"]["trial"] == "1"
    table = pd.read_csv(Path(report["directory"]) / tuning.TRIALS_FILE)
    assert list(table["status"]) == statuses


# === Command line ===


def test_cli_end_to_end(table, tmp_path):
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(raw_config(table, objective={
        "big/auc": 1.0, "size/rmse": -0.01})))
    code, out, err = run_cli("tune", path, "--trials", 2, "--epochs", 1,
                             "--algorithm", "bayesian", "--output-dir",
                             tmp_path / "runs")
    assert code == 0, err[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("Tune directory: ")
    directory = Path(last.removeprefix("Tune directory: "))
    table = pd.read_csv(directory / tuning.TRIALS_FILE)
    assert len(table) == 2
    np.testing.assert_allclose(
        table["objective"], table["big/auc"] - 0.01 * table["size/rmse"],
        rtol=1e-6)
    assert (directory / tuning.BEST_FILE).is_file()
    code, _, err = run_cli("tune", path, "--algorithm", "grid", "--output-dir",
                           tmp_path / "runs")
    assert code == 2 and "tune.algorithm" in err


def test_trials_are_listed_by_number_after_an_extended_budget(tmp_path):
    # KerasTuner pads trial ids to the digits of the budget: 5 trials give
    # "0".."4", extending to 12 gives "05".."11". As strings "05" < "1".
    ids = ["0", "1", "2", "3", "4", "05", "06", "07", "08", "09", "10", "11"]

    class Tuner:
        class oracle:  # noqa: N801 (KerasTuner's attribute name)
            trials = {trial_id: None for trial_id in reversed(ids)}

        @staticmethod
        def get_trial_dir(trial_id):
            return str(tmp_path / trial_id)

    for trial_id in ids:
        (tmp_path / trial_id).mkdir()
        (tmp_path / trial_id / tuning.TRIAL_FILE).write_text(
            json.dumps({"trial": trial_id}))
    records = tuning._records(Tuner, config=None)
    assert [r["trial"] for r in records] == ids


def test_parameters_plot_places_choices_that_mix_ints_and_floats():
    from kmtl.runs import tuning_report

    # KerasTuner records the choice 1 of [1, 2.5, 4] as 1.0.
    report = {"space": {"training.weighting.alpha": [1, 2.5, 4],
                        "model.options.units": [[64], [128, 64]]},
              "trials": [{"status": "completed", "objective": 0.5,
                          "values": {"training.weighting.alpha": 4.0,
                                     "model.options.units": [128, 64]}},
                         {"status": "completed", "objective": 0.7,
                          "values": {"training.weighting.alpha": 1.0,
                                     "model.options.units": [64]}}]}
    figure = tuning_report.parameters_plot(report)
    alpha, units = (ax.lines[0].get_xdata().tolist() for ax in figure.axes[:2])
    assert alpha == [2, 0] and units == [1, 0]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["1", "2.5", "4"]
