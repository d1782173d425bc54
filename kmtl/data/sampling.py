"""Task sampling: batches drawn task by task, for tasks of very different sizes.

`make_dataset` passes over a frame's rows, so a task with ten times more
labelled rows fills ten times more of every batch. `make_sampled_dataset`
instead draws, for every row (`composition="joint"`) or every batch
(`"interleaved"`), a task t with probability p_t, then the next row labelled
for t from t's own stream of rows (its labelled rows, reshuffled at every
pass). With `n_t` the number of rows labelled for task t,

    p_t = n_t^alpha / sum_s n_s^alpha,

where alpha 0 is uniform sampling, alpha 1 proportional sampling and alpha
1/T temperature sampling with temperature T (Arivazhagan et al., "Massively
Multilingual Neural Machine Translation in the Wild", 2019, arXiv:1907.05019).
Annealed sampling (Stickland and Murray, "BERT and PALs", ICML 2019,
arXiv:1902.02671) moves alpha linearly from one value to another over the
first epochs, step by step.

A row drawn for task t counts for t only: its sample weights of every other
task are 0 in that batch, even where it has labels for them. A task absent from
a batch thus has sample weight 0 on every row, and its loss is exactly 0 (task
losses divide by the sum of the weights with `divide_no_nan`,
`reduction="mean_with_sample_weight"`).

The draws are stateless: the task choices of epoch e are a function of
`(seed, e)`, and task t's row order of `(seed, e, t, pass)`, so the same seed
gives the same batches and a run resumed at epoch k (`first_epoch=k`) gets the
batches an uninterrupted run gets from its k-th epoch on.

Each epoch is drawn whole when its iterator starts, in the `tf.data` graph:
the task of every row (joint: `tf.random.stateless_categorical` per row;
interleaved: per step, for the whole batch), then, for each task, as many rows
from the start of its stream as were drawn for it, put in their places
(`tf.dynamic_stitch`). Batches are then slices of that `(steps, batch_size)`
index matrix, each one `tf.gather` per tensor, as in `make_dataset`. This gives
the batches that `tf.data.Dataset.choose_from_datasets` over per-task streams of
rows (joint) or of batches (interleaved) gives, without one `tf.data` element
per row: on a 100,000-row frame (batches of 256, 2 CPUs), joint batches come at
0.77 of `make_dataset`'s rows per second, against 0.55 when chosen row by row.
"""

import dataclasses
import math
import numbers

import numpy as np
import tensorflow as tf

from kmtl.data.pipeline import encode_labels
from kmtl.data.pipeline import feature_blocks
from kmtl.data.pipeline import gather_features
from kmtl.errors import ConfigError

COMPOSITIONS = ("joint", "interleaved")
SAMPLING_METHODS = ("uniform", "proportional", "temperature", "anneal")
NAMED_EXPONENTS = {"uniform": 0.0, "proportional": 1.0}


def task_probabilities(sizes, alpha):
    """Sampling probabilities `p_t = n_t^alpha / sum_s n_s^alpha`.

    Args:
        sizes: sequence of positive numbers `n_t`, the labelled rows of each
            task, shape `(tasks,)`.
        alpha: float exponent: 0 uniform, 1 proportional, `1 / T` temperature
            sampling with temperature T (Arivazhagan et al. 2019,
            arXiv:1907.05019).

    Returns:
        float64 array `(tasks,)` summing to 1.

    Example:
        ```python
        task_probabilities([900, 400, 100], 0.5)  # [0.5, 0.333, 0.167]
        ```
    """
    sizes = np.asarray(sizes, dtype="float64")
    # n^alpha / sum n^alpha, through logs so that large sizes do not overflow.
    logits = alpha * np.log(sizes)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def sampling_exponent(value, key="start"):
    """The exponent alpha of `"uniform"` (0), `"proportional"` (1) or a
    temperature T (1 / T).

    Args:
        value: `"uniform"`, `"proportional"` or a temperature, a number > 0.
        key: str, the name of the setting, for the error message.

    Returns:
        float alpha.

    Raises:
        ConfigError: any other value, naming `key`.
    """
    if isinstance(value, str) and value in NAMED_EXPONENTS:
        return NAMED_EXPONENTS[value]
    if _is_number(value) and value > 0 and math.isfinite(value):
        return 1.0 / float(value)
    raise ConfigError(f"TaskSampling: {key} must be 'uniform', 'proportional' or "
                      f"a temperature, a number > 0. Received: {key}={value!r}")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int_or_none(value, key):
    if value is None:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or value < 1:
        raise ConfigError(f"TaskSampling: {key} must be a positive integer or "
                          f"None. Received: {key}={value!r}")


