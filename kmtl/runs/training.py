"""A whole training run from a config: data, model, fit, metrics, saving, export.
This is what `kmtl train` runs; every step is also a public function.

One run has three steps, shared by `kmtl train` and `kmtl compare`:
`prepare_run` (load, split, fit tasks and features, convert the held-out splits:
once per config, `kmtl.runs.data.prepare_data`; then the keys the config leaves
unset are chosen from the number of training rows,
`kmtl.runs.config.with_size_defaults`), `build_run_model` (seed, build,
compile) and `run_model` (fit with early stopping, evaluate the held-out
splits). `train` writes the run directory through `kmtl.runs.run_dir.RunDir`.

Every function takes a `kmtl.runs.config.RunConfig` or a config mapping (which
is validated first).
"""

import contextlib
import dataclasses
import math
import os
import shutil
import time
import warnings

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from kmtl import architectures
from kmtl import weighting as weighting_module
from kmtl.callbacks.backup import RunBackup
from kmtl.callbacks.gradient_statistics import GradientStatistics
from kmtl.callbacks.sharing_diagnostics import SharingDiagnostics
from kmtl.callbacks.tensorboard import TensorBoard
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.errors import TrainingError
from kmtl.measures.diagnostics import architecture_layer
from kmtl.models import build_model
from kmtl.models.export import describe_renamed_inputs
from kmtl.models.export import export_saved_model
from kmtl.models.progressive import freeze_layers
from kmtl.runs import distribution
from kmtl.runs.config import as_run_config
from kmtl.runs.config import describe_size_defaults
from kmtl.runs.config import with_size_defaults
from kmtl.runs.data import prepare_data
from kmtl.runs.data import split_datasets
from kmtl.runs.run_dir import FAILED_FILE
from kmtl.runs.run_dir import RunDir
from kmtl.runs.schedules import check_stages
from kmtl.runs.schedules import needs_probe
from kmtl.runs.schedules import sampled_train_dataset
from kmtl.runs.schedules import schedule_callbacks
from kmtl.runs.schedules import schedule_end
from kmtl.runs.schedules import stage_layers
from kmtl.runs.schedules import stage_plan

__all__ = [
    "RunResult",
    "build_run_model",
    "check_writable",
    "evaluate_splits",
    "metrics_table",
    "model_from_config",
    "nested_metrics",
    "precision_policy",
    "prepare_run",
    "run_model",
    "train",
]


def model_from_config(config, features, tasks, rows=None):
    """`build_model` with the config's `model` section (uncompiled).

    Args:
        config: a `RunConfig` or a config mapping.
        features: fitted features.
        tasks: fitted tasks.
        rows: int or None. The number of training rows, to choose the sizes
            the config leaves unset (`kmtl.runs.config.with_size_defaults`);
            None: such sizes take `build_model`'s and the architecture's
            defaults.
    """
    config = as_run_config(config)
    if rows is not None:
        config, _ = with_size_defaults(config, rows)
    section = config.model
    towers = {} if section.tower_units is None else {
        "tower_units": section.tower_units}
    return build_model(
        features, tasks, section.architecture, **towers,
        tower_activation=section.tower_activation,
        tower_dropout=section.tower_dropout,
        categorical_encoding=section.categorical_encoding,
        embedding_dim=section.embedding_dim,
        numeric_encoding=section.numeric_encoding,
        name=config.name, **section.options)


