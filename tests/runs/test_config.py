"""Tests for `kmtl.runs.config`: defaults, validation messages and YAML loading."""

import copy
import re

import pytest
import yaml

import kmtl
from kmtl.errors import ConfigError
from kmtl.features import resolve_features
from kmtl.runs.config import ModelConfig
from kmtl.runs.config import RunConfig
from kmtl.runs.config import TrainingConfig
from kmtl.runs.config import as_run_config
from kmtl.runs.config import load_config
from kmtl.runs.config import parse_config
from kmtl.runs.config import resolve_config
from kmtl.tasks import Task

TASKS = [{"name": "species", "type": "multiclass"}]
SPECIES = [Task("species", "multiclass", classes=["Adelie", "Gentoo"])]


def _minimal(**extra):
    return {"data": {"dataset": "penguins"}, "tasks": copy.deepcopy(TASKS), **extra}


def test_defaults_are_filled_in():
    config = resolve_config(_minimal())
    assert set(config) == set(RunConfig.model_fields)
    assert config["name"] == "kmtl"
    assert config["tasks"] == TASKS
    assert config["data"]["dataset"] == "penguins"
    assert config["data"]["train"] is None
    assert config["data"]["label_column"] == "label"
    assert config["data"]["split"] == {"method": "stratified", "order_by": None,
                                       "group_by": None, "validation": 0.1,
                                       "test": 0.1, "seed": 0}
    assert config["model"]["architecture"] == "shared_bottom"
    assert config["model"]["options"] == {}
    # The size keys wait for the number of training rows (test_size_defaults).
    assert config["model"]["tower_units"] is None
    assert config["training"]["epochs"] is None
    assert config["training"]["batch_size"] is None
    assert config["training"]["weight_decay"] is None
    assert config["training"]["loss_combination"] == "sum"
    assert config["export"] == {"enabled": True, "dir": None}


def test_given_values_override_defaults_and_nested_defaults_stay():
    config = resolve_config(_minimal(
        name="run",
        training={"epochs": 3},
        data={"dataset": "penguins", "split": {"method": "random"}},
        model={"architecture": "mmoe", "options": {"num_experts": 4}},
    ), name="from_file")
    assert config["name"] == "run"
    assert config["training"]["epochs"] == 3
    assert config["training"]["batch_size"] is None
    assert config["data"]["split"] == {"method": "random", "order_by": None,
                                       "group_by": None, "validation": 0.1,
                                       "test": 0.1, "seed": 0}
    assert config["model"]["options"] == {"num_experts": 4}


def test_name_defaults_to_argument():
    assert resolve_config(_minimal(), name="penguins")["name"] == "penguins"


def test_defaults_are_copies():
    first = resolve_config(_minimal())
    first["model"]["options"]["units"] = [8]
    first["features"]["exclude"].append("island")
    first["data"]["split"]["seed"] = 99
    second = resolve_config(_minimal())
    assert second["model"]["options"] == {}
    assert second["features"]["exclude"] == []
    assert second["data"]["split"]["seed"] == 0
    assert ModelConfig().options == {}


def test_model_options_are_passed_through_unchecked():
    # The architecture checks its own options (see test_build_model_* below).
    config = resolve_config(_minimal(model={"options": {"anything": 1}}))
    assert config["model"]["options"] == {"anything": 1}


def test_unknown_top_level_key_lists_allowed():
    with pytest.raises(ConfigError,
                       match=r"Unknown config key\(s\) \['trainig'\] at the top level"
                             r".*Allowed keys: .*'training'"):
        resolve_config(_minimal(trainig={"epochs": 2}))


def test_unknown_nested_key_names_path_and_allowed():
    with pytest.raises(ConfigError,
                       match=r"\['epoch'\] in `training`.*Allowed keys: .*'epochs'"):
        resolve_config(_minimal(training={"epoch": 2}))


