"""Training under a `tf.distribute` strategy: one device, the devices of one
machine, several worker processes, or a parameter-server cluster.

`make_strategy(name)` turns the `training.strategy` key into a strategy; build
and compile the model inside its `scope()`. The cluster of the two multi-process
strategies comes from the `TF_CONFIG` environment variable (one JSON object per
process: the whole `cluster` and this process's `task`), checked here with a
message that names what is wrong.

- `multi_worker` (`tf.distribute.MultiWorkerMirroredStrategy`): every worker
  runs the same program and `model.fit`; the gradients are all-reduced, so
  the workers take the same synchronous steps. Shard the training data by
  data (`shard_by_data`) so that the workers together see each global batch
  once, and wrap the model's steps (`multi_worker_logs`: Keras 3's `fit`
  fails there otherwise). Only the chief writes (`is_chief`); the others
  write the same files to a temporary folder (`write_directory`), because
  saving reads variables whose values are all-reduced, so every worker must
  take part.
- `parameter_server` (`tf.distribute.ParameterServerStrategy`): the chief runs
  the program; worker and ps processes only serve (`run_server`). Keras 3's
  `model.fit` does not support this strategy (it distributes a dataset with
  `experimental_distribute_dataset`, which refuses it, and has no
  `ClusterCoordinator` path: "Parameter server training is not supported in
  Keras 3", keras-team/keras#18624), so `fit_parameter_server` is kmtl's own
  loop: it schedules the model's `train_step` on the workers through a
  `tf.distribute.coordinator.ClusterCoordinator`, and `evaluate` replaces
  `model.evaluate`.

Sources: the TensorFlow guides "Distributed training with TensorFlow",
"Multi-worker training with Keras" and "Parameter server training with
ParameterServerStrategy" (tensorflow.org/tutorials/distribute).
"""

import json
import os
import tempfile
import warnings

import keras
import tensorflow as tf

from kmtl.errors import ConfigError

__all__ = [
    "STRATEGIES",
    "cluster_task",
    "evaluate",
    "fit",
    "fit_parameter_server",
    "is_chief",
    "make_strategy",
    "multi_worker_logs",
    "needs_server",
    "read_tf_config",
    "run_server",
    "shard_by_data",
    "write_directory",
]

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")

# The jobs each multi-process strategy accepts, and those it needs.
_JOBS = {
    "multi_worker": ({"chief", "worker"}, {"worker"}),
    "parameter_server": ({"chief", "worker", "ps"}, {"chief", "worker", "ps"}),
}
_EXAMPLE = {
    "multi_worker": (
        '{"cluster": {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}, '
        '"task": {"type": "worker", "index": 0}}'),
    "parameter_server": (
        '{"cluster": {"chief": ["127.0.0.1:20001"], "worker": '
        '["127.0.0.1:20002"], "ps": ["127.0.0.1:20003"]}, '
        '"task": {"type": "chief", "index": 0}}'),
}


def _tf_config_error(strategy, problem):
    return ConfigError(
        f"training.strategy '{strategy}' reads its cluster from the TF_CONFIG "
        f"environment variable, and {problem}. Set TF_CONFIG in every process "
        f"to the same cluster and that process's own task, e.g. "
        f"TF_CONFIG='{_EXAMPLE[strategy]}' (index 0, 1, ... per process of a "
        f"job).")