def check_writable(directory, what, fix="Choose a writable directory."):
    """Checks, without creating anything, that `directory` is a writable
    directory or can be created as one.

    Raises:
        DataError: naming `what` and the directory, and ending with `fix`.
    """
    given = os.fspath(directory)
    directory = os.path.abspath(given)
    existing = directory
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise DataError(f"Cannot create the {what} {given!r}: {existing!r} is not "
                        f"a directory. {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == directory:
            raise DataError(f"The {what} {given!r} is not writable. {fix}")
        raise DataError(f"Cannot create the {what} {given!r}: {existing!r} is not "
                        f"writable. {fix}")


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
    """`{split: {task: {metric: value}}}` as a printable table: 4 decimals, `n/a`
    for a metric that has no value (None: no labelled rows, or AUC over one
    class), blank for a metric the task does not have."""
    rows = []
    for split, by_task in metrics.items():
        for task, values in by_task.items():
            rows.append({"split": split, "task": task, **{
                name: "n/a" if value is None else f"{value:.4f}"
                for name, value in values.items()}})
    frame = pd.DataFrame(rows)
    return frame.to_string(index=False, na_rep="")


def label_counts(dataset, tasks):
    """`{task: (labelled rows, positive rows)}` over a dataset of `(features,
    labels, sample_weights)` batches; positive rows are counted for binary
    tasks only (None for the others)."""
    counts = {task.name: [0, 0 if task.type == "binary" else None]
              for task in tasks}
    for _, labels, weights in dataset:
        for task in tasks:
            labelled = np.asarray(weights[task.name]) > 0
            counts[task.name][0] += int(labelled.sum())
            if task.type == "binary":
                values = np.asarray(labels[task.name]).reshape(len(labelled), -1)
                counts[task.name][1] += int((values[labelled, 0] > 0.5).sum())
    return {name: tuple(value) for name, value in counts.items()}


def honest_metrics(metrics, counts, split, unlabelled=()):
    """`metrics` (`{task: {metric: value}}` of one split) with None where a
    value means nothing, and a warning naming the task and the split for each:
    every metric of a task without labelled rows in the split (Keras reports
    0), and the AUCs of a binary task whose labelled rows hold one class
    (Keras reports 0). Tasks named in `unlabelled` (no target column, by
    design: ESMM's CVR) get null metrics without a warning."""
    for task, values in metrics.items():
        labelled, positive = counts[task]
        if not labelled and task in unlabelled:
            metrics[task] = dict.fromkeys(values)
        elif not labelled:
            warnings.warn(f"Task '{task}' has no labelled rows in the {split} "
                          f"split: its {split} metrics are null (n/a).",
                          UserWarning, stacklevel=2)
            metrics[task] = dict.fromkeys(values)
        elif positive is not None and positive in (0, labelled):
            aucs = [name for name in values if "auc" in name]
            if aucs:
                warnings.warn(
                    f"Task '{task}' has only {'positive' if positive else 'negative'} "
                    f"labels in the {split} split ({labelled:,} rows): its AUC is "
                    f"null (n/a).", UserWarning, stacklevel=2)
                values.update(dict.fromkeys(aucs))
    return metrics


def evaluate_splits(model, datasets):
    """Evaluates `model` on named datasets of `(features, labels,
    sample_weights)`.

    Returns:
        `{split: {task: {metric: value}}}`, a value None where it means
        nothing (`honest_metrics`: no labelled rows, or AUC over one class).
    """
    results = {}
    for split, dataset in datasets.items():
        metrics = nested_metrics(distribution.evaluate(model, dataset),
                                 model.tasks)
        unlabelled = [t.name for t in model.tasks if not t.has_labels]
        results[split] = honest_metrics(metrics, label_counts(dataset, model.tasks),
                                        split, unlabelled)
    return results


def _optimizer(training):
    optimizer = training.optimizer
    if isinstance(optimizer, str):
        arguments = {"learning_rate": training.learning_rate}
        try:
            built = keras.optimizers.get({"class_name": optimizer,
                                          "config": arguments})
            if training.weight_decay or built.weight_decay is not None:
                # Keras applies it decoupled, as AdamW: w -= lr * wd * w. 0 is
                # passed only to an optimizer with a default of its own (AdamW).
                arguments["weight_decay"] = training.weight_decay
                built = keras.optimizers.get({"class_name": optimizer,
                                              "config": arguments})
        except ValueError:
            raise ConfigError(f"training.optimizer: unknown optimizer {optimizer!r}. "
                              f"Use a Keras optimizer name such as 'adam'.") from None
        return built
    try:
        return keras.optimizers.get(optimizer)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"training.optimizer: {error} Give a Keras optimizer name "
                          f"such as 'adam' or a Keras optimizer config.") from None


HELD_OUT_BATCH_SIZE = 256
"""The batch size the held-out splits are first converted with when
`training.batch_size` is left to the data size (`prepare_run`)."""