@dataclasses.dataclass(frozen=True)
class TaskSampling:
    """How batches are drawn from the tasks' labelled rows (see
    `make_sampled_dataset`).

    Temperature sampling: Arivazhagan et al., "Massively Multilingual Neural
    Machine Translation in the Wild", 2019 (arXiv:1907.05019). Annealed
    sampling: Stickland and Murray, "BERT and PALs", ICML 2019
    (arXiv:1902.02671), whose schedule, alpha from 1 to 0.2, is the default
    (`start="proportional"`, `end=5`).

    Args:
        composition: `"joint"` (default: each row of a batch is drawn for a
            task chosen for that row, so batches mix tasks) or `"interleaved"`
            (each batch holds one task, chosen per step).
        method: `"proportional"` (default: p_t proportional to n_t, the task's
            labelled rows), `"uniform"`, `"temperature"` (p_t proportional to
            n_t^(1/T)) or `"anneal"` (p_t proportional to n_t^alpha, alpha moving
            linearly, step by step, from `start`'s to `end`'s over
            `anneal_epochs` epochs, then staying at `end`'s).
        temperature: float > 0, default 5 (the paper's choice), for
            `"temperature"`. 1 is proportional; large values approach uniform.
        start: `"uniform"`, `"proportional"` (default) or a temperature: where
            `"anneal"` starts.
        end: `"uniform"`, `"proportional"` or a temperature, default 5 (alpha
            0.2): where `"anneal"` ends.
        anneal_epochs: int, the epochs over which `"anneal"` moves (required
            for it).
        steps_per_epoch: int or None (default): batches per epoch. None:
            `ceil(sum_t n_t / batch_size)`, as many drawn rows as there are
            (row, task) labels.

    Raises:
        ConfigError: an unknown `composition` or `method`, a `temperature`
            that is not a number > 0, a bad `start`, `end`, `anneal_epochs` or
            `steps_per_epoch`, or `"anneal"` without `anneal_epochs`; the
            message names the key.

    Example:
        ```python
        sampling = TaskSampling("interleaved", "temperature", temperature=2)
        ```
    """

    composition: str = "joint"
    method: str = "proportional"
    temperature: float = 5.0
    start: object = "proportional"
    end: object = 5.0
    anneal_epochs: int = None
    steps_per_epoch: int = None

    def __post_init__(self):
        if self.composition not in COMPOSITIONS:
            raise ConfigError(f"TaskSampling: unknown composition "
                              f"{self.composition!r}. Use one of {COMPOSITIONS}.")
        if self.method not in SAMPLING_METHODS:
            raise ConfigError(f"TaskSampling: unknown method {self.method!r}. Use "
                              f"one of {SAMPLING_METHODS}.")
        if not (_is_number(self.temperature) and self.temperature > 0
                and math.isfinite(self.temperature)):
            raise ConfigError(f"TaskSampling: temperature must be a number > 0 "
                              f"(1 is proportional sampling, larger values "
                              f"approach uniform). Received: "
                              f"temperature={self.temperature!r}")
        sampling_exponent(self.start, "start")
        sampling_exponent(self.end, "end")
        _positive_int_or_none(self.anneal_epochs, "anneal_epochs")
        _positive_int_or_none(self.steps_per_epoch, "steps_per_epoch")
        if self.method == "anneal" and self.anneal_epochs is None:
            raise ConfigError("TaskSampling: method 'anneal' needs anneal_epochs, "
                              "the epochs over which alpha moves from start to "
                              "end. Received: anneal_epochs=None")

    @classmethod
    def get(cls, value):
        """A `TaskSampling` from itself, None (the defaults), a method name or
        a dict of its arguments.

        Args:
            value: a `TaskSampling`, None, a method name (`"uniform"`,
                `"proportional"`, `"temperature"`, `"anneal"`) or a dict such
                as `{"composition": "interleaved", "method": "temperature",
                "temperature": 2}`.

        Returns:
            A `TaskSampling`.

        Raises:
            ConfigError: an unknown key or a bad value, naming it.
        """
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(method=value)
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ConfigError(f"TaskSampling: unknown key(s) {unknown}. Keys: "
                                  f"{sorted(known)}.")
            return cls(**value)
        raise ConfigError(f"sampling must be a TaskSampling, a method name or a "
                          f"dict. Received: sampling={value!r}")

    def exponents(self, epoch, steps_per_epoch):
        """The exponent alpha of each step of an epoch.

        Args:
            epoch: int, the epoch number (0-based).
            steps_per_epoch: int, batches per epoch.

        Returns:
            float64 array `(steps_per_epoch,)`: p_t of step i is proportional
            to n_t to the power of its value (`task_probabilities`).
        """
        if self.method == "uniform":
            alpha = 0.0
        elif self.method == "proportional":
            alpha = 1.0
        elif self.method == "temperature":
            alpha = 1.0 / self.temperature
        else:
            return _annealed(self, epoch, steps_per_epoch, np)
        return np.full(steps_per_epoch, alpha)


