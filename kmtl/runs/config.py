"""The YAML run configuration: loading, defaults and validation.

Every key is documented in `docs/config.md`. Validation happens here, at the
edge: an unknown or missing key is reported with its full path (`model.tower_units`)
and the keys that are allowed.
"""

import copy
import os

import yaml

from kmtl.errors import ConfigError

REQUIRED = object()

# Section -> key -> default (REQUIRED: must be given). `None` means "not set".
SCHEMA = {
    "name": None,
    "data": {
        "dataset": None,
        "train": None,
        "validation": None,
        "test": None,
        "read_options": {},
        "task_tables": None,
        "label_column": "label",
        "key": None,
        "split": {"method": "stratified", "validation": 0.1, "test": 0.1, "seed": 0},
    },
    "features": {
        "numeric": None,
        "categorical": None,
        "exclude": [],
        "max_vocabulary": None,
        "min_frequency": 1,
    },
    "tasks": REQUIRED,
    "model": {
        "architecture": "shared_bottom",
        "options": {},
        "tower_units": [64],
        "tower_activation": "relu",
        "tower_dropout": 0.0,
        "categorical_encoding": "embedding",
        "embedding_dim": None,
    },
    "training": {
        "epochs": 10,
        "batch_size": 256,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "loss_combination": "sum",
        "weighting": None,
        "gradients": "parameters",
        "gradient_statistics_every": 0,
        "diagnostics_every": None,
        "early_stopping_patience": 3,
        "seed": 0,
        "mixed_precision": False,
        "verbose": 1,
    },
    "export": {
        "enabled": True,
        "dir": None,
    },
    "compare": {
        "variants": None,
        "seeds": 3,
        "metrics": None,
        "directions": {},
        "average": "task",
        "split": "test",
        "baseline": None,
        "interference": {"enabled": True, "batches": 2, "every": 1},
    },
}

BUILTIN_DATASETS = ("penguins", "census_income")
VARIANT_KEYS = ("name", "architecture", "options", "weighting", "gradients")
BASELINE_KEYS = ("architecture", "options")
AVERAGES = ("task", "flat")
VERDICT_SPLITS = ("validation", "test")
DIRECTIONS = {1: 1, -1: -1, "higher": 1, "lower": -1}
SINGLE_TASK = "single_task"