@dataclasses.dataclass
class RunResult:
    """What `run_model` returns.

    Attributes:
        model: the trained `kmtl.MultiTaskModel` (best validation epoch's weights).
        history: `{log name: [value per epoch]}`, as `keras.callbacks.History`.
        metrics: `{split: {task: {metric: value}}}` on the held-out splits.
        seconds: float, wall clock of fit and evaluation.
        parameters: int, the model's parameter count.
        stages: with `training.stages`, one dict per stage: `tasks` (the
            model's tasks after it), `added`, `frozen`, `epochs` (run) and
            `metrics` (as `metrics`, after the stage); else None.
    """

    model: keras.Model
    history: dict
    metrics: dict
    seconds: float
    parameters: int
    stages: list = None


@contextlib.contextmanager
def precision_policy(config):
    """Sets the `mixed_float16` policy when `training.mixed_precision` is true, and
    restores the previous global policy afterwards."""
    config = as_run_config(config)
    policy = keras.mixed_precision.global_policy()
    if config.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def check_plugins(config, tasks):
    """Looks up the config's architecture (with its options) and weighting, and
    checks the weighting against the tasks and the gradient mode as `compile`
    will, so that a bad name or option is an error naming its key before
    anything is built or written.

    Args:
        config: a `RunConfig` or a config mapping.
        tasks: the model's `kmtl.Task`s, in order (derived tasks included:
            the weighting gets every task, the architecture the others).

    Raises:
        ConfigError: `model.architecture` / `model.options` or
            `training.weighting` is refused (an unknown name or argument, a
            per-task argument that does not fit the tasks, or a gradient mode
            the method does not take), or `training.gradients` is
            `representation` for an architecture that gives each task its own
            representation; the message starts with the key.
    """
    config = as_run_config(config)
    try:
        architecture = architectures.get(
            config.model.architecture,
            task_names=[t.name for t in tasks if not t.derived_from],
            **config.model.options)
    except ConfigError as error:
        raise ConfigError(f"model.architecture / model.options: {error}") from None
    try:
        weighting = weighting_module.get(config.training.weighting)
        weighting.build_tasks([t.name for t in tasks])
        weighting.check_gradients(config.training.gradients)
    except (ConfigError, ValueError) as error:
        raise ConfigError(f"training.weighting: {error}") from None
    if (config.training.gradients == "representation" and weighting.gradient_based
            and not architecture.shares_representation):
        raise ConfigError(
            f"training.gradients: 'representation' needs one representation "
            f"shared by every task, and the architecture "
            f"{config.model.architecture!r} gives each task its own. Use "
            f"model.architecture: shared_bottom, or training.gradients: "
            f"parameters.")


def prepare_run(config, data_dir=None, log=None):
    """`prepare_data`, then the keys the config leaves unset chosen from the
    number of training rows (`kmtl.runs.config.with_size_defaults`).

    Args:
        config: a `RunConfig` or a config mapping.
        data_dir: folder of relative data paths and built-in data sets.
        log: callable taking one str, or None. Given, it receives one line
            naming the keys chosen and their values (nothing when the config
            sets them all), and one per split whose non-finite values
            `data.non_finite` dropped or made missing.

    Returns:
        `(config, data)`: the config with every size key set, and its
        `kmtl.runs.data.PreparedData` (batched with that batch size).

    Raises:
        ConfigError: a bad config.
        DataError: data that does not fit the config.
    """
    config = as_run_config(config)
    given = config
    if config.training.batch_size is None:
        # The held-out splits are converted before the training rows are
        # counted; they are converted again below if the chosen size differs.
        given = config.replace({"training.batch_size": HELD_OUT_BATCH_SIZE})
    data = prepare_data(given, data_dir, log=log or (lambda line: None))
    rows = len(data.train)
    config, chosen = with_size_defaults(config, rows)
    batch_size = config.training.batch_size
    if data.batch_size != batch_size:
        held_out = split_datasets({"validation": data.validation, "test": data.test},
                                  data.features, data.tasks, batch_size)
        data = dataclasses.replace(data, batch_size=batch_size, held_out=held_out)
    if chosen and log is not None:
        log(describe_size_defaults(chosen, rows))
    return config, data


def build_run_model(config, data, tasks=None):
    """Seeds Keras with `training.seed`, builds the config's model for `tasks`
    (default: every task of `data`) and compiles it with the config's optimizer,
    loss combination, weighting and gradient mode. Keys the config leaves unset
    are chosen from `data`'s training rows
    (`kmtl.runs.config.with_size_defaults`).

    Raises:
        ConfigError: unknown architecture, option, optimizer or weighting.
    """
    config, _ = with_size_defaults(config, len(data.train))
    tasks = data.tasks if tasks is None else tasks
    check_plugins(config, tasks)
    keras.utils.set_random_seed(config.training.seed)
    model = model_from_config(config, data.features, tasks)
    compile_run_model(model, config)
    return model