def read_tf_config(strategy, environ=None):
    """The `TF_CONFIG` of a multi-process strategy, checked.

    Args:
        strategy: str, `"multi_worker"` or `"parameter_server"`: which jobs
            the cluster may and must have (`worker`, optionally `chief`, for
            the first; one `chief`, and `worker` and `ps`, for the second).
        environ: mapping, default `os.environ`.

    Returns:
        `(cluster, task)`: the dict `{job: [address, ...]}` and the dict
        `{"type": job, "index": int}` of this process.

    Raises:
        ConfigError: TF_CONFIG is missing, not a JSON object, or its cluster
            or task is wrong for `strategy` (the message says what and gives
            an example).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        raise _tf_config_error(strategy, "TF_CONFIG is not set")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise _tf_config_error(
            strategy, f"TF_CONFIG is not valid JSON ({error}): {text!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise _tf_config_error(strategy, f"TF_CONFIG has no 'cluster' object: {text!r}")
    cluster, task = config["cluster"], config.get("task")
    allowed, needed = _JOBS[strategy]
    unknown = sorted(set(cluster) - allowed)
    missing = sorted(needed - set(cluster))
    if unknown or missing:
        raise _tf_config_error(
            strategy, f"its cluster has the jobs {sorted(cluster)}; it needs "
            f"{sorted(needed)} and may have only {sorted(allowed)}")
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise _tf_config_error(
                strategy, f"cluster job '{job}' must be a non-empty list of "
                f"'host:port' strings, not {addresses!r}")
    if len(cluster.get("chief", [None])) != 1:
        raise _tf_config_error(strategy, "its cluster has more than one chief")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise _tf_config_error(
            strategy, f"its 'task' must name a job of the cluster "
            f"({sorted(cluster)}) as 'type', not {task!r}")
    index = task.get("index", 0)
    if (not isinstance(index, int) or isinstance(index, bool)
            or not 0 <= index < len(cluster[task["type"]])):
        raise _tf_config_error(
            strategy, f"its task index {index!r} is not one of the "
            f"{len(cluster[task['type']])} '{task['type']}' addresses")
    return cluster, {"type": task["type"], "index": index}


def make_strategy(name="default"):
    """The `tf.distribute.Strategy` named by `training.strategy`.

    Args:
        name: str, one of `STRATEGIES`:
            `"default"`: `tf.distribute.get_strategy()` (the strategy in scope,
            one device when none is);
            `"mirrored"`: `tf.distribute.MirroredStrategy` over the visible
            GPUs, or every logical CPU when there is no GPU;
            `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy`
            over the cluster of `TF_CONFIG` (call it before TensorFlow runs
            anything else in the process: collectives are configured at
            start-up);
            `"parameter_server"`: `tf.distribute.ParameterServerStrategy` over
            the cluster of `TF_CONFIG`, on the chief (the worker and ps
            processes call `run_server` instead).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ConfigError: an unknown `name`; a missing or invalid TF_CONFIG
            (`read_tf_config`); a multi-worker strategy created after
            TensorFlow started; `parameter_server` on a process whose task
            is not the chief.
    """
    if name not in STRATEGIES:
        raise ConfigError(
            f"training.strategy must be one of {list(STRATEGIES)}. "
            f"Received: training.strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    _, task = read_tf_config(name)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if name == "parameter_server":
        if task["type"] != "chief":
            raise ConfigError(
                f"training.strategy 'parameter_server': this process's TF_CONFIG "
                f"task is '{task['type']}', and only the chief trains. Start "
                f"the worker and ps processes with run_server() (kmtl train "
                f"does so itself).")
        return tf.distribute.ParameterServerStrategy(resolver)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as error:
        raise ConfigError(
            f"training.strategy 'multi_worker' must be created before TensorFlow "
            f"runs anything else in the process ({error}). Call "
            f"make_strategy('multi_worker') first.") from None


def cluster_task(strategy):
    """`(type, index)` of this process in its cluster, `(None, 0)` without one.

    Args:
        strategy: a `tf.distribute.Strategy`.
    """
    if isinstance(strategy, tf.distribute.ParameterServerStrategy):
        # Only the coordinator, the cluster's chief, creates this strategy
        # (the workers and ps serve); it has no public `cluster_resolver`.
        return "chief", 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
    """Whether this process writes the run's files: the chief of a cluster, or
    worker 0 when the cluster has no chief; always True without a cluster.

    Args:
        strategy: a `tf.distribute.Strategy`.
    """
    task_type, index = cluster_task(strategy)
    if task_type in (None, "chief"):
        return True
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and index == 0 and "chief" not in jobs


def write_directory(directory, strategy):
    """Where this process writes what `directory` should receive.

    Under `MultiWorkerMirroredStrategy` every worker must save (reading a
    variable all-reduces its replicas' values), but only the chief's files
    count: the others write to a fresh temporary folder, which the caller
    deletes afterwards.

    Args:
        directory: str, the real destination.
        strategy: a `tf.distribute.Strategy`.

    Returns:
        str: `directory` on the chief, else a new temporary folder.
    """
    if is_chief(strategy):
        return directory
    task_type, index = cluster_task(strategy)
    return tempfile.mkdtemp(prefix=f"kmtl-{task_type}-{index}-")


def needs_server(name, environ=None):
    """Whether this process is a worker or ps of a parameter-server cluster
    (it then only serves: `run_server`).

    Args:
        name: str, the `training.strategy`.
        environ: mapping, default `os.environ`.

    Raises:
        ConfigError: `name` is `"parameter_server"` and TF_CONFIG is missing
            or invalid.
    """
    if name != "parameter_server":
        return False
    _, task = read_tf_config(name, environ)
    return task["type"] in ("worker", "ps")


def run_server():
    """Serve this process's task of the `TF_CONFIG` cluster until killed
    (`tf.distribute.Server.join`): what the worker and ps processes of a
    parameter-server cluster do. Never returns.

    Raises:
        ConfigError: TF_CONFIG is missing or invalid.
    """
    _, task = read_tf_config("parameter_server")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=task["type"], task_index=task["index"],
        protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def shard_by_data(dataset):
    """`dataset` with `AutoShardPolicy.DATA`: under a multi-worker strategy
    each worker keeps its own part of every global batch.

    kmtl's datasets come from in-memory tables, not files, so file sharding
    cannot apply (`AUTO` falls back to `DATA` with a warning). With `DATA`
    every worker builds the same batches (the shuffled order is a function of
    the seed and the epoch) and keeps its replicas' slices of each, so the
    workers together take the single-process global batches. `OFF` would let
    every worker read every row: the workers' batches would overlap.

    Args:
        dataset: a `tf.data.Dataset` of global batches.

    Returns:
        The same dataset with the sharding option set.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def multi_worker_logs(model):
    """Let `model.fit` and `model.evaluate` run under a multi-worker
    `MultiWorkerMirroredStrategy` (Keras 3 fails there otherwise).

    Keras 3's TensorFlow trainer reduces a step's logs across the workers with
    `strategy.reduce("MEAN", log, axis=0)`, which fails on a scalar log ("Invalid
    reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388). This gives each log of the model's
    `train_step` and `test_step` a leading axis of 1, which that reduction turns
    back into a scalar: the workers' mean. The epoch logs are read from the
    metrics, as without it. Does nothing under another strategy.

    Args:
        model: a `keras.Model` built in the strategy's scope.

    Returns:
        `model`, its `train_step` and `test_step` wrapped when needed.
    """
    strategy = model.distribute_strategy
    if (not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            or cluster_task(strategy)[0] is None):
        return model
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def with_axis(data, step=step):
            return {key: tf.reshape(value, (1,))
                    for key, value in step(data).items()}

        object.__setattr__(model, name, with_axis)
    return model


def _parameter_server(model):
    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.ParameterServerStrategy):
        raise ValueError(
            f"The model was built under {type(strategy).__name__}; build and "
            f"compile it in make_strategy('parameter_server').scope().")
    # One coordinator per strategy: TensorFlow returns the same one again.
    return strategy, tf.distribute.coordinator.ClusterCoordinator(strategy)


