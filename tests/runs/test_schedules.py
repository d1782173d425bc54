"""Training schedules from the config (`training.sampling`, `stages`,
`curriculum`, `self_paced`), end to end on the penguins table: what each run
writes and logs, resume of a sampled run, and bad configs."""

import json
import os

import numpy as np
import pytest
from helpers import penguins_config as penguins_example

from kmtl.errors import ConfigError
from kmtl.runs.config import parse_config
from kmtl.runs.run_dir import STAGES_FILE
from kmtl.runs.schedules import schedule_end
from kmtl.runs.training import prepare_run
from kmtl.runs.training import probe_task_losses
from kmtl.runs.training import run_model
from kmtl.runs.training import train


def penguins_config(**training):
    return penguins_example(training.pop("epochs", 3),
                            training.pop("early_stopping_patience", 3), **training)


def test_sampled_run_logs_frequencies_near_the_requested_ones():
    config, data = prepare_run(penguins_config(
        sampling={"composition": "interleaved", "method": "uniform",
                  "steps_per_epoch": 60}))
    history = run_model(config, data).history
    # 60 batches of one task each, uniform over 3 tasks: the share of batches
    # of a task is within 4 binomial standard deviations of 1/3.
    bound = 4 * np.sqrt((1 / 3) * (2 / 3) / 60)
    for task in ("species", "sex", "body_mass_g"):
        frequencies = history[f"{task}_frequency"]
        assert len(frequencies) == 3
        assert all(abs(f - 1 / 3) <= bound for f in frequencies)
    assert sum(history[f"{t}_frequency"][0]
               for t in ("species", "sex", "body_mass_g")) == pytest.approx(1)


def test_sampled_run_resumes_with_the_batches_of_an_uninterrupted_one(tmp_path):
    sampling = {"composition": "joint", "method": "anneal", "start": "uniform",
                "end": "proportional", "anneal_epochs": 4}
    config, data = prepare_run(penguins_config(epochs=4, sampling=sampling))
    whole = run_model(config, data)
    # Two epochs, then a resumed run from the backup for the other two.
    short = config.replace({"training.epochs": 2})
    run_model(short, data, backup_dir=str(tmp_path / "backup"))
    resumed = run_model(config, data, backup_dir=str(tmp_path / "backup"))
    for key in ("loss", "species_frequency", "sex_frequency"):
        np.testing.assert_allclose(resumed.history[key], whole.history[key],
                                   rtol=1e-5)


def test_curriculum_by_loss_orders_tasks_by_their_probe_loss():
    config, data = prepare_run(penguins_config(
        curriculum={"order": "by_loss", "interval": 1}, self_paced={
            "start_fraction": 0.5, "epochs": 2}))
    history = run_model(config, data).history
    # The probes are seeded: the same losses as the run's.
    losses = probe_task_losses(config, data)
    easiest_first = sorted(losses, key=losses.get)
    joins = [[0.0] * epoch + [1.0] * (3 - epoch) for epoch in range(3)]
    for epoch, task in enumerate(easiest_first):
        assert history[f"{task}_scale"] == joins[epoch]
    assert history["self_paced_fraction"] == [0.5, 0.75, 1.0]


def test_stages_add_tasks_and_write_each_stage_metrics(tmp_path):
    config = penguins_config(epochs=2, stages=[
        {"tasks": ["species"]},
        {"tasks": ["sex", "body_mass_g"], "frozen": ["shared", "species"],
         "learning_rate": 0.001},
        {"tasks": [], "epochs": 1}])
    result = train(config, output_dir=str(tmp_path / "runs"), log=lambda _: None)
    with open(os.path.join(result["run_dir"], STAGES_FILE)) as handle:
        stages = json.load(handle)
    assert [s["tasks"] for s in stages] == [
        ["species"], ["species", "sex", "body_mass_g"],
        ["species", "sex", "body_mass_g"]]
    assert stages[2]["epochs"] == 1 and stages[2]["frozen"] == []
    assert stages[1]["frozen"] == ["shared", "species"]
    assert set(stages[0]["metrics"]["test"]) == {"species"}
    # The shared part and species' tower were frozen in stage 2: species'
    # test metrics did not move.
    assert (stages[1]["metrics"]["test"]["species"]
            == stages[0]["metrics"]["test"]["species"])
    assert set(result["metrics"]["test"]) == {"species", "sex", "body_mass_g"}


@pytest.mark.parametrize("training, message", [
    ({"stages": [{"tasks": ["species", "typo"]}]},
     r"training.stages\[0\].tasks: unknown task 'typo'"),
    ({"stages": [{"tasks": ["species"]}]}, r"leave out \['sex', 'body_mass_g'\]"),
    ({"stages": [{"tasks": []}, {"tasks": ["species", "sex", "body_mass_g"]}]},
     r"training.stages\[0\].tasks must name the tasks"),
    ({"sampling": {"method": "temperature", "temperature": 0}},
     "training.sampling.temperature must be a positive number"),
    ({"sampling": {"composition": "mixed"}}, "unknown composition 'mixed'"),
    ({"curriculum": {"order": ["sex"]}}, "training.curriculum.order must list "
     "every task once"),
    ({"self_paced": {"start_fraction": 0}}, "start_fraction must be"),
    ({"stages": [{"tasks": ["species", "sex", "body_mass_g"]}],
      "sampling": {}}, "cannot be combined with training.sampling"),
])
def test_bad_schedules_name_the_key(training, message):
    config = penguins_config(**training)
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


def test_unknown_frozen_layer_names_the_layers(tmp_path):
    config = penguins_config(epochs=1, stages=[
        {"tasks": ["species", "sex"]},
        {"tasks": ["body_mass_g"], "frozen": ["experts"]}])
    with pytest.raises(ConfigError, match=r"training.stages\[1\].frozen: "
                       "unknown layer 'experts'"):
        train(config, output_dir=str(tmp_path / "runs"), log=lambda _: None)
    assert not (tmp_path / "runs").exists()  # checked before anything is written


def test_early_stopping_waits_for_the_end_of_the_schedule():
    # A learning rate of ~0 never improves the validation loss: early stopping
    # with patience 1 stops one epoch after the first epoch it watches, which
    # is the schedule's end (every row trains from epoch 2): 4 epochs, not 2.
    config, data = prepare_run(penguins_config(
        epochs=6, early_stopping_patience=1, learning_rate=1e-12,
        self_paced={"start_fraction": 0.5, "epochs": 2}))
    assert schedule_end(config, data.tasks) == 2
    assert len(run_model(config, data).history["loss"]) == 4
    # A curriculum of three groups, one epoch apart, ramped over 2 epochs:
    # the last joins at epoch 2 and reaches its full weight at epoch 3.
    curriculum = config.replace({"training.self_paced": None,
                                 "training.curriculum": {
                                     "order": ["sex", "species", "body_mass_g"],
                                     "ramp_epochs": 2}})
    assert schedule_end(curriculum, data.tasks) == 3
