"""`tune`: a hyperparameter search over a config, on KerasTuner.

The config's `tune` section (`kmtl.runs.config.TuneConfig`) names the search
space (dotted config key paths to ranges or choices), the algorithm
(KerasTuner's `RandomSearch`, `BayesianOptimization` or `Hyperband` oracle),
the budget and the objective. A search:

1. prepares the data once (`kmtl.runs.training.prepare_run`: load, split, fit
   the tasks and features; the keys the config leaves unset are chosen from
   the training rows as `kmtl train` chooses them);
2. with `objective: delta_m`, trains the single-task baselines once, as `kmtl
   compare` trains them (`kmtl.runs.comparison.baseline_config`), and keeps
   their validation metrics in the tune directory (`baselines.json`), so a
   resumed search does not train them again;
3. runs each trial: the config with the trial's values, trained by
   `kmtl.runs.training.run_model` as `kmtl train` trains it (early stopping on
   the validation loss, best epoch restored), seeded with `training.seed`
   (`training.seed + i` for the i-th of `executions_per_trial` models), and
   scored on the validation split (never the test split). A trial whose loss
   or metrics are not finite, or whose values a method refuses, is recorded
   as failed; the search goes on. With `hyperband`, a trial trains for the
   `tuner/epochs` its bracket gives, from scratch;
4. writes `best.yaml` (the best trial's whole config, ready for `kmtl
   train`), `trials.csv` and the report (`kmtl.runs.tuning_report`).

The tune directory `<output_dir>/<name>-tune/` holds the searched config
(`config.yaml`), KerasTuner's project (`search/`: the oracle's state and one
`trial_<id>/` folder per trial, with `kmtl_trial.json`: the values, the
objective, the per-task validation metrics, the status and the seconds) and
the outputs. Running the same command again resumes: finished trials are not
run again, an interrupted one is run again, and a larger `tune.trials` runs
the extra trials. A config other than the stored one is refused unless
`overwrite` starts afresh. No model is saved.
"""

import contextlib
import copy
import dataclasses
import datetime
import io
import json
import math
import os
import shutil
import time

import keras
import keras_tuner
import numpy as np
import pandas as pd
import yaml

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.errors import TrainingError
from kmtl.measures.delta_m import delta_m
from kmtl.measures.delta_m import metric_direction
from kmtl.registry import parse_spec
from kmtl.runs.comparison import baseline_config
from kmtl.runs.comparison import baseline_spec
from kmtl.runs.comparison import baseline_tasks
from kmtl.runs.comparison import counted_metrics
from kmtl.runs.comparison import with_shared_units
from kmtl.runs.config import DELTA_M
from kmtl.runs.config import as_run_config
from kmtl.runs.config import parse_config
from kmtl.runs.training import check_plugins
from kmtl.runs.training import check_writable
from kmtl.runs.training import precision_policy
from kmtl.runs.training import prepare_run
from kmtl.runs.training import run_model
from kmtl.runs.tuning_report import write_tuning_report
from kmtl.tasks import Task
from kmtl.weighting.base import WEIGHTINGS

__all__ = ["BEST_FILE", "TRIALS_FILE", "Objective", "decode_values",
           "search_space", "trial_config", "trial_data", "trials_table", "tune",
           "tune_directory"]

SEARCH_DIR = "search"
"""KerasTuner's project directory inside the tune directory."""
CONFIG_FILE = "config.yaml"
"""The searched config (resolved); a resumed search must have the same."""
BASELINES_FILE = "baselines.json"
"""The single-task baselines' validation metrics (`objective: delta_m`)."""
TRIAL_FILE = "kmtl_trial.json"
"""kmtl's record of one trial, in KerasTuner's `trial_<id>/` folder."""
BEST_FILE = "best.yaml"
"""The best trial's whole config, ready for `kmtl train`."""
TRIALS_FILE = "trials.csv"
"""One row per trial: values, objective, validation metrics, status, seconds."""
OBJECTIVE = "objective"
"""The name of the objective KerasTuner's oracle tracks."""
HYPERBAND_EPOCHS = "tuner/epochs"


def tune_directory(config, output_dir="runs"):
    """The tune directory of a config: `<output_dir>/<name>-tune`."""
    return os.path.join(os.fspath(output_dir), f"{as_run_config(config).name}-tune")


# === The search space ===


