"""A whole training run from a resolved config: data, model, fit, metrics, saving,
export. This is what `kmtl train` runs; every step is also a public function.

One run has three steps, shared by `kmtl train` and `kmtl compare`:
`prepare_data` (load, split, fit tasks and features, convert the held-out splits:
once per config), `build_run_model` (seed, build, compile) and `run_model`
(fit with early stopping, evaluate the held-out splits).
"""

import contextlib
import dataclasses
import datetime
import json
import os
import time

import keras
import pandas as pd
import yaml

from kmtl import datasets
from kmtl import tasks as tasks_module
from kmtl.callbacks.gradient_statistics import GradientStatistics
from kmtl.callbacks.sharing_diagnostics import SharingDiagnostics
from kmtl.data import combine_task_tables
from kmtl.data import make_dataset
from kmtl.data import read_table
from kmtl.data import split_frame
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.models.export import export_saved_model
from kmtl.features import resolve_features
from kmtl.measures.diagnostics import architecture_layer
from kmtl.models import build_model

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LOG_DIR = "logs"
SPLITS = ("train", "validation", "test")


def _path(path, data_dir):
    if path is None or os.path.isabs(path) or data_dir is None:
        return path
    return os.path.join(data_dir, path)


def build_tasks(config):
    """Fresh (unfitted) tasks from the config's `tasks` list.

    Raises:
        ConfigError: a bad task mapping or `derived_from` (before data is read).
    """
    tasks = [tasks_module.get(dict(t)) if isinstance(t, dict) else tasks_module.get(t)
             for t in config["tasks"]]
    tasks_module.derivation_order(tasks)
    return tasks


def load_splits(config, data_dir=None, tasks=None):
    """The train, validation and test DataFrames the config describes.

    Files named in `data.validation` / `data.test` are used as they are; a split
    without a file is cut from the training file with `data.split`. Built-in data
    sets follow their own protocol (Census-Income: the paper's split).

    Raises:
        DataError: a file is missing, unreadable or empty.
    """
    data = config["data"]
    tasks = tasks if tasks is not None else build_tasks(config)
    if data["dataset"] == "census_income":
        return datasets.load_census_income(data_dir)
    options = data["read_options"] or {}
    if data["dataset"] == "penguins":
        frame = datasets.load_penguins()
    elif data["task_tables"]:
        tables = {name: read_table(_path(path, data_dir), **options)
                  for name, path in data["task_tables"].items()}
        frame = combine_task_tables(tables, label_column=data["label_column"],
                                    key=data["key"])
    else:
        frame = read_table(_path(data["train"], data_dir), **options)
    validation = test = None
    if data["validation"]:
        validation = read_table(_path(data["validation"], data_dir), **options)
    if data["test"]:
        test = read_table(_path(data["test"], data_dir), **options)
    for task in tasks:
        task.check_columns(frame, "the training data")
    split = data["split"]
    if validation is None or test is None:
        train, cut_validation, cut_test = split_frame(
            frame, tasks, split["method"],
            0.0 if validation is not None else split["validation"],
            0.0 if test is not None else split["test"], split["seed"])
        validation = cut_validation if validation is None else validation
        test = cut_test if test is None else test
        return train, validation, test
    return frame, validation, test


def prepare(config, train, tasks):
    """Fits the tasks and the features on the training split.

    Returns:
        The list of fitted features.
    """
    for task in tasks:
        task.fit(train)
    targets = {c for t in tasks for c in t.target_columns}
    section = config["features"]
    exclude = set(section["exclude"]) | targets
    if config["data"]["key"]:
        exclude.add(config["data"]["key"])
    features = resolve_features(train, section["numeric"], section["categorical"],
                                exclude)
    for feature in features:
        feature.fit(train, section["max_vocabulary"], section["min_frequency"])
    return features


def model_from_config(config, features, tasks):
    """`build_model` with the config's `model` section (uncompiled)."""
    section = config["model"]
    return build_model(
        features, tasks, section["architecture"],
        tower_units=section["tower_units"],
        tower_activation=section["tower_activation"],
        tower_dropout=section["tower_dropout"],
        categorical_encoding=section["categorical_encoding"],
        embedding_dim=section["embedding_dim"],
        name=config["name"], **section["options"])


