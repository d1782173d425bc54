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
        "early_stopping_patience": 3,
        "seed": 0,
        "mixed_precision": False,
        "verbose": 1,
    },
    "export": {
        "enabled": True,
        "dir": None,
    },
}

BUILTIN_DATASETS = ("penguins", "census_income")


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
    if not isinstance(config["model"]["options"], dict):
        raise ConfigError("model.options must be a mapping of architecture "
                          "arguments, e.g. {num_experts: 3}.")
    return config


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
