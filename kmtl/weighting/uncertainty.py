"""Uncertainty weighting: task weights from learned homoscedastic noise."""

import keras
from keras import ops

from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("uncertainty", "uw")
class UncertaintyWeighting(Weighting):
    """Uncertainty weighting (UW): each task's loss is weighted by a learned
    precision `exp(-s_t)`, where `s_t = log sigma_t^2` is a trainable
    log-variance, and `s_t` itself is added as a regularizer.

    Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
    Losses for Scene Geometry and Semantics", CVPR 2018, arXiv:1705.07115.

    The total loss over the labelled tasks is

        total = sum_t [exp(-s_t) L_t + s_t],

    and task `t`'s effective weight is `exp(-s_t)`. For a fixed loss the optimum
    is `exp(s_t) = L_t`: `s_t` tracks the log of the task's loss, e.g. the noise
    variance of a regression task trained with mean squared error.

    This is the simplified form of the authors' own example code (one term per
    task, `precision * loss + log_variance`), not the paper's per-likelihood
    forms (`L / (2 sigma^2) + log sigma` for a Gaussian, `L / sigma^2 + log sigma`
    for a softmax), which is what LibMTL's `UW` implements. At their optimum both
    paper forms give every task the weight `1 / (2 L_t)`, whatever its
    likelihood; the simplified form gives `1 / L_t`: the same relative weights,
    twice the overall scale (a constant the optimizer's learning rate absorbs),
    with no need to tell regression from classification tasks.

    The log-variances are trainable variables of the model, updated by the
    model's optimizer; they are saved in `.keras` files. A task without labels in
    the batch contributes neither term (weight 0, no gradient for its `s_t`).
    Under `tf.distribute` each replica's total (its task losses and the `s_t`
    terms alike) is divided by the replica count by the train step, so the
    replicas' gradients sum to the single-device ones. Static loss
    weights (`Task.loss_weight`, `compile(loss_weights=...)`) are not used.

    Args:
        initial_log_variance: float, default 0.0 (the paper's and the usual
            initialization, `sigma_t^2 = 1`: equal weights at the start).

    Input shape:
        `losses`, `labelled`: `(tasks,)`.

    Output shape:
        a scalar total loss and `(tasks,)` weights.

    Raises:
        ValueError: `initial_log_variance` is not a finite number.

    Examples:
        >>> model.compile(optimizer="adam", weighting="uncertainty")
        >>> model.weighting.log_variances  # (tasks,), trained with the model
    """

    log_loss_refusal = ("exp(-s_t) log L_t + s_t has no minimum in s_t once a "
                        "log loss is negative (L_t < 1): s_t falls without "
                        "bound.")

    def __init__(self, initial_log_variance=0.0, **kwargs):
        super().__init__(**kwargs)
        value = float(initial_log_variance)
        if value != value or abs(value) == float("inf"):
            raise ValueError(f"initial_log_variance must be a finite number. "
                             f"Received: initial_log_variance={initial_log_variance}")
        self.initial_log_variance = value
        self.log_variances = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        if self.log_variances is None:
            self.log_variances = self.add_weight(
                shape=(self.num_tasks,), name="log_variances",
                initializer=keras.initializers.Constant(self.initial_log_variance))

    def combine_losses(self, losses, labelled):
        mask = ops.cast(labelled, losses.dtype)
        log_variances = ops.cast(self.log_variances, losses.dtype)
        precision = ops.exp(-log_variances)
        terms = precision * losses + log_variances
        return ops.sum(mask * terms), mask * precision

    def get_config(self):
        return {**super().get_config(),
                "initial_log_variance": self.initial_log_variance}