def _train_pass(model, dataset):
    """One pass of the model's `train_step` over `dataset`'s batches: the chief
    reads each batch and schedules its step on a free worker, so every batch
    is trained on once per pass, whatever the number of workers. (A
    per-worker dataset would not do: under this strategy the workers' copies
    of a dataset are the same pipeline, with no worker index to shard by.)"""
    strategy, coordinator = _parameter_server(model)

    @tf.function
    def one_step(batch):
        return strategy.run(model.train_step, args=(batch,))

    def run_pass():
        for metric in model.metrics:
            metric.reset_state()
        for batch in dataset:
            coordinator.schedule(one_step, args=(batch,))
        coordinator.join()
        return _metric_logs(model)

    return run_pass


def _metric_logs(model):
    return {key: float(value) for key, value in model.get_metrics_result().items()}


def _chief_evaluator(model):
    """A function `dataset -> logs`: the model's `test_step` over the dataset
    on the chief, which reads the variables from the ps tasks (exact metrics,
    whatever the number of workers)."""
    _parameter_server(model)
    step = tf.function(model.test_step)

    def run_pass(dataset):
        for metric in model.metrics:
            metric.reset_state()
        for batch in dataset:
            step(batch)
        return _metric_logs(model)

    return run_pass


def evaluate(model, dataset):
    """`model.evaluate(dataset, return_dict=True, verbose=0)`, also under
    `ParameterServerStrategy`, which Keras 3's `evaluate` does not support
    (see `fit_parameter_server`): there the chief runs the model's
    `test_step` itself, reading the variables from the ps tasks.

    Args:
        model: a compiled `kmtl.MultiTaskModel`.
        dataset: a `tf.data.Dataset` of `(features, labels, sample_weights)`
            batches.

    Returns:
        dict `{log name: float}`, as `model.evaluate(..., return_dict=True)`.
    """
    if not isinstance(model.distribute_strategy,
                      tf.distribute.ParameterServerStrategy):
        return model.evaluate(dataset, return_dict=True, verbose=0)
    return _chief_evaluator(model)(dataset)