def _merge(schema, given, path):
    if not isinstance(given, dict):
        raise ConfigError(f"`{path}` must be a mapping of keys to values. "
                          f"Received: {given!r}")
    unknown = sorted(set(given) - set(schema))
    if unknown:
        where = f"in `{path}`" if path else "at the top level"
        raise ConfigError(f"Unknown config key(s) {unknown} {where}. Allowed keys: "
                          f"{sorted(schema)}.")
    merged = {}
    for key, default in schema.items():
        full = f"{path}.{key}" if path else key
        if key not in given or given[key] is None and default is REQUIRED:
            if default is REQUIRED:
                raise ConfigError(f"Missing required config key `{full}`.")
            merged[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and default and given[key] is not None:
            merged[key] = _merge(default, given[key], full)
        else:
            merged[key] = given[key]
    return merged


def resolve_config(raw, name=None):
    """Fills defaults into a config mapping and validates its structure.

    Args:
        raw: dict, as read from YAML.
        name: default for the `name` key (the config file's stem).

    Returns:
        A new dict with every key of `SCHEMA`.

    Raises:
        ConfigError: unknown or missing keys, or values of the wrong shape.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"A config must be a YAML mapping. Received: {raw!r}")
    config = _merge(SCHEMA, raw, "")
    config["name"] = config["name"] or name or "kmtl"
    data = config["data"]
    if data["dataset"] is not None and data["dataset"] not in BUILTIN_DATASETS:
        raise ConfigError(f"data.dataset: unknown data set {data['dataset']!r}. Use "
                          f"one of {BUILTIN_DATASETS}, or give data.train.")
    if data["dataset"] is None and data["train"] is None and not data["task_tables"]:
        raise ConfigError("Missing data: give `data.train` (a CSV/Parquet file), "
                          "`data.task_tables` (one file per task) or `data.dataset`.")
    if not isinstance(config["tasks"], list) or not config["tasks"]:
        raise ConfigError("`tasks` must be a non-empty list of task mappings "
                          "(name, type, target, ...).")
    training = config["training"]
    for key in ("epochs", "batch_size"):
        if not isinstance(training[key], int) or training[key] < 1:
            raise ConfigError(f"training.{key} must be a positive integer. "
                              f"Received: {training[key]!r}")
    if training["gradient_statistics_every"] is None:
        training["gradient_statistics_every"] = 0  # null: off
    for key in ("gradient_statistics_every", "diagnostics_every"):
        value = training[key]  # diagnostics_every null: every epoch, if any
        if value is not None and not (isinstance(value, int)
                                      and not isinstance(value, bool) and value >= 0):
            raise ConfigError(f"training.{key} must be an integer >= 0 (0: off). "
                              f"Received: {value!r}")
    if not isinstance(config["model"]["options"], dict):
        raise ConfigError("model.options must be a mapping of architecture "
                          "arguments, e.g. {num_experts: 3}.")
    _check_compare(config["compare"], _task_names(config["tasks"]))
    return config


def _task_names(tasks):
    return [t["name"] if isinstance(t, dict) else getattr(t, "name", t)
            for t in tasks]


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_mapping_keys(value, allowed, path):
    if not isinstance(value, dict):
        raise ConfigError(f"`{path}` must be a mapping with keys from "
                          f"{list(allowed)}. Received: {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"Unknown config key(s) {unknown} in `{path}`. Allowed "
                          f"keys: {sorted(allowed)}.")


def _check_variant(variant, path):
    _check_mapping_keys(variant, VARIANT_KEYS, path)
    name = variant.get("name")
    if name is not None and (not isinstance(name, str) or not name or not all(
            c.isalnum() or c in "_.-" for c in name)):
        raise ConfigError(f"{path}.name must be a non-empty string of letters, "
                          f"digits, '_', '.' or '-' (it names plot files). "
                          f"Received: {name!r}")
    if name == SINGLE_TASK:
        raise ConfigError(f"{path}.name: {SINGLE_TASK!r} is reserved for the "
                          f"single-task baselines; choose another name.")
    architecture = variant.get("architecture")
    if architecture is not None and not isinstance(architecture, str):
        raise ConfigError(f"{path}.architecture must be an architecture name such "
                          f"as 'mmoe'. Received: {architecture!r}")
    options = variant.get("options")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"{path}.options must be a mapping of architecture "
                          f"arguments, e.g. {{num_experts: 3}}. Received: "
                          f"{options!r}")
    weighting = variant.get("weighting")
    listed = weighting if isinstance(weighting, list) else [weighting]
    if not listed or not all(w is None or isinstance(w, (str, dict)) for w in listed):
        raise ConfigError(f"{path}.weighting must be a weighting name or spec such "
                          f"as 'pcgrad' or 'cagrad(c=0.4)', or a non-empty list of "
                          f"them (one variant each). Received: {weighting!r}")


def _check_compare(compare, task_names):
    """Validates the structure of the `compare` section in place (names of
    architectures and weightings are checked by `kmtl.runs.comparison`)."""
    if not _positive_int(compare["seeds"]):
        raise ConfigError(f"compare.seeds must be a positive integer (the number "
                          f"of seeds per model). Received: {compare['seeds']!r}")
    if compare["average"] not in AVERAGES:
        raise ConfigError(f"compare.average: unknown average "
                          f"{compare['average']!r}. Use one of {AVERAGES}.")
    if compare["split"] not in VERDICT_SPLITS:
        raise ConfigError(f"compare.split: unknown split {compare['split']!r}. Use "
                          f"one of {VERDICT_SPLITS}.")
    variants = compare["variants"]
    if variants is not None:
        if not isinstance(variants, list) or not variants:
            raise ConfigError(f"compare.variants must be a non-empty list of "
                              f"mappings with keys from {list(VARIANT_KEYS)}, or "
                              f"null for the config's own model. Received: "
                              f"{variants!r}")
        for i, variant in enumerate(variants):
            _check_variant(variant, f"compare.variants[{i}]")
    if compare["baseline"] is not None:
        _check_mapping_keys(compare["baseline"], BASELINE_KEYS, "compare.baseline")
    metrics = compare["metrics"]
    if metrics is not None:
        if not isinstance(metrics, dict) or not metrics:
            raise ConfigError(f"compare.metrics must be null (every metric of "
                              f"every task) or a mapping task -> list of metric "
                              f"names, e.g. {{income: [auc]}}. Received: {metrics!r}")
        for task, names in metrics.items():
            if task not in task_names:
                raise ConfigError(f"compare.metrics: unknown task {task!r}. Tasks "
                                  f"are {task_names}.")
            if (not isinstance(names, list) or not names
                    or not all(isinstance(n, str) for n in names)):
                raise ConfigError(f"compare.metrics.{task} must be a non-empty list "
                                  f"of metric names, e.g. [auc]. Received: "
                                  f"{names!r}")
    directions = compare["directions"]
    if not isinstance(directions, dict):
        raise ConfigError(f"compare.directions must be a mapping metric -> 1 "
                          f"(higher is better) or -1 (lower is better). Received: "
                          f"{directions!r}")
    for metric, value in directions.items():
        if (isinstance(value, bool) or not isinstance(value, (int, float, str))
                or value not in DIRECTIONS):
            raise ConfigError(f"compare.directions.{metric} must be 1 or 'higher' "
                              f"(higher is better), -1 or 'lower' (lower is "
                              f"better). Received: {value!r}")
        directions[metric] = DIRECTIONS[value]
    interference = compare["interference"]
    if not isinstance(interference["enabled"], bool):
        raise ConfigError(f"compare.interference.enabled must be true or false. "
                          f"Received: {interference['enabled']!r}")
    for key in ("batches", "every"):
        if not _positive_int(interference[key]):
            raise ConfigError(f"compare.interference.{key} must be a positive "
                              f"integer. Received: {interference[key]!r}")


def load_config(path):
    """Reads and resolves a YAML config file (see `resolve_config`).

    Raises:
        ConfigError: the file is missing, is not valid YAML, or fails validation.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path!r}.")
    with open(path) as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
    stem = os.path.basename(path).split(".")[0]
    return resolve_config(raw or {}, name=stem)
