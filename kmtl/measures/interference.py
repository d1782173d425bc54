"""Task interference: do the tasks pull the shared parameters the same way?

Two measures, each a `(T, T)` matrix over the model's tasks (in
`model.task_names` order), computed on a few probe batches:

- `gradient_cosines`: the cosine between two tasks' gradients of the shared
  variables (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS
  2020, arXiv:2001.06782: a negative cosine is a conflict).
- `lookahead_affinity`: the inter-task affinity of Fifty, Amid, Zhao, Yu, Anil
  and Finn, "Efficiently Identifying Task Groupings for Multi-Task Learning",
  NeurIPS 2021 (arXiv:2109.04617): how much one task's SGD step on the shared
  parameters lowers another task's loss.

The per-batch math runs in one `tf.function` per measure; only the averaging
over batches happens in NumPy. Neither measure changes the model's weights.
"""

import itertools
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kmtl._checks import check_positive_int
from kmtl.models import shared_parameters


def cosine_matrix(gradients):
    """`(T, P)` task gradients -> `(T, T)` pairwise cosines, in the graph.

    A zero gradient (a task without labels in the batch) has cosine 0 with
    every task, itself included. With no parameter at all (`P = 0`: the tasks
    share nothing) every entry is NaN: there is nothing to measure.

    Args:
        gradients: `(T, P)` float tensor, row `t` task `t`'s gradient of the
            shared parameters, flattened.

    Returns:
        `(T, T)` float tensor of cosines in [-1, 1], symmetric.
    """
    if gradients.shape[1] == 0:
        return tf.fill((gradients.shape[0],) * 2, float("nan"))
    norms = tf.norm(gradients, axis=1)
    unit = gradients / tf.maximum(norms[:, None], 1e-12)
    return tf.matmul(unit, unit, transpose_b=True)


def _batches(data, batches):
    """At most `batches` batches of `data`: a `tf.data.Dataset`, an iterable of
    batches, or one batch given as a tuple."""
    check_positive_int(batches, "batches")
    if isinstance(data, tuple):
        return [data]
    if isinstance(data, tf.data.Dataset):
        return data.take(batches)
    return itertools.islice(data, batches)


def _learning_rate(model, learning_rate):
    if learning_rate is None:
        if getattr(model, "optimizer", None) is None:
            raise ValueError("lookahead_affinity: the model has no optimizer to "
                             "take the learning rate from. Compile the model or "
                             "pass learning_rate=.")
        learning_rate = keras.ops.convert_to_numpy(model.optimizer.learning_rate)
    learning_rate = float(learning_rate)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0. Received: "
                         f"learning_rate={learning_rate!r}")
    return learning_rate


