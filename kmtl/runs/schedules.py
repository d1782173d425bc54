"""The training schedules of a run config: the dataset of
`training.sampling`, the callbacks of `training.curriculum` and
`training.self_paced`, and the plan of `training.stages` (progressive
training).

`kmtl.runs.training.run_model` uses them; the schedules themselves live in
`kmtl.callbacks.curriculum` (curriculum, self-paced learning),
`kmtl.models.progressive` (adding tasks, freezing layers) and
`kmtl.data.sampling` (task sampling).
"""

from kmtl.callbacks.curriculum import SelfPacedLearning
from kmtl.callbacks.curriculum import TaskCurriculum
from kmtl.callbacks.task_frequencies import TaskFrequencies
from kmtl.data.sampling import TaskSampling
from kmtl.data.sampling import make_sampled_dataset
from kmtl.errors import ConfigError
from kmtl.models.progressive import SHARED
from kmtl.runs.config import as_run_config


def needs_probe(config):
    """True when `training.curriculum.order` is `by_loss`: the tasks' order
    comes from single-task probes (`kmtl.runs.training.probe_task_losses`)."""
    curriculum = as_run_config(config).training.curriculum
    return curriculum is not None and curriculum.order == "by_loss"


def schedule_callbacks(config, task_losses=None):
    """The curriculum callbacks `training.curriculum` and
    `training.self_paced` ask for.

    Args:
        config: a `RunConfig` or a config mapping.
        task_losses: `{task: loss}` from single-task probes, needed with
            `training.curriculum.order: by_loss`.

    Returns:
        list of `keras.callbacks.Callback` (empty without schedules).

    Raises:
        ConfigError: `by_loss` without `task_losses`.
    """
    training = as_run_config(config).training
    callbacks = []
    curriculum = training.curriculum
    if curriculum is not None:
        if curriculum.order == "by_loss":
            if task_losses is None:
                raise ConfigError("training.curriculum.order: by_loss needs the "
                                  "single-task probes' losses.")
            callbacks.append(TaskCurriculum.by_loss(
                task_losses, interval=curriculum.interval,
                ramp_epochs=curriculum.ramp_epochs))
        else:
            callbacks.append(TaskCurriculum(
                curriculum.order, interval=curriculum.interval,
                ramp_epochs=curriculum.ramp_epochs))
    if training.self_paced is not None:
        callbacks.append(SelfPacedLearning(
            start_fraction=training.self_paced.start_fraction,
            epochs=training.self_paced.epochs))
    return callbacks


def schedule_end(config, tasks):
    """The first epoch at which every task has joined at its full loss weight
    (`training.curriculum`) and every row trains (`training.self_paced`); 0
    without them. Early stopping starts there (`keras.callbacks.EarlyStopping
    (start_from_epoch=)`): a model trained on part of the loss can have a
    lower validation loss than any later one, and restoring it would undo the
    schedule (on census income, self-paced rows from 0.5 once kept the easy
    negatives only and ended at a test AUC of 0.48).

    Args:
        config: a `RunConfig` or a config mapping.
        tasks: the run's tasks.

    Returns:
        int, an epoch number (0-based).
    """
    training = as_run_config(config).training
    end = 0
    curriculum = training.curriculum
    if curriculum is not None:
        groups = (len(tasks) if curriculum.order == "by_loss"
                  else len(curriculum.order))
        end = (groups - 1) * curriculum.interval + curriculum.ramp_epochs - 1
    if training.self_paced is not None:
        end = max(end, training.self_paced.epochs)
    return end


def task_sampling(config):
    """`training.sampling` as a `kmtl.data.TaskSampling`, or None (no task
    sampling). `anneal_epochs: null` is `training.epochs`."""
    config = as_run_config(config)
    section = config.training.sampling
    if section is None:
        return None
    arguments = section.model_dump()
    if arguments["anneal_epochs"] is None:
        arguments["anneal_epochs"] = config.training.epochs
    return TaskSampling(**arguments)