def compile_run_model(model, config, learning_rate=None):
    """Compiles `model` with the config's optimizer (at `learning_rate`
    when given, else `training.learning_rate`), loss combination, weighting
    and gradient mode."""
    training = as_run_config(config).training
    if learning_rate is not None:
        training = training.model_copy(update={"learning_rate": learning_rate})
    model.compile(optimizer=_optimizer(training),
                  loss_combination=training.loss_combination,
                  weighting=training.weighting,
                  gradients=training.gradients,
                  jit_compile=True if training.jit_compile else "auto")


DIVERGED_FIX = ("Lower training.learning_rate, or look for extreme values in "
                "the features and labels.")


def _non_finite_entries(logs):
    return [f"{key} = {value}" for key, value in logs.items()
            if isinstance(value, float) and not math.isfinite(value)]


def check_finite_history(history):
    """Raises a `TrainingError` when a training loss went NaN or inf
    (`keras.callbacks.TerminateOnNaN` then stopped `fit`), naming the epoch
    and the losses."""
    for epoch in range(len(history.get("loss", []))):
        logs = {key: float(values[epoch]) for key, values in history.items()
                if key.endswith("loss") and epoch < len(values)}
        bad = _non_finite_entries(logs)
        if bad:
            raise TrainingError(
                f"Training diverged in epoch {epoch + 1}: {', '.join(bad)}. "
                f"Nothing was saved or exported. {DIVERGED_FIX}")