def _masked_mean(total, count):
    """`total / count` elementwise, NaN where `count` is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _average_over_batches(data, batches, measure, caller):
    """The mean over at most `batches` batches of `data` of the `(T, T)` matrix
    `measure(batch)` returns with its mask, each entry over the batches where it
    is valid (`_masked_mean`)."""
    total = count = 0.0
    for batch in _batches(data, batches):
        matrix, valid = measure(batch)
        valid = valid.numpy().astype("float64")
        total = total + np.where(valid > 0, matrix.numpy(), 0.0)
        count = count + valid
    if np.ndim(count) == 0:
        raise ValueError(f"{caller}: `data` yielded no batch.")
    return _masked_mean(total, count)


class _Probe:
    """The two per-batch computations of one model, each traced once."""

    def __init__(self, model):
        # A weak reference: the probe is cached per model (`_PROBES`) and must
        # not keep the model alive.
        self._model = weakref.ref(model)
        # No AutoGraph: the per-batch math has no data-dependent control flow,
        # and AutoGraph trips on the tasks' properties.
        self._cosines = tf.function(self._batch_cosines, autograph=False,
                                    reduce_retracing=True)
        self._lookahead = tf.function(self._batch_lookahead, autograph=False,
                                      reduce_retracing=True)

    @property
    def model(self):
        return self._model()

    def _batch_cosines(self, data):
        gradients, labelled = self.model.task_gradients(data)
        both = labelled[:, None] & labelled[None, :]
        return cosine_matrix(gradients), both

    def _batch_lookahead(self, data, learning_rate):
        """`(Z, valid)` of one batch: `Z[i, j] = 1 - L_j(theta_s - lr g_i) /
        L_j(theta_s)`, valid where tasks i and j are labelled and `L_j > 0`."""
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model.forward(x, training=False)
            task_losses = model.compute_task_losses(y, y_pred, sample_weight)
        per_task = [tape.gradient(task_losses[n], variables)
                    for n in model.task_names]
        del tape
        parts = model.gradient_parts(per_task, variables)
        before = model.stack_task_losses(task_losses)
        values = [tf.convert_to_tensor(v) for v in variables]
        fixed = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
        rows = []
        for gradients in per_task:
            # Task `task`'s gradient on the shared parts, zero elsewhere.
            steps = shared_parameters.assemble(
                parts, variables,
                lambda part, gradients=gradients: shared_parameters.part_of(
                    gradients[part.index], part) if part.shared else None)
            stepped = [v if s is None else v - ops.cast(
                learning_rate * tf.convert_to_tensor(s), v.dtype)
                for v, s in zip(values, steps)]
            outputs = model.stateless_forward(stepped, fixed, x, training=False)
            rows.append(model.stack_task_losses(
                model.compute_task_losses(y, outputs, sample_weight)))
        after = tf.stack(rows)
        labelled = model.labelled_tasks(sample_weight)
        valid = labelled[:, None] & (labelled & (before > 0))[None, :]
        if not any(part.shared for part in parts):
            valid = tf.zeros_like(valid)
        return 1.0 - tf.math.divide_no_nan(after, before[None, :]), valid

    def cosines(self, data, batches):
        return _average_over_batches(data, batches, self._cosines,
                                     "gradient_cosines")

    def affinity(self, data, batches, learning_rate):
        rate = tf.constant(_learning_rate(self.model, learning_rate), "float32")
        return _average_over_batches(data, batches,
                                     lambda batch: self._lookahead(batch, rate),
                                     "lookahead_affinity")


# One probe per model, so that repeated calls reuse the traced functions; it is
# rebuilt when the model's variables change (a layer frozen or unfrozen).
_PROBES = weakref.WeakKeyDictionary()


def _probe(model):
    variables = model.trainable_variables + model.non_trainable_variables
    key = tuple(id(v) for v in variables)
    cached = _PROBES.get(model)
    if cached is None or cached[0] != key:
        cached = (key, _Probe(model))
        _PROBES[model] = cached
    return cached[1]


def gradient_cosines(model, data, batches=1):
    """Pairwise cosines of the tasks' gradients of the shared parameters.

    For each probe batch, the `(T, P)` per-task gradients of every parameter
    that more than one task's loss reaches come from
    `MultiTaskModel.task_gradients`
    (the unweighted task losses, inference mode), and `C[i, j] = g_i . g_j /
    (|g_i| |g_j|)`. The result is the average of these per-batch cosine
    matrices (not the cosine of averaged gradients), each entry over the batches
    in which both tasks have labels; NaN for a pair that never does. Negative:
    the tasks conflict (Yu et al., NeurIPS 2020, arXiv:2001.06782).

    Args:
        model: a built `kmtl.MultiTaskModel`.
        data: a `tf.data.Dataset` of `(features, labels, sample_weights)` batches
            (e.g. `kmtl.data.make_dataset(...)`), an iterable of such batches, or
            one batch as a tuple.
        batches: int, default 1. How many batches of `data` to use.

    Returns:
        `(T, T)` float64 NumPy array, rows and columns in `model.task_names`
        order, 1 on the diagonal (for labelled tasks with a non-zero gradient);
        all NaN when the tasks share no parameter.

    Raises:
        ValueError: `batches` is not a positive integer or `data` is empty.

    Examples:
        ```python
        cosines = gradient_cosines(model, make_dataset(val, features, tasks, 256),
                                   batches=4)
        ```
    """
    return _probe(model).cosines(data, batches)


def lookahead_affinity(model, data, learning_rate=None, batches=1):
    """Lookahead inter-task affinity of Fifty et al., NeurIPS 2021.

    Fifty, Amid, Zhao, Yu, Anil and Finn, "Efficiently Identifying Task
    Groupings for Multi-Task Learning", NeurIPS 2021 (arXiv:2109.04617). On one
    batch, with `theta_s` the shared parameters (those more than one task's loss
    reaches), `theta_j` task j's own parameters and `g_i` task i's gradient of its
    loss with respect to `theta_s`:

        Z[i, j] = 1 - L_j(theta_s - lr * g_i, theta_j) / L_j(theta_s, theta_j)

    Row = the task whose gradient takes the step, column = the task whose loss
    is measured, on the same batch. `Z[i, j] > 0`: a step for task i lowers task
    j's loss (i helps j); `< 0`: it raises it. `Z[i, i]` is task i's own
    relative loss decrease. Only the shared parameters move; the task-specific
    ones stay at their current values, as in the paper. Shared means, as in
    `MultiTaskModel.task_gradients`, every parameter that more than one task's
    loss reaches: not the task-owned slices of a stacked per-task weight
    (MMoE's gates; see `kmtl.models.shared_parameters`). Losses are the task
    losses of `MultiTaskModel.compute_task_losses`, in inference mode. The
    result averages the per-batch matrices, each entry over the batches where
    both tasks have labels (NaN if none).

    The step is computed with `model.stateless_call` on stepped copies of the
    variable values: the model's weights are not touched.

    Args:
        model: a built `kmtl.MultiTaskModel`.
        data: as in `gradient_cosines`.
        learning_rate: float or None. The SGD step size; default the model
            optimizer's current learning rate.
        batches: int, default 1.

    Returns:
        `(T, T)` float64 NumPy array, in `model.task_names` order; all NaN
        when the tasks share no parameter.

    Raises:
        ValueError: `learning_rate` is not positive, or None and the model has no
            optimizer; `batches` is not a positive integer; `data` is empty.

    Examples:
        ```python
        affinity = lookahead_affinity(model, probe, learning_rate=0.01)
        # affinity[i, j] > 0: a step on task i's loss helps task j.
        ```
    """
    return _probe(model).affinity(data, batches, learning_rate)
