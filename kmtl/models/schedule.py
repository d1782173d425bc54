"""`TrainSchedule`: what a training schedule changes inside the train step.

Curriculum callbacks (`kmtl.callbacks.TaskCurriculum`,
`kmtl.callbacks.SelfPacedLearning`) decide per epoch; the train step reads
their decisions from variables, so the compiled step is traced once:

- `task_scales`, `(tasks,)` float32 in [0, 1]: multiplies each task's loss
  (0: the task has not joined yet; it then counts as unlabelled, so a
  weighting method gives it no weight and no gradient). Bengio et al.,
  "Curriculum Learning", ICML 2009: easier tasks first, harder ones ramped in.
- `row_fraction`, scalar in (0, 1]: self-paced learning keeps, per task and
  batch, the share `row_fraction` of the labelled rows with the lowest loss
  (sample weight times 0 for the others). Kumar, Packer and Koller,
  "Self-Paced Learning for Latent Variable Models", NeurIPS 2010: a row
  enters training when its loss falls below a threshold that grows over
  training; here the threshold is the batch's `row_fraction` quantile of the
  task's per-row losses, so it does not depend on the loss's scale.

The schedule is plain Python state holding `tf.Variable`s, not tracked by
Keras: it adds nothing to the model's weights or saved files. A callback
attaches it when `fit` starts (`MultiTaskModel.schedule`), which makes Keras
trace the train step again, and detaches it when `fit` ends. Evaluation is
never scheduled: validation losses and metrics cover every labelled row of
every task.
"""

import tensorflow as tf
from keras import ops


class TrainSchedule:
    """The schedule variables a model's train step reads (see the module).

    Args:
        task_names: list of str, the model's tasks in output order.

    Attributes:
        task_scales: `tf.Variable` `(tasks,)` float32, or None (no task
            curriculum).
        row_fraction: scalar `tf.Variable` float32, or None (no self-paced
            learning).
    """

    def __init__(self, task_names):
        self.task_names = list(task_names)
        self.task_scales = None
        self.row_fraction = None

    @property
    def active(self):
        """True when any part of the schedule is on."""
        return self.task_scales is not None or self.row_fraction is not None

    def use_task_scales(self):
        """The `task_scales` variable, created at 1.0 for every task."""
        if self.task_scales is None:
            self.task_scales = tf.Variable(
                tf.ones(len(self.task_names)), trainable=False,
                name="task_scales")
        return self.task_scales

    def use_row_fraction(self):
        """The `row_fraction` variable, created at 1.0 (every row)."""
        if self.row_fraction is None:
            self.row_fraction = tf.Variable(1.0, trainable=False,
                                            name="row_fraction")
        return self.row_fraction

    def paced_weights(self, task_losses_per_row, sample_weight):
        """Self-paced sample weights: each task's weights times 1 on its
        easiest `row_fraction` of labelled rows, 0 elsewhere.

        Args:
            task_losses_per_row: dict `{task: (batch,)}`, the per-row losses
                (`keras.losses.Loss.call`, before reduction).
            sample_weight: dict `{task: (batch,)}`: 0 marks an unlabelled row.

        Returns:
            dict `{task: (batch,)}` float32. A batch keeps at least one row
            per labelled task (the easiest); rows tied with the threshold are
            kept.
        """
        if self.row_fraction is None:
            return sample_weight
        paced = dict(sample_weight)
        fraction = ops.convert_to_tensor(self.row_fraction)
        for name, losses in task_losses_per_row.items():
            weight = ops.cast(sample_weight[name], "float32")
            losses = ops.stop_gradient(ops.cast(losses, "float32"))
            labelled = weight > 0
            count = ops.sum(ops.cast(labelled, "float32"))
            keep = ops.maximum(ops.ceil(fraction * count), 1.0)
            ordered = ops.sort(ops.where(labelled, losses, float("inf")))
            index = ops.cast(ops.minimum(keep, ops.maximum(count, 1.0)) - 1,
                             "int32")
            threshold = ops.take(ordered, index)
            easy = ops.logical_and(labelled, losses <= threshold)
            paced[name] = weight * ops.cast(easy, "float32")
        return paced

    def scale(self, task_losses, labelled):
        """Task losses times `task_scales`; a task at scale 0 unlabelled.

        Args:
            task_losses: dict `{task: scalar}`.
            labelled: `(tasks,)` bool in `task_names` order.

        Returns:
            `(task_losses, labelled)`, scaled.
        """
        if self.task_scales is None:
            return task_losses, labelled
        scales = ops.convert_to_tensor(self.task_scales)
        scaled = {}
        for index, name in enumerate(self.task_names):
            loss = task_losses[name]
            scaled[name] = loss * ops.cast(scales[index], loss.dtype)
        return scaled, ops.logical_and(labelled, scales > 0)
