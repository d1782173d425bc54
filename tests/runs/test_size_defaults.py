"""Tests for the size defaults (`kmtl.runs.config.size_defaults`,
`with_size_defaults`) and their use by `kmtl train` and `kmtl compare`: the
values at a few sizes, written out by hand from the documented rule; a key the
config sets wins; the printed line; the saved config holds the values used."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from kmtl.runs.comparison import with_shared_units
from kmtl.runs.config import ModelConfig
from kmtl.runs.config import TrainingConfig
from kmtl.runs.config import describe_size_defaults
from kmtl.runs.config import parse_config
from kmtl.runs.config import read_config
from kmtl.runs.config import shared_units_key
from kmtl.runs.config import size_defaults
from kmtl.runs.config import with_size_defaults
from kmtl.runs.run_dir import RunDir
from kmtl.runs.training import build_run_model
from kmtl.runs.training import prepare_run
from kmtl.runs.training import train

REPO = Path(__file__).resolve().parents[2]

# The documented rule, one row per tier of n training rows:
# epochs, batch_size, learning_rate, weight_decay, patience, shared, towers.
SMALL = (200, 32, 0.003, 1.0, 20, [64], [32])          # n < 2,000
MEDIUM = (100, 64, 0.003, 1.0, 10, [64], [32])         # n < 20,000
LARGE = (30, 256, 0.001, 0.0, 5, [256, 128], [64])     # n < 100,000
LARGEST = (10, 1024, 0.001, 0.0, 3, [256, 128], [64])  # n >= 100,000
KEYS = ("epochs", "batch_size", "learning_rate", "weight_decay",
        "early_stopping_patience", "shared_units", "tower_units")


def _raw(**extra):
    return {"data": {"dataset": "penguins"},
            "tasks": [{"name": "species", "type": "multiclass"}], **extra}


@pytest.mark.parametrize("rows, tier", [
    (1, SMALL), (240, SMALL), (1_999, SMALL), (2_000, MEDIUM), (4_500, MEDIUM),
    (19_999, MEDIUM), (20_000, LARGE), (99_999, LARGE), (100_000, LARGEST),
    (199_523, LARGEST), (10_000_000, LARGEST)])
def test_size_defaults_follow_the_tiers(rows, tier):
    assert size_defaults(rows) == dict(zip(KEYS, tier))


def test_size_defaults_returns_a_copy():
    size_defaults(10)["shared_units"].append(7)
    assert size_defaults(10)["shared_units"] == [64]


def test_the_descriptions_state_the_rule():
    assert TrainingConfig.model_fields["batch_size"].description.endswith(
        "null: chosen from the number of training rows n: `32` for n < 2,000; "
        "`64` for n < 20,000; `256` for n < 100,000; `1024` for n >= 100,000 "
        "(`kmtl.runs.config.size_defaults`)")
    # Tiers with the same value read as one.
    assert TrainingConfig.model_fields["weight_decay"].description.endswith(
        "null: chosen from the number of training rows n: `1.0` for n < 20,000; "
        "`0.0` for n >= 20,000 (`kmtl.runs.config.size_defaults`)")
    assert ("chosen from the number of training rows n: `[64]` for n < 20,000; "
            "`[256, 128]` for n >= 20,000 (`kmtl.runs.config.size_defaults`)" in
            ModelConfig.model_fields["options"].description)


def test_unset_keys_are_null_until_the_rows_are_known():
    config = parse_config(_raw())
    assert (config.training.epochs, config.training.batch_size,
            config.training.learning_rate, config.training.weight_decay,
            config.training.early_stopping_patience, config.model.tower_units,
            config.model.options) == (None, None, None, None, None, None, {})


def test_with_size_defaults_fills_every_unset_key():
    config, chosen = with_size_defaults(parse_config(_raw()), 900)
    assert chosen == {
        "training.epochs": 200, "training.batch_size": 32,
        "training.learning_rate": 0.003, "training.weight_decay": 1.0,
        "training.early_stopping_patience": 20, "model.options.units": [64],
        "model.tower_units": [32]}
    assert config.training.batch_size == 32
    assert config.model.options == {"units": [64]}
    assert config.model.tower_units == [32]
    # Resolved: a second pass chooses nothing.
    assert with_size_defaults(config, 900) == (config, {})


def test_a_key_the_config_sets_wins():
    raw = _raw(training={"epochs": 7, "weight_decay": 0, "batch_size": 8},
               model={"options": {"units": [5]}, "tower_units": []})
    config, chosen = with_size_defaults(parse_config(raw), 900)
    assert chosen == {"training.learning_rate": 0.003,
                      "training.early_stopping_patience": 20}
    assert (config.training.epochs, config.training.weight_decay,
            config.training.batch_size) == (7, 0.0, 8)
    assert config.model.options == {"units": [5]}
    assert config.model.tower_units == []


@pytest.mark.parametrize("architecture, options, key", [
    ("shared_bottom", {}, "units"),
    ("mmoe", {"num_experts": 4}, "expert_units"),
    ("ple", {}, "expert_units"),
    ("cross_stitch", {}, "units"),
    ("mmoe", {"expert_units": [8]}, None),
    ("mmoe(expert_units=[8])", {}, None),
    ("no_such_architecture", {}, None),
])
def test_the_shared_size_key_of_each_architecture(architecture, options, key):
    assert shared_units_key(architecture, options) == key


def test_an_expert_architecture_gets_expert_units_and_keeps_its_options():
    raw = _raw(model={"architecture": "mmoe", "options": {"num_experts": 4}})
    config, chosen = with_size_defaults(parse_config(raw), 5_000)
    assert config.model.options == {"num_experts": 4, "expert_units": [64]}
    assert chosen["model.options.expert_units"] == [64]


@pytest.mark.parametrize("example", ["census_income.yaml",
                                     "census_income_shared_bottom.yaml",
                                     "census_income_compare.yaml"])
def test_the_census_examples_keep_their_values(example):
    """Every size key but the new weight decay is set in the census examples,
    and the largest tier's weight decay is 0: their runs do not change."""
    given = read_config(str(REPO / "examples" / example))
    config, chosen = with_size_defaults(given, 199_523)
    assert chosen == {"training.weight_decay": 0.0}
    assert config.replace({"training.weight_decay": None}) == given