def _scalar_type(values):
    """The one KerasTuner `Choice` type of `values` (int, float, str, bool), or
    None when they need encoding (lists, null, mixed types)."""
    kinds = set()
    for value in values:
        if value is None or isinstance(value, (list, dict)):
            return None
        kinds.add(type(value))
    if kinds <= {int, float} and float in kinds:
        return float
    return kinds.pop() if len(kinds) == 1 else None


def _ordered_keys(space):
    """`training.weighting` first: its arguments are conditioned on it."""
    return sorted(space, key=lambda key: key != "training.weighting")


def _encoded_choices(space):
    """`{key: True}` for the choice keys whose values are JSON strings in
    KerasTuner (lists such as `[128, 64]`, null, mixed types)."""
    return {key: _scalar_type(entry) is None for key, entry in space.items()
            if isinstance(entry, list)}


def _method_name(spec):
    name, _ = parse_spec(spec or "static")
    return WEIGHTINGS.get_class(name).registered_name


def search_space(config):
    """`tune.space` as KerasTuner `HyperParameters`.

    A range is `Int` (min, max and step integers) or `Float`, with
    `sampling="log"` for `log: true`; a list is a `Choice` (lists, null and
    mixed types are held as JSON strings and decoded by `decode_values`). A
    weighting argument (`training.weighting.<arg>`) searched with a choice of
    methods is conditioned on the methods that take it
    (`HyperParameters.conditional_scope`).

    Args:
        config: a `RunConfig` (or a config mapping) with a `tune` section.

    Returns:
        `keras_tuner.HyperParameters`, one entry per key of `tune.space`,
        named by the key.
    """
    space = as_run_config(config).tune.space
    hp = keras_tuner.HyperParameters()
    encoded = _encoded_choices(space)
    for key in _ordered_keys(space):
        entry = space[key]
        parts = key.split(".")
        methods = space.get("training.weighting")
        if (parts[:2] == ["training", "weighting"] and len(parts) == 3
                and isinstance(methods, list)):
            taking = [m for m in methods if parts[2] in WEIGHTINGS.options(
                _method_name(m))]
            parents = [json.dumps(m) if encoded["training.weighting"] else m
                       for m in taking]
            with hp.conditional_scope("training.weighting", parents):
                _add(hp, key, entry, encoded)
        else:
            _add(hp, key, entry, encoded)
    return hp


def _add(hp, key, entry, encoded):
    if isinstance(entry, list):
        kind = _scalar_type(entry)
        values = ([json.dumps(v) for v in entry] if encoded[key]
                  else [kind(v) for v in entry])
        hp.Choice(key, values)
        return
    sampling = "log" if entry["log"] else "linear"
    integer = isinstance(entry["min"], int) and isinstance(entry["max"], int) and (
        isinstance(entry.get("step", 1), int))
    if integer:
        hp.Int(key, entry["min"], entry["max"], step=entry.get("step"),
               sampling=sampling)
    else:
        hp.Float(key, float(entry["min"]), float(entry["max"]),
                 step=entry.get("step"), sampling=sampling)


def decode_values(config, hyperparameters):
    """The active values of a trial's `HyperParameters` as config values:
    `{key: value}` in `tune.space` order (KerasTuner's own entries, such as
    Hyperband's `tuner/epochs`, left out)."""
    space = as_run_config(config).tune.space
    encoded = _encoded_choices(space)
    values = {}
    for key in space:
        if key not in hyperparameters.values:
            continue
        if not hyperparameters.is_active(key):
            continue
        value = hyperparameters.values[key]
        values[key] = json.loads(value) if encoded.get(key) else value
    return values


def _spec(name, options):
    if not options:
        return name
    arguments = ", ".join(f"{key}={value!r}" for key, value in options.items())
    return f"{name}({arguments})"