def test_unknown_deeply_nested_key_names_full_path():
    data = {"dataset": "penguins", "split": {"methods": "random"}}
    with pytest.raises(ConfigError,
                       match=r"\['methods'\] in `data.split`.*Allowed keys: "
                             r"\['group_by', 'method', 'order_by', 'seed', 'test', "
                             r"'validation'\]"):
        resolve_config(_minimal(data=data))


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"`training` must be a mapping.*5"):
        resolve_config(_minimal(training=5))


@pytest.mark.parametrize("raw", [
    {"data": {"dataset": "penguins"}},
    {"data": {"dataset": "penguins"}, "tasks": None},
])
def test_missing_tasks(raw):
    with pytest.raises(ConfigError, match="Missing required config key `tasks`"):
        resolve_config(raw)


@pytest.mark.parametrize("tasks", [[], {"name": "species"}, "species"])
def test_tasks_must_be_a_non_empty_list(tasks):
    with pytest.raises(ConfigError, match="`tasks` must be a non-empty list"):
        resolve_config({"data": {"dataset": "penguins"}, "tasks": tasks})


@pytest.mark.parametrize("key, value", [
    ("epochs", 0), ("epochs", -3), ("epochs", "10"), ("epochs", 2.5),
    ("batch_size", 0),
])
def test_bad_epochs_and_batch_size(key, value):
    with pytest.raises(ConfigError,
                       match=rf"training.{key} must be a positive integer. "
                             rf"Received: {value!r}"):
        resolve_config(_minimal(training={key: value}))


def test_unknown_dataset():
    with pytest.raises(ConfigError,
                       match=r"data.dataset: unknown data set 'mnist'.*'penguins'"):
        resolve_config({"data": {"dataset": "mnist"}, "tasks": TASKS})


def test_missing_data():
    with pytest.raises(ConfigError, match="Missing data: give `data.train`"):
        resolve_config({"tasks": TASKS})


def test_data_from_files_needs_no_dataset():
    config = resolve_config({"data": {"train": "train.csv"}, "tasks": TASKS})
    assert config["data"]["train"] == "train.csv"
    assert config["data"]["dataset"] is None


def test_model_options_must_be_a_mapping():
    with pytest.raises(ConfigError, match="model.options must be a mapping"):
        resolve_config(_minimal(model={"options": [3]}))


def test_config_must_be_a_mapping():
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        resolve_config(["tasks"])


# --- load_config -------------------------------------------------------------


def test_load_config(tmp_path):
    path = tmp_path / "penguins_mmoe.yaml"
    path.write_text(
        "data:\n"
        "  dataset: penguins\n"
        "tasks:\n"
        "  - {name: species, type: multiclass}\n"
        "  - {name: sex, type: binary, positive: female}\n"
        "model:\n"
        "  architecture: mmoe\n"
        "  options: {num_experts: 4}\n"
    )
    config = load_config(str(path))
    assert config["name"] == "penguins_mmoe"
    assert [t["name"] for t in config["tasks"]] == ["species", "sex"]
    assert config["tasks"][1]["positive"] == "female"
    assert config["model"]["options"] == {"num_experts": 4}
    assert config["training"]["epochs"] is None


def test_load_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("tasks: [unclosed\ndata: {dataset: penguins\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(str(path))


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="Config file not found: .*absent.yaml"):
        load_config(str(tmp_path / "absent.yaml"))


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="Missing required config key `tasks`"):
        load_config(str(path))


def test_load_reports_nested_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("data: {dataset: penguins}\ntasks: [{name: a, type: binary}]\n"
                    "model: {tower_unit: [8]}\n")
    with pytest.raises(ConfigError, match=r"\['tower_unit'\] in `model`"):
        load_config(str(path))


# --- build_model -------------------------------------------------------------


@pytest.fixture
def fitted(tiny_frame):
    tasks = [Task("clicked", "binary").fit(tiny_frame)]
    features = resolve_features(tiny_frame, ["x1"], ["color"])
    return [f.fit(tiny_frame) for f in features], tasks


def test_build_model_unknown_architecture(fitted):
    features, tasks = fitted
    with pytest.raises(ConfigError, match=r"Unknown architecture 'transformer'. "
                                          r"Available: \[.*'mmoe'.*'shared_bottom'"):
        kmtl.build_model(features, tasks, architecture="transformer")