def check_finite_metrics(metrics):
    """Raises a `TrainingError` naming the split, task and metric when a
    held-out metric is NaN or inf: such a model is never saved or exported.

    Args:
        metrics: `{split: {task: {metric: value}}}` (`evaluate_splits`).
    """
    bad = [f"{split} {task} {name} = {value}"
           for split, tasks in metrics.items() for task, values in tasks.items()
           if isinstance(values, dict)
           for name, value in values.items()
           if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise TrainingError(
            f"The trained model's metrics are not finite: {', '.join(bad)}. "
            f"Nothing was saved or exported. {DIVERGED_FIX}")


def run_model(config, data, tasks=None, model=None, train_data=None, callbacks=(),
              backup_dir=None):
    """One training run: fit with early stopping, then evaluate the held-out splits.

    Fits on `train_data` (default: `data.train_dataset(training.seed)`) for at
    most `training.epochs` epochs, validating on `data.held_out["validation"]`,
    stops when the validation loss (the training loss without a validation split)
    has not improved for `training.early_stopping_patience` epochs and restores the
    best epoch's weights. Keys the config leaves unset are chosen from `data`'s
    training rows (`kmtl.runs.config.with_size_defaults`).

    The config's schedules apply (`kmtl.runs.schedules`): the callbacks of
    `training.curriculum` (with `order: by_loss`, after one single-task probe
    per task, `probe_task_losses`) and `training.self_paced`; and with
    `training.stages`, one fit per stage, each adding its tasks to the model
    of the stage before (`MultiTaskModel.add_tasks`) with the stage's frozen
    layers and learning rate.

    Args:
        config: a `RunConfig` (or a config mapping).
        data: the `PreparedData` of the config.
        tasks: the tasks the model predicts (default: every task of `data`).
        model: a model from `build_run_model`; built here when None. With
            `training.stages`, the first stage's model.
        train_data: the training dataset; default from `data`.
        callbacks: extra Keras callbacks, run before early stopping.
        backup_dir: str or None. Back up the training state there after
            every epoch (`kmtl.callbacks.RunBackup`), and resume from the
            backup found there: the epochs already run are not run again,
            the shuffled batches of each later epoch are those of an
            uninterrupted run, and the history returned covers every epoch.
            Not with `training.stages` (a staged run is not resumed).

    Returns:
        A `RunResult`.

    Raises:
        TrainingError: a training loss or a held-out metric that is not
            finite (`check_finite_history`, `check_finite_metrics`).
    """
    config, _ = with_size_defaults(config, len(data.train))
    start = time.perf_counter()
    if config.training.stages:
        return _run_stages(config, data, model, train_data, callbacks, start)
    if model is None:
        model = build_run_model(config, data, tasks)
    losses = probe_task_losses(config, data) if needs_probe(config) else None
    callbacks = schedule_callbacks(config, losses) + list(callbacks)
    history = _fit(model, config, data, train_data, callbacks, backup_dir)
    metrics = evaluate_splits(model, data.held_out)
    check_finite_metrics(metrics)
    return RunResult(model=model, history=history, metrics=metrics,
                     seconds=time.perf_counter() - start,
                     parameters=int(model.count_params()))


def _fit(model, config, data, train_data, callbacks, backup_dir=None,
         epochs=None, initial_epoch=0):
    """`model.fit` with early stopping (and a backup), as `run_model`
    describes; returns the history dict, checked finite."""
    training = config.training
    validation_data = data.held_out.get("validation")
    monitor = "val_loss" if validation_data is not None else "loss"
    # A curriculum's epochs before every task and row are in are not
    # candidates for the best epoch (`schedule_end`).
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=training.early_stopping_patience,
        restore_best_weights=True,
        start_from_epoch=schedule_end(config, data.tasks))
    callbacks = list(callbacks) + [keras.callbacks.TerminateOnNaN(), early_stopping]
    backup, first_epoch = None, initial_epoch
    if backup_dir is not None:
        backup = RunBackup(backup_dir, early_stopping)
        callbacks.append(backup)
        state = backup.read_state()
        if state is not None and train_data is not None:
            raise ValueError("run_model: resuming from a backup needs the "
                             "training data from `data` (train_data=None), so "
                             "that each epoch sees its own order.")
        first_epoch = state["epoch"] if state else 0
    if train_data is None and training.sampling is not None:
        train_data, frequencies = sampled_train_dataset(config, data, first_epoch)
        callbacks.insert(0, frequencies)
    if train_data is None:
        train_data = data.train_dataset(training.seed, first_epoch=first_epoch)
    try:
        history = distribution.fit(
            model, distribution.shard_by_data(train_data),
            validation_data=validation_data,
            epochs=initial_epoch + (epochs or training.epochs),
            initial_epoch=initial_epoch, callbacks=callbacks,
            verbose=training.verbose, shuffle=False).history
    except tf.errors.InvalidArgumentError as error:
        # A streamed table (`data.streaming`) checked chunk by chunk while
        # training: the chunk's DataError comes wrapped by tf.data.
        if "DataError:" not in str(error):
            raise
        message = str(error).split("DataError:", 1)[1].split("\n")[0].strip()
        raise DataError(message) from None
    if backup is not None:
        history = backup.history
    check_finite_history(history)
    return history


def probe_task_losses(config, data):
    """Each task's validation loss when trained alone, for
    `training.curriculum.order: by_loss`.

    One model per task, built as the config builds the whole model but with
    that task only, trained for `training.curriculum.probe_epochs` epochs; the
    loss is its `<task>_loss` on the validation split (on the training split
    without one).

    Returns:
        `{task: loss}`.

    Raises:
        ConfigError: a task derived from others (`derived_from`): it cannot be
            trained alone.
    """
    config = as_run_config(config)
    derived = [t.name for t in data.tasks if t.derived_from]
    if derived:
        raise ConfigError(f"training.curriculum.order: by_loss trains each task "
                          f"alone, which derived tasks {derived} cannot be. "
                          f"List the order instead.")
    epochs = config.training.curriculum.probe_epochs
    held_out = data.held_out.get("validation")
    losses = {}
    for task in data.tasks:
        model = build_run_model(config, data, tasks=[task])
        model.fit(data.train_dataset(config.training.seed), epochs=epochs,
                  verbose=0)
        scored = held_out or data.train_dataset(config.training.seed)
        logs = model.evaluate(scored, return_dict=True, verbose=0)
        losses[task.name] = float(logs[f"{task.name}_loss"])
    return losses