def trial_config(config, values, epochs=None):
    """The config with a trial's values set.

    Args:
        config: a `RunConfig` or a config mapping.
        values: `{key path: value}` as in `tune.space` (`decode_values`); a
            weighting argument is passed to the trial's method only when the
            method takes it.
        epochs: int or None, `training.epochs` (Hyperband's budget).

    Returns:
        A validated `RunConfig`.

    Raises:
        ConfigError: a value the config refuses, naming its key.
    """
    raw = copy.deepcopy(as_run_config(config).to_dict())
    arguments = {}
    for key, value in values.items():
        parts = key.split(".")
        if parts[0] == "tasks":
            for task in raw["tasks"]:
                if task["name"] == parts[1]:
                    task["loss_weight"] = value
        elif parts[:2] == ["training", "weighting"] and len(parts) == 3:
            arguments[parts[2]] = value
        elif parts[:2] == ["model", "options"]:
            raw["model"]["options"][parts[2]] = value
        else:
            raw[parts[0]][parts[1]] = value
    if arguments:
        name, options = parse_spec(raw["training"]["weighting"] or "static")
        taken = WEIGHTINGS.options(name)
        options.update({k: v for k, v in arguments.items() if k in taken})
        raw["training"]["weighting"] = _spec(name, options)
    if epochs is not None:
        raw["training"]["epochs"] = int(epochs)
    return parse_config(raw)


def trial_data(data, config):
    """`data` (a `kmtl.runs.data.PreparedData`) with the loss weights of
    `config`'s tasks in its fitted tasks, and `config`'s batch size: the data
    a trial's config trains on without preparing it again."""
    weights = {t.name: (t.model_extra or {}).get("loss_weight") for t in config.tasks}
    tasks = [t if weights.get(t.name) in (None, t.loss_weight) else
             Task.from_config({**t.get_config(), "loss_weight": weights[t.name]})
             for t in data.tasks]
    return dataclasses.replace(data, tasks=tasks,
                               batch_size=config.training.batch_size)


def _check_space(config, tasks):
    """Sets each searched value alone (each choice, a range's ends), and each
    pair of a searched weighting and gradient mode, and looks the architecture
    and weighting up with it, so that a value the config or a method refuses
    stops the search before anything is written."""
    space = config.tune.space
    cases = [{key: value} for key, entry in space.items()
             for value in ([entry["min"], entry["max"]] if isinstance(entry, dict)
                           else entry)]
    # A method may refuse a gradient mode (db_mtl takes no representation
    # gradients): the pairs that a trial can draw.
    cases += [{"training.weighting": weighting, "training.gradients": gradients}
              for weighting in space.get("training.weighting", [])
              for gradients in space.get("training.gradients", [])]
    for values in cases:
        try:
            check_plugins(trial_config(config, values), tasks)
        except ConfigError as error:
            message = str(error).replace("\n", " ")
            keys = " and ".join(f"tune.space.{key}" for key in values)
            shown = " with ".join(repr(value) for value in values.values())
            raise ConfigError(f"{keys}: the value {shown} is refused: "
                              f"{message}") from None


# === The objective ===