def new_run_dir(output_dir, name):
    """Creates a fresh run directory `output_dir/<name>-<timestamp>[-n]`.

    Never reuses an existing directory.

    Raises:
        DataError: `output_dir` cannot be created or written.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        os.makedirs(output_dir, exist_ok=True)
        for attempt in range(1000):
            suffix = f"-{attempt}" if attempt else ""
            path = os.path.join(output_dir, f"{name}-{stamp}{suffix}")
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
    except OSError as error:
        raise DataError(f"Cannot write the output directory {output_dir!r}: "
                        f"{error.strerror}. Pass a writable --output-dir.") from None
    raise DataError(f"No free run directory name under {output_dir!r}.")


def check_writable(directory, what):
    """Creates `directory` if needed and checks that it can be written.

    Raises:
        DataError: naming `what` and the directory.
    """
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise DataError(f"Cannot create the {what} {directory!r}: {error.strerror}. "
                        f"Choose a writable directory.") from None
    if not os.access(directory, os.W_OK):
        raise DataError(f"The {what} {directory!r} is not writable. Choose a "
                        f"writable directory.")


def nested_metrics(logs, tasks, prefix=""):
    """Flat Keras logs -> `{task: {metric: value}}`, with `loss` per task."""
    result = {}
    for task in tasks:
        values = {"loss": logs[f"{prefix}{task.name}_loss"]}
        for metric in task.metrics:
            values[metric] = logs[f"{prefix}{task.name}_{metric}"]
        result[task.name] = {k: float(v) for k, v in values.items()}
    return result


def metrics_table(metrics):
    """`{split: {task: {metric: value}}}` as a printable table."""
    rows = []
    for split, by_task in metrics.items():
        for task, values in by_task.items():
            rows.append({"split": split, "task": task, **values})
    frame = pd.DataFrame(rows)
    return frame.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4f}")


def split_datasets(frames, features, tasks, batch_size):
    """`make_dataset` for each named non-empty frame (no shuffling).

    Converting every split up front finds bad labels or feature values before
    anything is trained or written."""
    return {split: make_dataset(frame, features, tasks, batch_size)
            for split, frame in frames.items() if frame is not None and len(frame)}


def evaluate_splits(model, datasets):
    """Evaluates `model` on named datasets; returns `{split: {task: {metric: v}}}`."""
    return {split: nested_metrics(model.evaluate(dataset, return_dict=True, verbose=0),
                                  model.tasks)
            for split, dataset in datasets.items()}


def _optimizer(training):
    optimizer = training["optimizer"]
    if isinstance(optimizer, str):
        try:
            optimizer = keras.optimizers.get(
                {"class_name": optimizer, "config": {
                    "learning_rate": training["learning_rate"]}})
        except ValueError:
            raise ConfigError(f"training.optimizer: unknown optimizer {optimizer!r}. "
                              f"Use a Keras optimizer name such as 'adam'.") from None
        return optimizer
    return keras.optimizers.get(optimizer)


@dataclasses.dataclass
class PreparedData:
    """The data of a config, loaded, split and fitted once (see `prepare_data`).

    Attributes:
        tasks: list of fitted `kmtl.Task`.
        features: list of fitted `kmtl.features.Feature`.
        train, validation, test: the split DataFrames (validation and test may be
            None or empty).
        batch_size: int, `training.batch_size`.
        held_out: `{split: tf.data.Dataset}` for the non-empty held-out splits,
            labelled for every task, unshuffled.
    """

    tasks: list
    features: list
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    batch_size: int
    held_out: dict

    def train_dataset(self, seed):
        """The training split, reshuffled every epoch in an order fixed by `seed`."""
        return make_dataset(self.train, self.features, self.tasks, self.batch_size,
                            shuffle=True, seed=seed)


@dataclasses.dataclass
class RunResult:
    """What `run_model` returns.

    Attributes:
        model: the trained `kmtl.MultiTaskModel` (best validation epoch's weights).
        history: `{log name: [value per epoch]}`, as `keras.callbacks.History`.
        metrics: `{split: {task: {metric: value}}}` on the held-out splits.
        seconds: float, wall clock of fit and evaluation.
        parameters: int, the model's parameter count.
    """

    model: keras.Model
    history: dict
    metrics: dict
    seconds: float
    parameters: int


def prepare_data(config, data_dir=None):
    """Loads and splits the config's data, fits its tasks and features on the
    training split, and converts the held-out splits (which finds bad labels or
    feature values before anything is trained).

    Returns:
        A `PreparedData`.

    Raises:
        ConfigError, DataError: bad config or data.
    """
    tasks = build_tasks(config)
    train_frame, validation, test = load_splits(config, data_dir, tasks)
    features = prepare(config, train_frame, tasks)
    batch_size = config["training"]["batch_size"]
    held_out = split_datasets({"validation": validation, "test": test}, features,
                              tasks, batch_size)
    return PreparedData(tasks, features, train_frame, validation, test, batch_size,
                        held_out)


@contextlib.contextmanager
def precision_policy(config):
    """Sets the `mixed_float16` policy when `training.mixed_precision` is true, and
    restores the previous global policy afterwards."""
    policy = keras.mixed_precision.global_policy()
    if config["training"]["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def build_run_model(config, data, tasks=None):
    """Seeds Keras with `training.seed`, builds the config's model for `tasks`
    (default: every task of `data`) and compiles it with the config's optimizer,
    loss combination, weighting and gradient mode.

    Raises:
        ConfigError: unknown architecture, option, optimizer or weighting.
    """
    training = config["training"]
    keras.utils.set_random_seed(training["seed"])
    model = model_from_config(config, data.features,
                              data.tasks if tasks is None else tasks)
    model.compile(optimizer=_optimizer(training),
                  loss_combination=training["loss_combination"],
                  weighting=training["weighting"],
                  gradients=training["gradients"])
    return model


def run_model(config, data, tasks=None, model=None, train_data=None, callbacks=()):
    """One training run: fit with early stopping, then evaluate the held-out splits.

    Fits on `train_data` (default: `data.train_dataset(training.seed)`) for at
    most `training.epochs` epochs, validating on `data.held_out["validation"]`,
    stops when the validation loss (the training loss without a validation split)
    has not improved for `training.early_stopping_patience` epochs and restores the
    best epoch's weights.

    Args:
        config: a resolved config.
        data: the `PreparedData` of the config.
        tasks: the tasks the model predicts (default: every task of `data`).
        model: a model from `build_run_model`; built here when None.
        train_data: the training dataset; default from `data`.
        callbacks: extra Keras callbacks, run before early stopping.

    Returns:
        A `RunResult`.
    """
    training = config["training"]
    if model is None:
        model = build_run_model(config, data, tasks)
    if train_data is None:
        train_data = data.train_dataset(training["seed"])
    validation_data = data.held_out.get("validation")
    monitor = "val_loss" if validation_data is not None else "loss"
    callbacks = list(callbacks) + [keras.callbacks.EarlyStopping(
        monitor=monitor, patience=training["early_stopping_patience"],
        restore_best_weights=True)]
    start = time.perf_counter()
    history = model.fit(train_data, validation_data=validation_data,
                        epochs=training["epochs"], callbacks=callbacks,
                        verbose=training["verbose"], shuffle=False)
    metrics = evaluate_splits(model, data.held_out)
    return RunResult(model=model, history=history.history, metrics=metrics,
                     seconds=time.perf_counter() - start,
                     parameters=int(model.count_params()))


def train(config, data_dir=None, output_dir="runs", export_root="saved_models",
          log=print):
    """Runs a whole training job from a resolved config (see `kmtl.runs.config`).

    Writes a fresh run directory holding `config.yaml` (resolved, with the fitted
    task fields), `model.keras`, `metrics.json` (split -> task -> metric -> value)
    and `logs/` (TensorBoard), and, unless `export.enabled` is false, a SavedModel
    in `<export.dir or export_root/<name>>/<version>/`.

    Returns:
        dict with `run_dir`, `metrics`, `export_dir` (or None) and `history`.

    Raises:
        ConfigError, DataError: bad config or data, before anything is written.
    """
    with precision_policy(config):
        return _train(config, data_dir, output_dir, export_root, log)


def _train(config, data_dir, output_dir, export_root, log):
    training = config["training"]
    data = prepare_data(config, data_dir)
    export_dir = None
    if config["export"]["enabled"]:
        export_dir = config["export"]["dir"] or os.path.join(
            export_root, config["name"])
        check_writable(export_dir, "export directory")
    model = build_run_model(config, data)
    diagnostics_every = training["diagnostics_every"]
    try:
        architecture_layer(model)
    except ValueError as error:
        if diagnostics_every:
            raise ConfigError(f"training.diagnostics_every: {error}") from None
        diagnostics_every = 0
    if diagnostics_every is None:
        # Default: every epoch, when the architecture has something to show.
        diagnostics_every = 1
    train_data = data.train_dataset(training["seed"])

    run_dir = new_run_dir(output_dir, config["name"])
    resolved = {**config, "tasks": [t.get_config() for t in data.tasks]}
    with open(os.path.join(run_dir, CONFIG_FILE), "w") as handle:
        yaml.safe_dump(resolved, handle, sort_keys=False)
    callbacks = []
    if training["gradient_statistics_every"]:
        callbacks.append(GradientStatistics(
            data.held_out.get("validation") or train_data,
            every=training["gradient_statistics_every"]))
    if diagnostics_every:
        callbacks.append(SharingDiagnostics(
            data.held_out.get("validation") or train_data,
            every=diagnostics_every,
            log_dir=os.path.join(run_dir, LOG_DIR)))
    callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, LOG_DIR)))
    log(f"Training {config['name']}: {config['model']['architecture']}, "
        f"{len(data.train)} training rows, tasks {[t.name for t in data.tasks]}")
    run = run_model(config, data, model=model, train_data=train_data,
                    callbacks=callbacks)
    model.save(os.path.join(run_dir, MODEL_FILE))
    with open(os.path.join(run_dir, METRICS_FILE), "w") as handle:
        json.dump(run.metrics, handle, indent=2)
    log(metrics_table(run.metrics))
    exported = export_saved_model(model, export_dir) if export_dir else None
    if exported:
        log(f"SavedModel for TF Serving: {exported}")
    log(f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, LOG_DIR)}")
    log(f"Run directory: {run_dir}")
    return {"run_dir": run_dir, "metrics": run.metrics, "export_dir": exported,
            "history": run.history}