def _annealed(sampling, epoch, steps_per_epoch, ops):
    """Annealed alpha of each step of `epoch` (0-based): linear in the global
    step, from `start`'s alpha at step 0 to `end`'s at the last step of epoch
    `anneal_epochs - 1`. `ops` is `np` or `tf.experimental.numpy`."""
    first = sampling_exponent(sampling.start, "start")
    last = sampling_exponent(sampling.end, "end")
    span = max(sampling.anneal_epochs * steps_per_epoch - 1, 1)
    steps = ops.arange(steps_per_epoch, dtype="float64")
    step = ops.asarray(epoch, dtype="float64") * steps_per_epoch + steps
    return first + (last - first) * ops.minimum(step / span, 1.0)


class SampledDataset:
    """The batches of `make_sampled_dataset` and what they were drawn from.

    Attributes:
        dataset: the `tf.data.Dataset` to pass to `model.fit`: each iterator
            made of it is one epoch of `steps_per_epoch` batches.
        counts: `tf.Variable` int64 `(tasks,)`, rows drawn for each task so
            far, counted as the batches are made (read it between epochs, as
            `kmtl.callbacks.TaskFrequencies` does).
        task_names: list of str, the order of `counts`.
        sizes: int array `(tasks,)`, each task's labelled rows n_t.
        sampling: the `TaskSampling`.
        steps_per_epoch: int, batches per epoch.
        batch_size: int, rows per batch.
    """

    def __init__(self, dataset, counts, task_names, sizes, sampling,
                 steps_per_epoch, batch_size):
        self.dataset = dataset
        self.counts = counts
        self.task_names = list(task_names)
        self.sizes = np.asarray(sizes)
        self.sampling = sampling
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size

    def probabilities(self, epoch):
        """The requested task probabilities of each step of an epoch.

        Args:
            epoch: int, the epoch number (0-based; the data's epoch, which
                starts at `first_epoch`).

        Returns:
            float64 array `(steps_per_epoch, tasks)`, rows summing to 1, tasks
            in the order of `task_names`.
        """
        alphas = self.sampling.exponents(epoch, self.steps_per_epoch)
        return np.stack([task_probabilities(self.sizes, a) for a in alphas])