def sampled_train_dataset(config, data, first_epoch=0):
    """The training split drawn task by task (`training.sampling`), and the
    callback that logs the realised task frequencies.

    Args:
        config: a `RunConfig` with `training.sampling` set and every size key
            filled in.
        data: the run's `PreparedData`.
        first_epoch: int, the epoch the dataset starts at (a resumed run).

    Returns:
        `(dataset, callback)`: the `tf.data.Dataset` of
        `make_sampled_dataset` and a `kmtl.callbacks.TaskFrequencies`, which
        must come before the callbacks that record logs.
    """
    config = as_run_config(config)
    sampled = make_sampled_dataset(
        data.train, data.features, data.tasks, task_sampling(config),
        batch_size=data.batch_size, seed=config.training.seed,
        first_epoch=first_epoch)
    return sampled.dataset, TaskFrequencies(sampled)


def stage_plan(config, tasks):
    """The stages of `training.stages`, with their fitted tasks.

    Args:
        config: a `RunConfig` or a config mapping.
        tasks: the fitted tasks of the run (`PreparedData.tasks`).

    Returns:
        list of `(stage, stage_tasks)`: each `StageConfig` and the `kmtl.Task`s
        it adds, in config order; one stage with every task when
        `training.stages` is null.

    Raises:
        ConfigError: a derived task (`derived_from`) added before a task it
            derives from.
    """
    stages = as_run_config(config).training.stages
    by_name = {task.name: task for task in tasks}
    if not stages:
        return [(None, list(tasks))]
    plan, added = [], set()
    for index, stage in enumerate(stages):
        for name in stage.tasks:
            missing = [s for s in by_name[name].derived_from or [] if s not in added
                       and s not in stage.tasks]
            if missing:
                raise ConfigError(
                    f"training.stages[{index}]: task {name!r} is derived from "
                    f"{missing}, which no earlier stage adds. Add them in the "
                    f"same stage or before.")
        added.update(stage.tasks)
        plan.append((stage, [by_name[name] for name in stage.tasks]))
    return plan


def stage_layers(model, names):
    """The layer names a stage's `frozen` list means in `model`: a task's
    name stands for its tower and head layers (`<task>_tower_<i>`, their
    dropouts, `<task>_head`, `<task>`); `shared` and layer names are kept
    (`kmtl.models.progressive.freeze_layers` reads them).

    Args:
        model: a `kmtl.MultiTaskModel`.
        names: list of str, `StageConfig.frozen`.

    Returns:
        list of str.
    """
    tasks = set(model.task_names)
    layers = [layer.name for layer in model.layers]
    expanded = []
    for name in names:
        if name not in tasks:
            expanded.append(name)
            continue
        expanded.extend(
            layer for layer in layers
            if layer in (name, f"{name}_head")
            or layer.startswith((f"{name}_tower_", f"{name}_tower_dropout_")))
    return expanded


def check_stages(config, model, tasks):
    """Checks, before anything is written, that every stage's `frozen` names
    layers its model will have: adds each later stage's tasks to a throwaway
    copy of the chain of models (`add_tasks` does not change `model`).

    Args:
        config: a `RunConfig` or a config mapping.
        model: the first stage's model.
        tasks: the run's fitted tasks.

    Raises:
        ConfigError: naming `training.stages[i].frozen`, the unknown name and
            the model's layers; or what `add_tasks` refuses (an architecture
            whose weights cannot be split by task).
    """
    for index, (stage, added) in enumerate(stage_plan(config, tasks)):
        if stage is None:
            return
        if index and added:
            try:
                model = model.add_tasks(added)
            except ConfigError as error:
                raise ConfigError(f"training.stages[{index}]: {error}") from None
        layers = {layer.name for layer in model.layers}
        for name in stage_layers(model, stage.frozen):
            if name != SHARED and name not in layers:
                raise ConfigError(
                    f"training.stages[{index}].frozen: unknown layer {name!r}. "
                    f"Use {SHARED!r}, a task name or one of the model's "
                    f"layers: {sorted(layers)}.")