def test_build_model_unknown_option(fitted):
    features, tasks = fitted
    with pytest.raises(ConfigError, match=r"\['experts'\].*'num_experts'"):
        kmtl.build_model(features, tasks, architecture="mmoe", experts=2)


def test_build_model_bad_tower_units(fitted):
    features, tasks = fitted
    with pytest.raises(ConfigError, match=r"tower_units=\(8, 0\)"):
        kmtl.build_model(features, tasks, tower_units=(8, 0))


def test_build_model_task_named_like_feature(fitted):
    features, _ = fitted
    with pytest.raises(ConfigError,
                       match=r"\['color'\] are also (feature|input) names"):
        kmtl.build_model(features, [Task("color", "binary", positive="red")])


# --- compare -----------------------------------------------------------------

TWO_TASKS = [{"name": "species", "type": "multiclass"},
             {"name": "sex", "type": "binary", "positive": "female"}]


def _compare(**section):
    return {"data": {"dataset": "penguins"}, "tasks": copy.deepcopy(TWO_TASKS),
            "compare": section}


def test_compare_defaults():
    config = resolve_config(_minimal())
    assert config["compare"] == {
        "variants": None, "seeds": 3, "metrics": None, "directions": {},
        "average": "task", "split": "test", "baseline": None,
        "interference": {"enabled": True, "batches": 2, "every": 1}}


def test_compare_given_values_and_directions_normalised():
    config = resolve_config(_compare(
        variants=[{"name": "mmoe_pcgrad", "architecture": "mmoe",
                   "options": {"num_experts": 4}, "weighting": "pcgrad"}],
        seeds=5, metrics={"sex": ["auc"]}, split="validation", average="flat",
        directions={"auc": "higher", "brier": "lower", "mae": -1},
        interference={"batches": 4}))
    section = config["compare"]
    assert section["seeds"] == 5 and section["split"] == "validation"
    assert section["directions"] == {"auc": 1, "brier": -1, "mae": -1}
    assert section["interference"] == {"enabled": True, "batches": 4, "every": 1}
    assert section["variants"][0]["weighting"] == "pcgrad"
    # A resolved config resolves to itself (run directories store it).
    assert resolve_config(copy.deepcopy(config)) == config