def fit(model, x, **kwargs):
    """`model.fit(x, **kwargs)`, or `fit_parameter_server` under
    `ParameterServerStrategy` (which Keras 3's `fit` does not support).

    Args:
        model: a compiled `kmtl.MultiTaskModel`.
        x: a `tf.data.Dataset` of training batches.
        **kwargs: `fit`'s arguments (`epochs`, `validation_data`, `callbacks`,
            `verbose`, `shuffle`, `initial_epoch`; only these under
            `ParameterServerStrategy`).

    Returns:
        A `keras.callbacks.History`.
    """
    if isinstance(model.distribute_strategy, tf.distribute.ParameterServerStrategy):
        return fit_parameter_server(model, x, **kwargs)
    return model.fit(x, **kwargs)


def fit_parameter_server(model, x, epochs=1, validation_data=None, callbacks=(),
                         verbose=0, shuffle=False, initial_epoch=0):
    """`model.fit` for `ParameterServerStrategy`: each training batch runs the
    model's own `train_step` on a worker, scheduled by a
    `tf.distribute.coordinator.ClusterCoordinator`; the variables live on the
    ps tasks.

    Keras 3's `fit` does not support this strategy (keras-team/keras#18624:
    "Parameter server training is not supported in Keras 3"; it distributes
    the dataset with `experimental_distribute_dataset`, which the strategy
    refuses). The chief reads the batches and schedules each one's step on a
    free worker, so an epoch trains on every batch once, whatever the number
    of workers. The steps are asynchronous: a worker reads the variables,
    computes its batch's update and applies it without waiting for the other
    workers; with one worker the steps run in order, the single-process
    updates. With several workers the training logs are approximate (a
    warning says why); the validation logs are exact. The epoch and train
    hooks of the callbacks run on the chief after each epoch's steps have
    finished, with the logs of `fit` (`loss`,
    `<task>_loss`, ..., and `val_*` for `validation_data`, which the chief
    evaluates itself); batch hooks are not called (`TerminateOnNaN` does not
    run: check the returned history). A callback that sets `model._initial_epoch`
    in `on_train_begin` (`BackupAndRestore`) resumes as with `fit`. The
    model's weighting callbacks are added first, as `MultiTaskModel.fit`
    does.

    Args:
        model: a compiled `kmtl.MultiTaskModel`, built and compiled in
            `make_strategy('parameter_server').scope()`.
        x: a `tf.data.Dataset` of training batches, e.g. `make_dataset(...)`,
            read on the chief once per epoch (a shuffled one gives each epoch
            its own order); each batch is sent to the worker that trains on
            it.
        epochs: int, default 1.
        validation_data: a `tf.data.Dataset` of batches, or None.
        callbacks: Keras callbacks (epoch and train hooks only).
        verbose: 0 (default) or 1: one line of logs per epoch.
        shuffle: ignored (as `fit` ignores it for a dataset), so that a call
            of `fit` can be passed on unchanged.
        initial_epoch: int, default 0. The first epoch's index.

    Returns:
        A `keras.callbacks.History` (`history.history[name]` per epoch).

    Raises:
        ValueError: the model's strategy is not a `ParameterServerStrategy`.
    """
    strategy, _ = _parameter_server(model)
    # Set by the strategy when it connects to the cluster (no public name).
    workers = getattr(strategy, "_num_workers", 1)
    if workers > 1:
        warnings.warn(
            f"fit_parameter_server with {workers} workers: their steps run at "
            f"the same time, and a Keras 3 variable's assign_add reads then "
            f"writes, so the training logs (loss, <task>_loss, metrics), "
            f"optimizer.iterations and weighting state kept by assign_add "
            f"(DWA's running sums) can lose updates. The validation logs "
            f"(computed on the chief) are exact.",
            stacklevel=2)
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    train_pass = _train_pass(model, x)
    evaluate_pass = _chief_evaluator(model)
    extra = model.weighting.callbacks() if model.weighting is not None else []
    callback_list = keras.callbacks.CallbackList(
        extra + list(callbacks), add_history=True, model=model,
        epochs=epochs, steps=int(x.cardinality()) if x.cardinality() > 0 else None,
        verbose=0)
    model.stop_training = False
    model._initial_epoch = None
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(model._initial_epoch or initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        logs = train_pass()
        if validation_data is not None:
            callback_list.on_test_begin()
            val_logs = evaluate_pass(validation_data)
            callback_list.on_test_end(val_logs)
            logs.update({f"val_{key}": value for key, value in val_logs.items()})
        callback_list.on_epoch_end(epoch, logs)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}: " + ", ".join(
                f"{key}={value:.4g}" for key, value in logs.items()))
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history