def _run_stages(config, data, model, train_data, callbacks, start):
    """`run_model` with `training.stages`: one fit per stage (see there)."""
    model_tasks, stages, offset = [], [], 0
    for index, (stage, added) in enumerate(stage_plan(config, data.tasks)):
        model_tasks = model_tasks + added
        if model is None:
            model = build_run_model(config, data, added)
        with model.distribute_strategy.scope():
            if index and added:
                model = model.add_tasks(added)
            frozen = freeze_layers(model, stage_layers(model, stage.frozen))
            compile_run_model(model, config, stage.learning_rate)
        history = _fit(model, config, data, train_data, callbacks,
                       epochs=stage.epochs, initial_epoch=offset)
        for layer in frozen:
            layer.trainable = True
        offset += len(history["loss"])
        metrics = evaluate_splits(model, data.held_out)
        check_finite_metrics(metrics)
        stages.append({"tasks": [t.name for t in model_tasks],
                        "added": list(stage.tasks), "frozen": list(stage.frozen),
                        "epochs": len(history["loss"]), "metrics": metrics})
    return RunResult(model=model, history=history, metrics=metrics,
                     seconds=time.perf_counter() - start,
                     parameters=int(model.count_params()), stages=stages)


def train(config, data_dir=None, output_dir="runs", export_root="saved_models",
          log=print, resume="auto"):
    """Runs a whole training job from a config (see `kmtl.runs.config`).

    Keys the config leaves unset are chosen from the number of training rows
    (`prepare_run`), printed in one line through `log`, and stored with their
    values. Writes a fresh run directory (`kmtl.runs.run_dir.RunDir`) holding
    `config.yaml` (resolved: every default and every size key filled in, with
    the fitted task fields and the features used),
    `split.json`, `model.keras`, `metrics.json` (split -> task -> metric ->
    value) and `logs/` (TensorBoard), and, unless `export.enabled` is false, a
    SavedModel in `<export.dir or export_root/<name>>/<version>/`. Nothing is
    written, and no folder created, before every check has passed.

    The model trains under `training.strategy` (`kmtl.runs.distribution`;
    docs/guides/distributed.md). In a cluster, only the chief writes the run
    directory and the export; a worker or ps of a parameter-server cluster
    serves until it is stopped and never returns.

    Until it has finished, the run directory holds `INCOMPLETE` and, after
    each epoch, a backup of the training state (`backup/`, see
    `kmtl.callbacks.RunBackup`). A run that was killed goes on from its last
    finished epoch, in the same directory, and ends with the weights and
    metrics an uninterrupted run has: explicitly (`resume=RUN_DIR`), or by
    default when the newest run of the config's name under `output_dir` is
    such a run, started with the same config and data.

    Args:
        config: a `RunConfig`, or a config mapping (validated here).
        data_dir: folder of relative data paths and built-in data sets.
        output_dir: where the run directory is created.
        export_root: the export base's parent when `export.dir` is not set.
        log: callable taking one str, for progress lines (default `print`).
        resume: `"auto"` (default), a run directory, or None (always None
            under `multi_worker`). `"auto"`:
            resume the newest run of the config's name when it is unfinished
            (not failed, not being trained by a running process, with a
            backup) and was started with the same config and data; else a
            fresh run. A run directory: resume that run (an error when it
            cannot be resumed). None: always a fresh run.

    Returns:
        dict with `run_dir`, `metrics`, `export_dir` (or None) and `history`.

    Raises:
        ConfigError: a bad config, before anything is written; or a config
            or data other than those `resume`'s run was started with.
        DataError: data that does not fit the config, before anything is
            written; or a `resume` directory that cannot be resumed.
    """
    config = as_run_config(config)
    name = config.training.strategy
    if distribution.needs_server(name):
        # A worker or ps of a parameter-server cluster: it serves the chief's
        # steps until it is stopped.
        log(f"Serving the parameter-server cluster of TF_CONFIG as "
            f"{distribution.read_tf_config(name)[1]['type']}; the chief trains.")
        distribution.run_server()
    strategy = distribution.make_strategy(name)
    if name == "multi_worker":
        if resume not in (None, "auto"):
            raise ConfigError("resume: a multi_worker run cannot be resumed "
                              "(each worker would need its own backup). Train "
                              "afresh, without --resume.")
        resume = None
    if not distribution.is_chief(strategy):
        # Every worker of a multi-worker run saves (reading a variable
        # all-reduces it), but only the chief's files count.
        scratch = distribution.write_directory(output_dir, strategy)
        try:
            with precision_policy(config):
                return _train(config.replace({"export.dir": None}), data_dir,
                              os.path.join(scratch, "runs"),
                              os.path.join(scratch, "saved_models"),
                              lambda line: None, None, strategy)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    with precision_policy(config):
        return _train(config, data_dir, output_dir, export_root, log, resume,
                      strategy)