@pytest.mark.parametrize("section, message", [
    ({"seed": 3}, r"\['seed'\] in `compare`.*Allowed keys: .*'seeds'"),
    ({"seeds": 0}, r"compare.seeds must be a positive integer.*Received: 0"),
    ({"seeds": True}, r"compare.seeds must be a positive integer.*True"),
    ({"average": "mean"}, r"compare.average: unknown average 'mean'.*'task', "
                          r"'flat'"),
    ({"split": "train"}, r"compare.split: unknown split 'train'.*'validation', "
                         r"'test'"),
    ({"variants": []}, r"compare.variants must be a non-empty list"),
    ({"variants": {"name": "a"}}, r"compare.variants must be a non-empty list"),
    ({"variants": ["mmoe"]}, r"`compare.variants\[0\]` must be a mapping"),
    ({"variants": [{"name": "a"}, {"weigthing": "ew"}]},
     r"\['weigthing'\] in `compare.variants\[1\]`.*'weighting'"),
    ({"variants": [{"name": "a b"}]}, r"compare.variants\[0\].name must be.*'a b'"),
    ({"variants": [{"name": "single_task"}]}, r"'single_task' is reserved"),
    ({"variants": [{"architecture": 3}]},
     r"compare.variants\[0\].architecture must be an architecture name"),
    ({"variants": [{"options": [3]}]}, r"compare.variants\[0\].options must be a "
                                       r"mapping"),
    ({"variants": [{"weighting": 1}]}, r"compare.variants\[0\].weighting must be"),
    ({"baseline": {"architecture": "mmoe", "units": [8]}},
     r"\['units'\] in `compare.baseline`.*\['architecture', 'options'\]"),
    ({"metrics": ["auc"]}, r"compare.metrics must be null .* or a mapping"),
    ({"metrics": {"income": ["auc"]}}, r"compare.metrics: unknown task 'income'. "
                                       r"Tasks are \['species', 'sex'\]"),
    ({"metrics": {"sex": "auc"}}, r"compare.metrics.sex must be a non-empty list"),
    ({"directions": {"auc": "up"}}, r"compare.directions.auc must be 1 or "
                                    r"'higher'.*'up'"),
    ({"directions": {"auc": [1]}}, r"compare.directions.auc must be 1"),
    ({"directions": {"auc": True}}, r"compare.directions.auc must be 1"),
    ({"interference": {"batch": 2}}, r"\['batch'\] in `compare.interference`"),
    ({"interference": {"batches": 0}}, r"compare.interference.batches must be a "
                                       r"positive integer"),
    ({"interference": {"enabled": "yes"}}, r"compare.interference.enabled must be "
                                           r"true or false"),
    ({"interference": False}, r"`compare.interference` must be a mapping"),
])
def test_bad_compare_section(section, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(_compare(**section))


# --- typed config: loose values, overrides, names, schema ----------------------


@pytest.mark.parametrize("key, value, message", [
    ("epochs", True, "training.epochs must be a positive integer. Received: True"),
    ("mixed_precision", "false", "training.mixed_precision must be true or false. "
                                 "Received: 'false' (a string: write it without "
                                 "quotes)"),
    ("mixed_precision", 1, "training.mixed_precision must be true or false. "
                           "Received: 1"),
    ("learning_rate", -0.001, "training.learning_rate must be a positive number, "
                              "e.g. 0.001. Received: -0.001"),
    ("learning_rate", 0, "training.learning_rate must be a positive number, e.g. "
                         "0.001. Received: 0"),
    ("learning_rate", "fast", "training.learning_rate must be a positive number, "
                              "e.g. 0.001. Received: 'fast'"),
    ("early_stopping_patience", -1, "training.early_stopping_patience must be an "
                                    "integer >= 0 (epochs without a lower "
                                    "validation loss before stopping). Received: "
                                    "-1"),
    ("verbose", 3, "training.verbose: unknown verbosity 3. Use one of (0, 1, 2, "
                   "'auto')."),
    ("loss_combination", "add", "training.loss_combination: unknown loss "
                                "combination 'add'. Use one of ('sum', 'mean')."),
])
def test_loose_training_values_name_key_path_and_value(key, value, message):
    with pytest.raises(ConfigError) as error:
        resolve_config(_minimal(training={key: value}))
    assert str(error.value) == message


def test_learning_rate_written_like_1e_3_is_a_number():
    # PyYAML reads `1e-3` (no dot) as a string.
    raw = yaml.safe_load("learning_rate: 1e-3")
    assert raw == {"learning_rate": "1e-3"}
    assert resolve_config(_minimal(training=raw))["training"]["learning_rate"] == 0.001


def test_every_problem_is_listed_on_its_own_line():
    with pytest.raises(ConfigError) as error:
        resolve_config(_minimal(training={"epochs": 0, "batch_size": "big"},
                                export={"enabled": "yes"}))
    assert str(error.value).splitlines() == [
        "training.epochs must be a positive integer. Received: 0",
        "training.batch_size must be a positive integer. Received: 'big'",
        "export.enabled must be true or false. Received: 'yes' (a string: write it "
        "without quotes)"]


def test_overrides_are_validated_and_name_their_source():
    config = parse_config(_minimal(), overrides={"training.epochs": 3,
                                                 "data.split.seed": 5})
    assert config.training.epochs == 3 and config.data.split.seed == 5
    with pytest.raises(ConfigError, match=r"^training.epochs must be a positive "
                                          r"integer. Received: 0 \(from "
                                          r"--epochs\)$"):
        parse_config(_minimal(), overrides={"training.epochs": 0},
                     sources={"training.epochs": "--epochs"})


@pytest.mark.parametrize("name", ["a/b", "../up", "..", ".", "a\\b", "", 3])
def test_name_must_be_a_folder_name(name):
    with pytest.raises(ConfigError, match=rf"^name must be a folder name without "
                                          rf"'/' or '\\' .*Received: "
                                          rf"{re.escape(repr(name))}$"):
        resolve_config(_minimal(name=name))


@pytest.mark.parametrize("name", ["census_income", "run 2", "v1.0-b", "..x"])
def test_folder_names_are_accepted(name):
    assert resolve_config(_minimal(name=name))["name"] == name


def test_split_fractions_must_leave_training_rows():
    with pytest.raises(ConfigError, match=r"data.split.validation \+ "
                                          r"data.split.test must be < 1.*0.5 \+ 0.5"):
        resolve_config(_minimal(data={"dataset": "penguins",
                                      "split": {"validation": 0.5, "test": 0.5}}))
    with pytest.raises(ConfigError, match=r"data.split.test must be a fraction in "
                                          r"\[0, 1\).*Received: 1"):
        resolve_config(_minimal(data={"dataset": "penguins", "split": {"test": 1}}))


def test_unknown_split_method():
    with pytest.raises(ConfigError, match=r"^data.split.method: unknown split method "
                                          r"'kfold'. Use one of \('random', "
                                          r"'per_task', 'stratified', 'ordered', "
                                          r"'group'\).$"):
        resolve_config(_minimal(data={"dataset": "penguins",
                                      "split": {"method": "kfold"}}))


def test_task_mappings_need_name_and_type():
    with pytest.raises(ConfigError, match=r"^Missing required config key "
                                          r"`tasks\[0\].type`.$"):
        resolve_config({"data": {"dataset": "penguins"}, "tasks": [{"name": "a"}]})
    with pytest.raises(ConfigError, match=r"`tasks\[1\]` must be a task mapping"):
        resolve_config({"data": {"dataset": "penguins"},
                        "tasks": [{"name": "a", "type": "binary"}, "b"]})


def test_task_keys_beyond_name_and_type_are_kept_for_kmtl_tasks():
    tasks = [{"name": "sex", "type": "binary", "positive": "female",
              "metrics": ["auc"]}]
    assert resolve_config({"data": {"dataset": "penguins"},
                           "tasks": tasks})["tasks"] == tasks
    assert resolve_config({"data": {"dataset": "penguins"},
                           "tasks": [Task("a", "binary")]})["tasks"][0]["name"] == "a"


def test_empty_section_takes_the_defaults():
    raw = yaml.safe_load("data: {dataset: penguins}\ntasks: [{name: a, type: "
                         "binary}]\ntraining:\nexport:\n")
    config = parse_config(raw)
    assert config.training == TrainingConfig()
    assert config.export.enabled is True


def test_typed_access_and_replace():
    config = parse_config(_minimal(training={"epochs": 4}), name="penguins")
    assert isinstance(config, RunConfig)
    assert config.name == "penguins" and config.training.epochs == 4
    assert config.task_names == ["species"]
    assert as_run_config(config) is config
    assert as_run_config(config.to_dict()) == config
    changed = config.replace({"training.seed": 2})
    assert changed.training.seed == 2 and config.training.seed == 0
    with pytest.raises(ConfigError, match=r"training\.seed must be an integer from "
                                          r"0 to 2\*\*32 - 1"):
        config.replace({"training.seed": -2})


def test_a_variant_keeps_only_the_keys_given():
    """An absent `weighting` takes `training.weighting`; an explicit null means
    static weights. Only the given keys are stored, so the difference survives
    a round trip through config.yaml or report.json."""
    config = resolve_config(_compare(variants=[{"architecture": "mmoe"},
                                               {"weighting": None}]))
    assert config["compare"]["variants"] == [{"architecture": "mmoe"},
                                             {"weighting": None}]
    assert resolve_config(config) == config


def test_schema_declares_types_and_defaults():
    schema = RunConfig.model_json_schema()
    training = schema["$defs"]["TrainingConfig"]
    assert training["properties"]["epochs"] == {
        "default": None, "description": "at most this many epochs; --epochs "
        "overrides it. null: chosen from the number of training rows n: `200` "
        "for n < 2,000; `100` for n < 20,000; `30` for n < 100,000; `10` for "
        "n >= 100,000 (`kmtl.runs.config.size_defaults`)",
        "anyOf": [{"minimum": 1, "type": "integer"}, {"type": "null"}],
        "title": "Epochs"}
    assert training["additionalProperties"] is False
    assert schema["$defs"]["SplitConfig"]["properties"]["method"]["default"] == (
        "stratified")
    assert schema["$defs"]["TaskConfig"]["required"] == ["name", "type"]


@pytest.mark.parametrize("value", [1.0, True])
def test_a_choice_is_the_option_itself_not_an_equal_number(value):
    with pytest.raises(ConfigError, match=rf"training.verbose: unknown verbosity "
                                          rf"{value!r}\. Use one of \(0, 1, 2, "
                                          rf"'auto'\)"):
        parse_config(_minimal(training={"verbose": value}))


@pytest.mark.parametrize("section, value, message", [
    ("model", {"architecture": "nope"},
     r"model\.architecture / model\.options: Unknown architecture 'nope'"),
    ("model", {"architecture": "mmoe", "options": {"experts": 2}},
     r"model\.architecture / model\.options: The architecture 'mmoe' does not "
     r"take option\(s\) \['experts'\]"),
    ("training", {"weighting": "pcgrd"},
     r"training\.weighting: Unknown weighting 'pcgrd'"),
    ("training", {"weighting": {"class_name": "PCGrad", "config": {"c": 1}}},
     r"training\.weighting: Weighting 'PCGrad': "),
    # What compile would refuse: a per-task argument that does not fit the
    # tasks, a gradient mode the method does not take.
    ("training", {"weighting": "famo(min_losses=[0.1, 0.2])"},
     r"training\.weighting: min_losses must give one number per task "
     r"\['species'\]"),
    ("training", {"weighting": "db_mtl", "gradients": "representation"},
     r"training\.weighting: The weighting 'db_mtl' does not take "
     r"gradients='representation'"),
])
def test_plugin_names_and_options_are_checked_with_their_key(section, value,
                                                              message):
    from kmtl.runs.training import check_plugins

    with pytest.raises(ConfigError, match=message):
        check_plugins(parse_config(_minimal(**{section: value})), SPECIES)


def test_representation_gradients_need_a_shared_representation():
    from kmtl.runs.training import check_plugins

    config = parse_config(_minimal(
        model={"architecture": "mmoe"},
        training={"weighting": "pcgrad", "gradients": "representation"}))
    with pytest.raises(ConfigError, match=r"training\.gradients: 'representation' "
                       r"needs one representation shared by every task, and "
                       r"the architecture 'mmoe' gives each task its own"):
        check_plugins(config, SPECIES)
    # A loss weighting takes no task gradients, so any architecture will do.
    check_plugins(parse_config(_minimal(
        model={"architecture": "mmoe"},
        training={"weighting": "uncertainty", "gradients": "representation"})),
        SPECIES)


def test_a_weighting_written_as_a_dict_is_accepted():
    from kmtl.runs.training import check_plugins

    config = parse_config(_minimal(training={
        "weighting": {"class_name": "pcgrad", "config": {"seed": 1}}}))
    check_plugins(config, SPECIES)  # no error
    assert kmtl.weighting.get(config.training.weighting).seed == 1


def test_a_group_column_is_not_chosen_as_a_feature():
    import numpy as np
    import pandas as pd

    from kmtl.runs.data import prepare

    frame = pd.DataFrame({"user": np.repeat(np.arange(10), 3).astype(str),
                          "x": np.arange(30.0), "y": np.arange(30) % 2})
    raw = {"data": {"train": "t.csv", "split": {"method": "group",
                                                "group_by": "user"}},
           "tasks": [{"name": "y", "type": "binary"}]}
    features = prepare(parse_config(raw), frame, [Task("y", "binary")])
    assert [f.name for f in features] == ["x"]
    raw["features"] = {"categorical": ["user"], "numeric": ["x"]}
    features = prepare(parse_config(raw), frame, [Task("y", "binary")])
    assert [f.name for f in features] == ["x", "user"]  # declared: kept
