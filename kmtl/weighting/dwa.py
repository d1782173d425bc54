"""Dynamic Weight Average: task weights from the tasks' recent rates of loss
descent."""

import keras
from keras import ops

from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("dwa")
class DWA(Weighting):
    """Dynamic Weight Average (DWA): a task whose loss fell less over the last
    epoch gets a larger weight.

    Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention",
    CVPR 2019, arXiv:1803.10704.

    With `L_t(e)` task `t`'s average training loss over epoch `e` and `K` tasks,
    the weights during epoch `e` are

        w_t = K exp(r_t / temperature) / sum_k exp(r_k / temperature),
        r_t = L_t(e - 1) / L_t(e - 2),

    and `w_t = 1` during the first two epochs. The total loss is
    `sum_t w_t L_t` over the labelled tasks.

    State, all non-trainable variables saved in `.keras` files: the running sum
    and count of each task's losses over the current epoch (`loss_sums`,
    `loss_counts`, updated in-graph by `combine_losses`), `loss_history`
    (`(2, tasks)`: the average losses of epochs `e - 2` and `e - 1`) and
    `epochs_recorded`. The callback from `callbacks()` (added by
    `MultiTaskModel.fit`) rolls the history at the end of each epoch and turns
    the running sums on for training batches only (the `recording` flag): they
    stay off during validation, `evaluate` and any use outside `fit`, so only
    training losses enter the history.

    An epoch average is over the batches in which the task has labels; a task
    without labels in the batch gets weight 0 for it. Under `tf.distribute` the
    running sums are on-read variables, as Keras metrics use: each replica adds
    its own losses and its count to its own copy, with no collective in the
    step, and reading them sums the copies, so the average is over every
    replica's labelled batches. Static loss weights are not used.

    Args:
        temperature: float, default 2.0 (the paper's `T`). Softness of the
            weights: large values give near-equal weights.

    Input shape:
        `losses`, `labelled`: `(tasks,)`.

    Output shape:
        a scalar total loss and `(tasks,)` weights.

    Raises:
        ValueError: `temperature` is not positive.

    Examples:
        >>> model.compile(optimizer="adam", weighting="dwa(temperature=2.0)")
        >>> model.fit(data, epochs=10)  # equal weights for epochs 1 and 2
    """

    log_loss_refusal = ("its weights come from ratios of epoch losses "
                        "L_t(e - 1) / L_t(e - 2), meaningless for log losses "
                        "(negative below 1, 0 at 1).")

    def __init__(self, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0. Received: "
                             f"temperature={temperature}")
        self.temperature = float(temperature)
        self.loss_history = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        if self.loss_history is not None:
            return
        shape = (self.num_tasks,)
        # Running sums: local to each replica under tf.distribute (no collective in
        # the step, like Keras metrics' variables), summed when read outside it.
        with keras.name_scope(self.name, caller=self):
            self.loss_sums = keras.Variable(
                "zeros", shape=shape, trainable=False, aggregation="sum",
                synchronization="on_read", name="loss_sums")
            self.loss_counts = keras.Variable(
                "zeros", shape=shape, trainable=False, aggregation="sum",
                synchronization="on_read", name="loss_counts")
        self.loss_history = self.add_weight(
            shape=(2, self.num_tasks), initializer="zeros", trainable=False,
            name="loss_history")
        self.epochs_recorded = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="epochs_recorded")
        self.recording = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="recording")

    def current_weights(self):
        """The `(tasks,)` weights of the current epoch, before masking."""
        history = ops.convert_to_tensor(self.loss_history)
        ratios = ops.where(history[0] > 0,
                           ops.divide_no_nan(history[1], history[0]), 1.0)
        weights = self.num_tasks * ops.softmax(ratios / self.temperature)
        return ops.where(self.epochs_recorded >= 2, weights, ops.ones_like(weights))

    def combine_losses(self, losses, labelled):
        mask = ops.cast(labelled, losses.dtype)
        weights = mask * ops.cast(self.current_weights(), losses.dtype)
        recording = ops.cast(self.recording, losses.dtype)
        self.loss_sums.assign_add(
            ops.cast(recording * mask * ops.stop_gradient(losses), "float32"))
        self.loss_counts.assign_add(
            ops.cast(recording * mask, "float32"))
        return ops.sum(weights * losses), weights

    def end_epoch(self):
        """Rolls the history: `L(e - 2) <- L(e - 1) <- this epoch's average`, and
        clears the running sums. A task without labels in the epoch keeps its
        last average."""
        history = ops.convert_to_tensor(self.loss_history)
        counts = ops.convert_to_tensor(self.loss_counts)
        means = ops.where(counts > 0,
                          ops.divide_no_nan(self.loss_sums, counts), history[1])
        self.loss_history.assign(ops.stack([history[1], means]))
        self.epochs_recorded.assign_add(1.0)
        self.loss_sums.assign(ops.zeros_like(self.loss_sums))
        self.loss_counts.assign(ops.zeros_like(self.loss_counts))

    def callbacks(self):
        return [DWAHistory(self)]

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


class DWAHistory(keras.callbacks.Callback):
    """Keeps a `DWA` weighting's loss history during `fit`: records the training
    batches' losses and rolls the history at each epoch end.

    Args:
        weighting: the `DWA` instance.
    """

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_begin(self, epoch, logs=None):
        self.weighting.recording.assign(1.0)

    def on_test_begin(self, logs=None):
        self.weighting.recording.assign(0.0)

    def on_epoch_end(self, epoch, logs=None):
        self.weighting.recording.assign(0.0)
        self.weighting.end_epoch()

    def on_train_end(self, logs=None):
        self.weighting.recording.assign(0.0)