@dataclasses.dataclass
class Objective:
    """How a trial's validation metrics become one number.

    Attributes:
        kind: `"delta_m"`, `"metric"` (one `<task>/<metric>`) or `"sum"` (a
            weighted sum).
        terms: `{(task, metric): weight}` (empty for `delta_m`).
        direction: +1 (higher is better) or -1.
        counted: with `delta_m`, `{task: [metric, ...]}` counted in Δm.
        directions: with `delta_m`, `compare.directions`.
        average: with `delta_m`, `compare.average`.
        baselines: with `delta_m`, `{task: {metric: value}}` of the
            single-task baselines (set once they are trained).
    """

    kind: str
    terms: dict
    direction: int
    counted: dict = None
    directions: dict = None
    average: str = "task"
    baselines: dict = None

    @classmethod
    def from_config(cls, config, tasks):
        """The objective of `tune.objective`, checked against the fitted tasks.

        Raises:
            ConfigError: a metric the task does not compute, or a weighted sum
                whose terms do not agree on a direction without
                `tune.direction`.
        """
        section = config.tune
        given = section.objective
        if given == DELTA_M:
            return cls(kind=DELTA_M, terms={}, direction=section.direction or 1,
                       counted=counted_metrics(config, tasks),
                       directions=dict(config.compare.directions),
                       average=config.compare.average)
        weights = {given: 1.0} if isinstance(given, str) else given
        by_name = {t.name: t for t in tasks}
        terms, signs = {}, set()
        for term, weight in weights.items():
            task, _, metric = term.partition("/")
            known = ["loss"] + list(by_name[task].metrics)
            if metric not in known:
                raise ConfigError(f"tune.objective: task {task!r} does not "
                                  f"compute {metric!r}. Its metrics: {known}.")
            terms[(task, metric)] = weight
            if section.direction is None:
                try:
                    direction = metric_direction(metric, config.compare.directions)
                except ValueError as error:
                    raise ConfigError(f"tune.objective: {error} Set "
                                      f"tune.direction.") from None
                signs.add(direction * (1 if weight >= 0 else -1))
        direction = section.direction
        if direction is None:
            if len(signs) > 1:
                raise ConfigError(f"tune.objective: the terms of {weights} do not "
                                  f"agree on a direction (higher is better for "
                                  f"some, lower for others). Set tune.direction "
                                  f"(higher or lower), with negative weights "
                                  f"for the terms that go the other way.")
            direction = signs.pop()
        kind = "metric" if isinstance(given, str) else "sum"
        return cls(kind=kind, terms=terms, direction=direction)

    def value(self, metrics):
        """The objective of one model's validation metrics `{task: {metric:
        value}}`.

        Raises:
            TrainingError: a metric the objective needs has no value, or the
                result is not finite.
        """
        if self.kind == DELTA_M:
            try:
                result = delta_m(metrics, self.baselines, self.counted,
                                 self.directions, self.average)
            except (ValueError, TypeError, KeyError) as error:
                raise TrainingError(f"Δm cannot be computed: {error}") from None
        else:
            result = 0.0
            for (task, metric), weight in self.terms.items():
                value = metrics[task][metric]
                if value is None:
                    raise TrainingError(f"The validation {task}/{metric} has no "
                                        f"value (n/a).")
                result += weight * value
        if not math.isfinite(result):
            raise TrainingError(f"The objective is not finite: {result}.")
        return float(result)

    def describe(self):
        """The objective in words, for the log and the report."""
        way = "higher" if self.direction > 0 else "lower"
        if self.kind == DELTA_M:
            return (f"Δm (%) on the validation split against single-task "
                    f"baselines ({way} is better)")
        text = " + ".join(f"{w:g} × {t}/{m}" if w != 1 else f"{t}/{m}"
                          for (t, m), w in self.terms.items())
        return f"{text} on the validation split ({way} is better)"


# === Baselines ===


def _baselines(config, data, objective, directory, log):
    """The single-task baselines' mean validation metrics, trained once and
    kept in `baselines.json`."""
    path = os.path.join(directory, BASELINES_FILE)
    start = config.training.seed
    seeds = list(range(start, start + config.tune.baseline_seeds))
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        if stored["seeds"] == seeds:
            log(f"Single-task baselines: read from {path}")
            return stored
    baseline = with_shared_units(baseline_spec(config), len(data.train))
    runs = []
    for seed in seeds:
        for task in baseline_tasks(data.tasks):
            if task.name not in objective.counted:
                continue
            run = run_model(baseline_config(config, baseline, seed), data,
                            tasks=[task])
            keras.backend.clear_session()
            metrics = run.metrics["validation"][task.name]
            runs.append({"task": task.name, "seed": seed, "metrics": metrics,
                         "seconds": round(run.seconds, 3)})
            log(f"Single-task baseline {task.name} (seed {seed}): "
                f"{_short(metrics, objective.counted[task.name])} "
                f"({run.seconds:.1f} s)")
    means = {}
    for task in objective.counted:
        own = [r["metrics"] for r in runs if r["task"] == task]
        means[task] = {m: float(np.mean([r[m] for r in own]))
                       for m in objective.counted[task]}
    stored = {"seeds": seeds, "baseline": baseline, "metrics": means, "runs": runs}
    _write_json(path, stored)
    return stored


def _short(metrics, names):
    return " ".join(f"{m}={metrics[m]:.4f}" for m in names
                    if metrics.get(m) is not None)


# === The tuner ===