def test_describe_size_defaults():
    chosen = {"training.batch_size": 32, "training.learning_rate": 0.003,
              "model.options.expert_units": [64], "model.tower_units": [32]}
    assert describe_size_defaults(chosen, 1_000) == (
        "Defaults for 1,000 training rows: batch_size 32, learning_rate 0.003, "
        "expert_units [64], tower_units [32]")


def test_weight_decay_reaches_the_optimizer(penguins_prepared):
    config, data, _ = penguins_prepared
    optimizer = build_run_model(config, data).optimizer
    assert float(optimizer.weight_decay) == pytest.approx(1.0)
    assert float(optimizer.learning_rate) == pytest.approx(0.003)
    off = config.replace({"training.weight_decay": 0})
    assert build_run_model(off, data).optimizer.weight_decay is None
    # 0 overrides an optimizer's own default (AdamW's 0.004).
    adamw = off.replace({"training.optimizer": "adamw"})
    assert float(build_run_model(adamw, data).optimizer.weight_decay) == 0.0


@pytest.fixture(scope="module")
def penguins_prepared():
    lines = []
    config, data = prepare_run(_raw(), log=lines.append)
    return config, data, lines


def test_prepare_run_batches_with_the_chosen_size(penguins_prepared):
    config, data, lines = penguins_prepared
    rows = len(data.train)
    assert 260 < rows < 290  # 344 rows, about 10% validation and 10% test out
    assert lines == [
        f"Defaults for {rows} training rows: epochs 200, batch_size 32, "
        f"learning_rate 0.003, weight_decay 1.0, early_stopping_patience 20, "
        f"units [64], tower_units [32]"]
    assert data.batch_size == config.training.batch_size == 32
    for dataset in data.held_out.values():
        sizes = [len(next(iter(labels.values())))
                 for _, labels, *_ in dataset.as_numpy_iterator()]
        assert max(sizes) == 32


@pytest.fixture
def table(tmp_path):
    """40 rows: numeric `x`, text `color`, a binary label `y`; a CSV file."""
    frame = pd.DataFrame({"x": np.linspace(0.0, 3.9, 40),
                          "color": ["red", "blue", "green", "red"] * 10,
                          "y": [0, 1] * 20})
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_train_prints_the_chosen_values_and_saves_them(table, tmp_path):
    raw = {"name": "table", "data": {"train": str(table)},
           "tasks": [{"name": "y", "type": "binary"}],
           "training": {"epochs": 2, "verbose": 0}, "export": {"enabled": False}}
    lines = []
    result = train(parse_config(raw), output_dir=str(tmp_path / "runs"),
                   log=lines.append)
    # 40 rows, 10% validation and 10% test held out: 32 training rows.
    assert lines[0] == (
        "Defaults for 32 training rows: batch_size 32, learning_rate 0.003, "
        "weight_decay 1.0, early_stopping_patience 20, units [64], "
        "tower_units [32]")
    assert sum(line.startswith("Defaults for") for line in lines) == 1
    saved = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text())
    assert saved["training"]["epochs"] == 2  # given
    assert {k: saved["training"][k] for k in (
        "batch_size", "learning_rate", "weight_decay",
        "early_stopping_patience")} == {
        "batch_size": 32, "learning_rate": 0.003, "weight_decay": 1.0,
        "early_stopping_patience": 20}
    assert saved["model"]["options"] == {"units": [64]}
    assert saved["model"]["tower_units"] == [32]
    # Read back, nothing is left to choose: a re-run uses the same values.
    stored = RunDir(result["run_dir"]).read_config()
    assert with_size_defaults(stored, 10_000)[1] == {}


def test_compare_specs_get_the_shared_size_of_their_architecture():
    spec = {"architecture": "mmoe", "options": {"num_experts": 2}}
    assert with_shared_units(spec, 900) == {
        "architecture": "mmoe", "options": {"num_experts": 2,
                                            "expert_units": [64]}}
    given = {"architecture": "shared_bottom", "options": {"units": [8]}}
    assert with_shared_units(given, 900) == given