def _check_arguments(tasks, batch_size, seed, first_epoch):
    if not tasks:
        raise ConfigError("make_sampled_dataset needs at least one task. "
                          "Received: tasks=[]")
    for key, value, low in (("batch_size", batch_size, 1), ("seed", seed, 0),
                            ("first_epoch", first_epoch, 0)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
                or value < low:
            raise ConfigError(f"make_sampled_dataset: {key} must be an integer "
                              f">= {low}. Received: {key}={value!r}")


def make_sampled_dataset(frame, features, tasks, sampling=None, batch_size=256,
                         seed=0, first_epoch=0, encoded=True):
    """Batches drawn task by task (see the module docstring and `TaskSampling`).

    Each row of a batch (joint) or each batch (interleaved) is drawn for one
    task, chosen with the sampling's probabilities, from the rows labelled for
    that task (sample weight > 0), each task's rows reshuffled at every pass
    over them. A row drawn for task t has sample weight 0 for every other task.

    Args:
        frame: pandas DataFrame with the feature and target columns, e.g.
            per-task tables combined by `kmtl.data.combine_task_tables`.
        features: list of fitted `kmtl.features.Feature`.
        tasks: list of fitted `kmtl.Task`.
        sampling: a `TaskSampling`, a method name, a dict of its arguments or
            None (proportional, joint).
        batch_size: int, rows per batch; every batch is full.
        seed: int >= 0. Same seed, same batches.
        first_epoch: int, default 0. The epoch number of the first iterator:
            a run resumed after k epochs passes k to get the batches (and the
            annealed probabilities) of an uninterrupted run.
        encoded: bool, default True: the encoded blocks, for a
            `kmtl.MultiTaskModel`; False: raw values (see `make_dataset`).

    Returns:
        A `SampledDataset`: `.dataset` yields `(features, labels,
        sample_weights)` as `make_dataset` does, `batch_size` rows per batch and
        exactly `steps_per_epoch` batches per iterator (one iterator per epoch,
        as `model.fit` makes them); `.counts` counts the rows drawn per task.

    Raises:
        ConfigError: a bad `sampling` (naming the key), no task, a task with no
            labelled row (naming it), or a bad `batch_size`, `seed` or
            `first_epoch`.
        DataError: a column is missing or holds values that do not fit its kind.

    Example:
        ```python
        sampled = make_sampled_dataset(
            train, features, tasks, TaskSampling("joint", "temperature",
                                                 temperature=2), batch_size=256)
        model.fit(sampled.dataset, epochs=10,
                  callbacks=[kmtl.callbacks.TaskFrequencies(sampled)])
        ```
    """
    sampling = TaskSampling.get(sampling)
    _check_arguments(tasks, batch_size, seed, first_epoch)
    stacked = feature_blocks(frame, features, encoded)
    labels, weights = encode_labels(frame, tasks)
    names = [task.name for task in tasks]
    rows = [np.flatnonzero(weights[name] > 0) for name in names]
    empty = [name for name, r in zip(names, rows) if not len(r)]
    if empty:
        raise ConfigError(f"Task(s) {empty} have no labelled row in the training "
                          f"data, so they cannot be sampled. Give them rows or "
                          f"remove them from the tasks.")
    sizes = np.array([len(r) for r in rows], dtype="int64")
    steps = sampling.steps_per_epoch or -(-int(sizes.sum()) // batch_size)
    interleaved = sampling.composition == "interleaved"
    labels = {k: tf.constant(v) for k, v in labels.items()}
    weights = {k: tf.constant(v) for k, v in weights.items()}
    row_sets = [tf.constant(r, tf.int64) for r in rows]
    log_sizes = tf.constant(np.log(sizes), tf.float64)
    epochs = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    counts = tf.Variable(tf.zeros(len(tasks), tf.int64), trainable=False)

    def task_rows(task, epoch_seed, count):
        """The first `count` rows of the task's stream in this epoch: its
        labelled rows, reshuffled at every pass over them."""
        task_seed = tf.random.experimental.stateless_fold_in(epoch_seed, task + 1)
        size = int(sizes[task])

        def one_pass(number):
            pass_seed = tf.random.experimental.stateless_fold_in(task_seed, number)
            return tf.random.experimental.stateless_shuffle(row_sets[task],
                                                            seed=pass_seed)

        passes = tf.map_fn(one_pass, tf.range((count + size - 1) // size),
                           fn_output_signature=tf.TensorSpec([size], tf.int64))
        return tf.reshape(passes, [-1])[:count]

    def choices(epoch, epoch_seed):
        """`(steps, batch_size)` int64: the task each row is drawn for."""
        if sampling.method == "anneal":
            alphas = _annealed(sampling, epoch, steps, tf.experimental.numpy)
        else:
            alphas = tf.constant(sampling.exponents(0, steps))
        logits = alphas[:, None] * log_sizes[None, :]
        drawn = tf.random.stateless_categorical(
            tf.cast(logits, tf.float32), 1 if interleaved else batch_size,
            seed=tf.random.experimental.stateless_fold_in(epoch_seed, 0),
            dtype=tf.int64)
        return tf.broadcast_to(drawn, [steps, batch_size])

    def one_epoch(_):
        # Epoch e's draws are a function of (seed, e) alone: every iterator
        # (Keras makes one per epoch) takes the next epoch number, starting
        # from `first_epoch`, as in `make_dataset`.
        epoch = epochs.assign_add(1) - 1
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        drawn = choices(epoch, epoch_seed)
        flat = tf.reshape(drawn, [-1])
        # The rows drawn for task t, in order, are the start of t's stream.
        places, picked = [], []
        for task in range(len(tasks)):
            where = tf.cast(tf.where(tf.equal(flat, task))[:, 0], tf.int32)
            places.append(where)
            picked.append(task_rows(task, epoch_seed, tf.size(where, tf.int64)))
        index = tf.reshape(tf.dynamic_stitch(places, picked), [steps, batch_size])
        return tf.data.Dataset.from_tensor_slices((index, drawn))

    def gather(index, task):
        counts.assign_add(tf.math.bincount(task, minlength=len(tasks),
                                           maxlength=len(tasks), dtype=tf.int64))
        batch = gather_features(stacked, index)
        batch_labels = {k: tf.gather(v, index) for k, v in labels.items()}
        batch_weights = {
            name: tf.gather(weights[name], index)
            * tf.cast(tf.equal(task, t), weights[name].dtype)
            for t, name in enumerate(names)
        }
        return batch, batch_labels, batch_weights

    dataset = tf.data.Dataset.range(1).flat_map(one_epoch)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return SampledDataset(dataset.prefetch(tf.data.AUTOTUNE), counts, names,
                          sizes, sampling, steps, batch_size)