class _Tuner(keras_tuner.Tuner):
    """A KerasTuner `Tuner` whose trial is a kmtl training run: `run_trial`
    returns the objective; no model is saved."""

    def __init__(self, oracle, search, **kwargs):
        self.search_run = search
        super().__init__(oracle, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        return self.search_run.run_trial(trial, self.get_trial_dir(trial.trial_id))

    def save_model(self, trial_id, model, step=0):
        """Nothing is saved: `best.yaml` reproduces the best trial."""

    def load_model(self, trial):
        raise NotImplementedError("kmtl tune saves no model: train best.yaml.")


class _Search:
    """What a trial needs: the config, the data and the objective."""

    def __init__(self, config, data, objective, log):
        self.config, self.data, self.objective, self.log = (config, data,
                                                            objective, log)
        self.trials = config.tune.trials

    def run_trial(self, trial, trial_dir):
        hp = trial.hyperparameters
        values = decode_values(self.config, hp)
        epochs = hp.values.get(HYPERBAND_EPOCHS)
        record = {"trial": trial.trial_id, "values": values, "epochs_budget": epochs}
        start = time.perf_counter()
        try:
            config = trial_config(self.config, values, epochs)
            data = trial_data(self.data, config)
            scores, metrics, epochs_run = [], [], []
            for execution in range(self.config.tune.executions_per_trial):
                seed = config.training.seed + execution
                run = run_model(config.replace({"training.seed": seed}), data)
                keras.backend.clear_session()
                metrics.append(run.metrics["validation"])
                epochs_run.append(len(run.history.get("loss", [])))
                scores.append(self.objective.value(run.metrics["validation"]))
        except (TrainingError, ConfigError, DataError) as error:
            keras.backend.clear_session()
            record.update(status="failed", objective=None, metrics=None,
                          seconds=round(time.perf_counter() - start, 3),
                          message=str(error))
            _write_json(os.path.join(trial_dir, TRIAL_FILE), record)
            self.log(f"[trial {trial.trial_id} of {self.trials}] "
                     f"{_values_text(values)}: failed: {error}")
            raise keras_tuner.errors.FailedTrialError(str(error)) from None
        value = float(np.mean(scores))
        record.update(status="completed", objective=value,
                      objectives=scores, metrics=_mean_metrics(metrics),
                      epochs=epochs_run,
                      seconds=round(time.perf_counter() - start, 3), message=None)
        _write_json(os.path.join(trial_dir, TRIAL_FILE), record)
        self.log(f"[trial {trial.trial_id} of {self.trials}] "
                 f"{_values_text(values)}: objective {value:.4f} "
                 f"({record['seconds']:.1f} s)")
        return {OBJECTIVE: value}


def _mean_metrics(runs):
    """`{task: {metric: mean over runs}}` (None where a run has none)."""
    result = {}
    for task, values in runs[0].items():
        result[task] = {}
        for metric in values:
            numbers = [r[task][metric] for r in runs]
            result[task][metric] = (None if any(v is None for v in numbers)
                                    else float(np.mean(numbers)))
    return result


def _values_text(values):
    return ", ".join(f"{key}={_format(value)}" for key, value in values.items())


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1, allow_nan=False)


def _oracle(config, direction):
    """The KerasTuner oracle of `tune.algorithm`, maximising (direction +1) or
    minimising the objective; Hyperband's longest trial is `training.epochs`."""
    section = config.tune
    objective = keras_tuner.Objective(OBJECTIVE, "max" if direction > 0 else "min")
    common = {"objective": objective, "hyperparameters": search_space(config),
              # KerasTuner reads seed 0 as "no seed".
              "seed": section.seed + 1,
              "max_consecutive_failed_trials": section.trials + 1,
              "allow_new_entries": False, "tune_new_entries": False}
    if section.algorithm == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=section.trials,
                                                      **common)
    if section.algorithm == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=section.trials, **common)
    oracle = keras_tuner.oracles.HyperbandOracle(
        max_epochs=config.training.epochs, factor=section.hyperband_factor,
        **common)
    oracle.max_trials = section.trials  # the budget applies to Hyperband too
    return oracle


# === The stored config ===


def _searched(config):
    """The config a resumed search must share: everything but the budget."""
    raw = config.to_dict()
    raw["tune"] = {k: v for k, v in raw["tune"].items() if k != "trials"}
    return json.loads(json.dumps(raw))


def _differences(stored, now, prefix=""):
    if isinstance(stored, dict) and isinstance(now, dict):
        found = []
        for key in list(stored) + [k for k in now if k not in stored]:
            found += _differences(stored.get(key), now.get(key), f"{prefix}{key}.")
        return found
    return [] if stored == now else [f"{prefix.rstrip('.')}: {stored!r} -> {now!r}"]


