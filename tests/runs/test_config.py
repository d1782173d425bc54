"""Tests for `kmtl.runs.config`: defaults, validation messages and YAML loading."""

import copy

import pytest

import kmtl
from kmtl.runs.config import ModelConfig
from kmtl.runs.config import RunConfig
from kmtl.runs.config import load_config
from kmtl.runs.config import resolve_config
from kmtl.errors import ConfigError
from kmtl.features import resolve_features
from kmtl.tasks import Task

TASKS = [{"name": "species", "type": "multiclass"}]


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
    assert config["data"]["split"] == {"method": "stratified", "validation": 0.1,
                                       "test": 0.1, "seed": 0}
    assert config["model"]["architecture"] == "shared_bottom"
    assert config["model"]["options"] == {}
    assert config["model"]["tower_units"] == [64]
    assert config["training"]["epochs"] == 10
    assert config["training"]["batch_size"] == 256
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
    assert config["training"]["batch_size"] == 256
    assert config["data"]["split"] == {"method": "random", "validation": 0.1,
                                       "test": 0.1, "seed": 0}
    assert config["model"]["options"] == {"num_experts": 4}


def test_name_defaults_to_argument():
    assert resolve_config(_minimal(), name="penguins")["name"] == "penguins"


def test_defaults_are_copies():
    first = resolve_config(_minimal())
    first["model"]["tower_units"].append(8)
    first["data"]["split"]["seed"] = 99
    second = resolve_config(_minimal())
    assert second["model"]["tower_units"] == [64]
    assert second["data"]["split"]["seed"] == 0
    assert ModelConfig().tower_units == [64]


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
                             r"\['method', 'seed', 'test', 'validation'\]"):
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
    assert config["training"]["epochs"] == 10


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
