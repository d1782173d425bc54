"""GradNorm: task weights that balance the tasks' gradient norms."""

import keras
from keras import ops

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

# A task weight never goes below this after a GradNorm step, so it stays a
# positive weight (the paper does not say how it keeps them positive).
MIN_WEIGHT = 1e-3


@register("gradnorm")
class GradNorm(Weighting):
    """GradNorm: learns loss weights `w_t` so that each task's weighted gradient
    norm follows its relative training rate.

    Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization
    for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018,
    arXiv:1711.02257.

    At each step, with `g_t` task `t`'s gradient of its unweighted loss:

    - `G_t = w_t ||g_t||`, and `G_mean` their mean over the tasks;
    - `r_t = (L_t / L_t(0)) / mean_k (L_k / L_k(0))`, the relative inverse training
      rate, where `L_t(0)` is the task's first loss (recorded in-graph at the first
      step in which the task has labels);
    - the weights take one gradient-descent step on
      `L_grad = sum_t |G_t - G_mean r_t^alpha|`, the target `G_mean r_t^alpha`
      held constant as in the paper: `w_t <- w_t - learning_rate *
      sign(G_t - G_mean r_t^alpha) ||g_t||`, then are renormalized to
      `sum_t w_t = T` (Algorithm 1).

    The shared variables move along `sum_t w_t g_t` with the weights before the
    step (the paper's order: the network update and the weight update both use
    `w(t)`); those weights are the ones returned and logged.

    The norms are taken over all shared parameters (every variable that more
    than one task's loss reaches), as LibMTL does by default. The paper takes
    them over the last shared layer only, to save compute; here the per-task
    gradients of every shared variable are computed anyway by the train step.
    Task-specific variables (towers, heads) get their own task's unweighted
    gradient from the train step, as in LibMTL, where the paper's total loss
    `sum_t w_t L_t` would scale them by `w_t`.

    Masking: a task without labels in the batch keeps its weight, is left out of
    `G_mean`, of the mean loss ratio and of the renormalization (the labelled
    tasks' weights are rescaled to keep their sum, so `sum_t w_t = T` still
    holds), and gets weight 0 in the direction and the logs. A step weight is
    floored at `MIN_WEIGHT` (1e-3) before renormalization so weights stay
    positive.

    The weights, initial losses and per-task initialized flags are
    non-trainable variables (saved in `.keras` files). Under `tf.distribute`
    the task losses and gradient norms are averaged over the replicas (one
    all-reduce of `3 T` numbers; a norm is then the replicas' mean of their local
    gradient norms, not the norm of the summed gradient), so every replica takes
    the same weight step and the stored losses do not depend on the replica
    count.

    Args:
        alpha: float, default 1.5 (the asymmetry used for NYUv2 in the paper, and
            LibMTL's default). 0 pulls every task to the same gradient norm;
            larger values pull harder towards equal training rates.
        learning_rate: float, default 0.025. Step size of the plain
            gradient-descent update of the weights.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: `alpha` is negative or `learning_rate` is not positive.

    Examples:
        >>> model.compile(optimizer="adam", weighting="gradnorm(alpha=1.5)")
    """

    gradient_based = True
    log_loss_refusal = ("its training rates L_t / L_t(0) are ratios of losses; "
                        "with log losses (negative below 1) their powers are "
                        "NaN.")

    def __init__(self, alpha=1.5, learning_rate=0.025, **kwargs):
        super().__init__(**kwargs)
        if not float(alpha) >= 0:
            raise ValueError(f"alpha must be >= 0. Received: alpha={alpha}")
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0. Received: "
                             f"learning_rate={learning_rate}")
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.task_weights = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        if self.task_weights is not None:
            return
        # Every replica computes the same update from all-reduced norms and
        # losses, so each keeps its own copy (on-read variables, read as their
        # mean): writing them needs no collective in the step.
        shape = (self.num_tasks,)
        with keras.name_scope(self.name, caller=self):
            self.task_weights = keras.Variable(
                "ones", shape=shape, trainable=False, aggregation="mean",
                synchronization="on_read", name="task_weights")
            self.initial_losses = keras.Variable(
                "zeros", shape=shape, trainable=False, aggregation="mean",
                synchronization="on_read", name="initial_losses")
            self.initialized = keras.Variable(
                "zeros", shape=shape, trainable=False, aggregation="mean",
                synchronization="on_read", name="initialized")

    def combine_losses(self, losses, labelled):
        # Evaluation (and `combine_task_losses`): the current weights.
        weights = ops.cast(labelled, losses.dtype) * ops.cast(
            self.task_weights, losses.dtype)
        return ops.sum(weights * losses), weights

    def aggregate_gradients(self, gradients, losses, labelled):
        dtype = gradients.dtype
        weights = ops.convert_to_tensor(self.task_weights, dtype)
        # A replica's own losses and gradients: summed over the replicas and
        # divided by the number of them with labels, they give the replicas'
        # mean loss and mean gradient norm (the plain values on one device).
        local = ops.cast(labelled, dtype)
        local_norms = ops.sqrt(ops.sum(ops.square(gradients), axis=1))
        share, loss_sum, norm_sum = _gradients.sum_over_replicas(
            local, local * ops.cast(losses, dtype), local * local_norms)
        mask = ops.cast(share > 0, dtype)
        losses = ops.divide_no_nan(loss_sum, share)
        norms = ops.divide_no_nan(norm_sum, share)

        # L_t(0): the first loss of each task, taken when it first has labels.
        initialized = ops.cast(self.initialized, dtype)
        initial = ops.cast(self.initial_losses, dtype) + (
            mask * (1.0 - initialized) * losses)

        count = ops.maximum(ops.sum(mask), 1.0)
        weighted_norms = weights * norms
        mean_norm = ops.sum(mask * weighted_norms) / count
        ratios = mask * ops.divide_no_nan(losses, initial)
        rates = ops.divide_no_nan(ratios, ops.sum(ratios) / count)
        targets = mean_norm * ops.power(rates, self.alpha)
        step = mask * ops.sign(weighted_norms - targets) * norms
        stepped = ops.maximum(weights - self.learning_rate * step, MIN_WEIGHT)
        scale = ops.divide_no_nan(ops.sum(mask * weights), ops.sum(mask * stepped))
        used = mask * weights
        direction = ops.matmul(used, gradients)

        self.task_weights.assign(mask * stepped * scale + (1.0 - mask) * weights)
        self.initial_losses.assign(initial)
        self.initialized.assign(ops.maximum(initialized, mask))
        return direction, used

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha,
                "learning_rate": self.learning_rate}