def _check_resumable(directory, config):
    """Raises a ConfigError when `directory` holds a search of another config."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(directory):
        return False
    if not os.path.isfile(path):
        raise DataError(f"{directory!r} exists but holds no {CONFIG_FILE}: it is "
                        f"not a kmtl tune directory. Move it, or pass another "
                        f"--output-dir.")
    with open(path, encoding="utf-8") as handle:
        stored = yaml.safe_load(handle)
    stored["tune"] = {k: v for k, v in (stored.get("tune") or {}).items()
                      if k != "trials"}
    changed = _differences(stored, _searched(config))
    if changed:
        raise ConfigError(f"The tune directory {directory!r} holds a search of "
                          f"another config: {'; '.join(changed[:8])}. Resume with "
                          f"the config it was started with (only tune.trials may "
                          f"change), pass --overwrite to start afresh, or "
                          f"another --output-dir.")
    return True


# === Entry point ===


def tune(config, data_dir=None, output_dir="runs", log=print, trials=None,
         algorithm=None, overwrite=False):
    """Searches the config's `tune.space` (see the module docstring).

    Args:
        config: a `RunConfig` or a config mapping with a `tune` section.
        data_dir: folder of relative data paths and built-in data sets.
        output_dir: the parent of the tune directory `<name>-tune/`.
        log: callable taking one str, for progress lines (default `print`).
        trials: int or None, overrides `tune.trials`.
        algorithm: str or None, overrides `tune.algorithm`.
        overwrite: bool. True: delete an earlier search in the tune directory
            and start afresh (after every check has passed); False (default):
            resume it.

    Returns:
        The report dict (as in `report.json`), plus `"directory"`: the tune
        directory.

    Raises:
        ConfigError: a bad config or search space (naming the key), or a tune
            directory holding another config's search; before anything is
            written.
        DataError: data that does not fit the config, before anything is
            written.
        TrainingError: every trial failed (the trials stay recorded).

    Examples:
        >>> report = tune(read_config("examples/census_income_tune.yaml"),
        ...               data_dir="../shared/data/census-income")
        >>> report["best"]["values"], report["directory"]
    """
    config = as_run_config(config)
    changes = {}
    if trials is not None:
        changes["tune.trials"] = trials
    if algorithm is not None:
        changes["tune.algorithm"] = algorithm
    if changes:
        config = config.replace(changes)
    with precision_policy(config):
        return _tune(config, data_dir, output_dir, log, overwrite)


def _tune(config, data_dir, output_dir, log, overwrite):
    section = config.tune
    if not section.space:
        raise ConfigError("tune.space is empty: nothing to search. Give at least "
                          "one key, e.g. tune.space: {training.learning_rate: "
                          "{min: 1e-4, max: 1e-2, log: true}}.")
    if section.objective == DELTA_M and len(config.tasks) < 2:
        raise ConfigError("tune.objective: delta_m compares a multi-task model "
                          "with one single-task model per task; it needs at "
                          "least two tasks. Choose a metric, e.g. "
                          f"{config.tasks[0].name}/loss.")
    directory = tune_directory(config, output_dir)
    resuming = not overwrite and _check_resumable(directory, config)
    check_writable(output_dir, "output directory", "Pass a writable --output-dir.")
    given = config
    config, data = prepare_run(config, data_dir, log)
    if "validation" not in data.held_out:
        raise ConfigError("kmtl tune scores trials on the validation split, which "
                          "is empty. Give data.validation or a non-zero "
                          "data.split.validation.")
    check_plugins(config, data.tasks)
    _check_space(config, data.tasks)
    objective = Objective.from_config(config, data.tasks)

    if overwrite and os.path.exists(directory):
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    if not resuming:
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as h:
            yaml.safe_dump(_searched(given), h, sort_keys=False,
                           allow_unicode=True)
    started = time.perf_counter()
    baselines = None
    if objective.kind == DELTA_M:
        baselines = _baselines(config, data, objective, directory, log)
        objective.baselines = baselines["metrics"]
    log(f"Tuning {config.name}: {section.algorithm}, {section.trials} trials, "
        f"objective {objective.describe()}; {directory}")
    search = _Search(config, data, objective, log)
    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ..."
        tuner = _Tuner(_oracle(config, objective.direction), search,
                       directory=directory, project_name=SEARCH_DIR,
                       overwrite=False)
    done = sum(1 for t in tuner.oracle.trials.values()
               if t.status in ("COMPLETED", "FAILED"))
    if resuming and done:
        log(f"Resuming the search in {directory}: {done} trial(s) done.")
    tuner.search(verbose=0)
    records = _records(tuner, config)
    completed = [r for r in records if r["status"] == "completed"]
    if not completed:
        messages = "; ".join(sorted({r.get("message") or r["status"]
                                     for r in records}))[:2000]
        raise TrainingError(f"Every trial of the search failed: {messages} "
                            f"Tune directory: {directory}")
    best = max(completed, key=lambda r: objective.direction * r["objective"])
    best_config = trial_config(config, best["values"])
    best_path = os.path.join(directory, BEST_FILE)
    raw = best_config.to_dict()
    raw.pop("tune")
    with open(best_path, "w", encoding="utf-8") as handle:
        handle.write(f"# The best trial ({best['trial']}) of kmtl tune: objective "
                     f"{best['objective']:.6g}.\n# Train it: kmtl train "
                     f"{best_path}\n")
        yaml.safe_dump(raw, handle, sort_keys=False, allow_unicode=True)
    trials_path = os.path.join(directory, TRIALS_FILE)
    trials_table(records, list(section.space), data.tasks).to_csv(
        trials_path, index=False)
    report = {
        "name": config.name,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "algorithm": section.algorithm,
        "budget": section.trials,
        "seed": section.seed,
        "executions_per_trial": section.executions_per_trial,
        "objective": {"definition": section.objective,
                      "description": objective.describe(),
                      "direction": objective.direction},
        "space": section.space,
        "baselines": baselines,
        "trials": records,
        "best": best,
        "rows": {"train": len(data.train), "validation": len(data.validation)},
        "seconds": round(sum(r.get("seconds") or 0.0 for r in records), 3),
        "session_seconds": round(time.perf_counter() - started, 3),
        "config": config.to_dict(),
    }
    write_tuning_report(report, directory)
    log(f"Best trial {best['trial']}: {_values_text(best['values'])}; objective "
        f"{best['objective']:.4f}")
    log(f"Best config: {best_path} (kmtl train {best_path})")
    log(f"Report: {directory}/report.md")
    log(f"Tune directory: {directory}")
    return {**report, "directory": directory}


def _trial_number(trial_id):
    """Sort key: numeric ids by number, any other id after them."""
    number = int(trial_id) if trial_id.isdigit() else float("inf")
    return number, trial_id


def _records(tuner, config):
    """kmtl's record of every trial of the oracle, in trial order."""
    records = []
    # By number: KerasTuner pads ids to the digits of the budget of the day, so
    # a search extended from 5 to 12 trials holds "4" and "05".
    for trial_id in sorted(tuner.oracle.trials, key=_trial_number):
        trial = tuner.oracle.trials[trial_id]
        path = os.path.join(tuner.get_trial_dir(trial_id), TRIAL_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                records.append(json.load(handle))
        else:
            records.append({"trial": trial_id, "status": trial.status.lower(),
                            "values": decode_values(config, trial.hyperparameters),
                            "objective": None, "metrics": None, "seconds": None,
                            "message": trial.message})
    return records


def trials_table(records, keys, tasks):
    """`trials.csv`: one row per trial: `trial`, `status`, `objective`,
    `seconds`, `epochs` (mean over the trial's models), one column per searched
    key (lists as JSON; empty where a key was inactive), one per validation
    metric (`<task>/<metric>`), `message`.

    Args:
        records: the trials' records (`kmtl_trial.json`).
        keys: the keys of `tune.space`, in order.
        tasks: the fitted tasks.

    Returns:
        A `pandas.DataFrame`.
    """
    rows = []
    metric_columns = []
    for record in records:
        row = {"trial": record["trial"], "status": record["status"],
               "objective": record.get("objective"),
               "seconds": record.get("seconds"),
               "epochs": (None if not record.get("epochs")
                          else float(np.mean(record["epochs"])))}
        for key, value in record["values"].items():
            row[key] = json.dumps(value) if isinstance(value, list) else value
        for task in tasks:
            for metric, value in ((record.get("metrics") or {}).get(
                    task.name) or {}).items():
                row[f"{task.name}/{metric}"] = value
                if f"{task.name}/{metric}" not in metric_columns:
                    metric_columns.append(f"{task.name}/{metric}")
        row["message"] = record.get("message")
        rows.append(row)
    columns = (["trial", "status", "objective", "seconds", "epochs"] + list(keys)
               + metric_columns + ["message"])
    return pd.DataFrame(rows, columns=columns)