def _resumed_run(config, data, output_dir, resume, log):
    """The unfinished `RunDir` to go on with (see `train`'s `resume`), or None
    for a fresh run."""
    if resume is None:
        return None
    if resume == "auto":
        run = RunDir.last_resumable(output_dir, config.name)
        if run is None:
            return None
        try:
            run.check_same_run(config, data.tasks, data.features, data.split)
        except (ConfigError, DataError):
            return None
        run = RunDir.resume(run.path)
    else:
        run = RunDir.resume(resume)
        run.check_same_run(config, data.tasks, data.features, data.split)
    state = RunBackup(run.backup_dir).read_state()
    epoch = state["epoch"] if state else 0
    log(f"Resuming {run.path} after epoch {epoch} of {config.training.epochs} "
        f"(it did not finish; resume=None / --no-resume trains afresh).")
    return run


def _train(config, data_dir, output_dir, export_root, log, resume, strategy):
    config, data = prepare_run(config, data_dir, log)
    training = config.training
    export_dir = None
    if config.export.enabled:
        export_dir = config.export.dir or os.path.join(export_root, config.name)
        check_writable(export_dir, "export directory",
                       "Choose a writable export.dir or --export-dir.")
    check_writable(output_dir, "output directory", "Pass a writable --output-dir.")
    with strategy.scope():
        # With training.stages, the first stage's tasks (run_model adds the
        # others); else every task.
        model = build_run_model(config, data, stage_plan(config, data.tasks)[0][1])
        check_stages(config, model, data.tasks)
    distribution.multi_worker_logs(model)
    diagnostics_every = training.diagnostics_every
    try:
        architecture_layer(model)
    except ValueError as error:
        if diagnostics_every:
            raise ConfigError(f"training.diagnostics_every: {error}") from None
        diagnostics_every = 0
    if diagnostics_every is None:
        # Default, when the architecture has something to show: about ten
        # writes per run (each is a forward pass and a heatmap per matrix,
        # several times a short epoch's training).
        diagnostics_every = max(1, training.epochs // 10)
    # The callbacks' own copy: iterating it leaves the training order alone.
    inspected = data.held_out.get("validation") or data.train_dataset(training.seed)

    run = _resumed_run(config, data, output_dir, resume, log)
    if run is None:
        run = RunDir.create(output_dir, config.name)
        run.write_config(config, data.tasks, data.features)
        run.write_split(data.split)
    callbacks = []
    if training.gradient_statistics_every:
        callbacks.append(GradientStatistics(
            inspected, every=training.gradient_statistics_every))
    if diagnostics_every:
        callbacks.append(SharingDiagnostics(
            inspected, every=diagnostics_every, log_dir=run.log_dir))
    callbacks.append(TensorBoard(run.log_dir))
    log(f"Training {config.name}: {config.model.architecture}, "
        f"{len(data.train)} training rows, tasks {[t.name for t in data.tasks]}")
    try:
        result = run_model(config, data, model=model, callbacks=callbacks,
                           backup_dir=run.backup_dir)
    except TrainingError as error:
        # The run directory keeps the config and the logs of what went wrong,
        # and says so; no model.keras, no metrics.json, no export.
        run.write_failure(str(error))
        raise TrainingError(f"{error} Run directory (logs, {FAILED_FILE}): "
                            f"{run.path}") from None
    model = result.model
    run.save_model(model)
    run.write_metrics(result.metrics)
    if result.stages:
        run.write_stages(result.stages)
    log(metrics_table(result.metrics))
    exported = export_saved_model(model, export_dir) if export_dir else None
    if exported:
        log(f"SavedModel for TF Serving: {exported}")
    renamed = describe_renamed_inputs(model)
    if renamed:
        log(renamed)
    run.mark_complete()
    log(f"TensorBoard: tensorboard --logdir {run.log_dir}")
    log(f"Run directory: {run.path}")
    return {"run_dir": run.path, "metrics": result.metrics, "export_dir": exported,
            "history": result.history}
