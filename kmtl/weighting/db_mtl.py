"""DB-MTL: dual balancing, log task losses and task gradients rescaled to the
largest moving-average norm."""

import keras
from keras import ops

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

# Added to a moving-average norm before dividing by it (LibMTL's value).
EPSILON = 1e-8


@register("db_mtl")
class DBMTL(Weighting):
    """Dual-Balancing Multi-Task Learning (DB-MTL): every task's loss is
    log-transformed (loss-scale balancing) and every task's moving-average
    gradient is rescaled to the largest of their norms (gradient-magnitude
    balancing).

    Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang and Kwok, "Dual-Balancing for
    Multi-Task Learning", arXiv:2308.12029 (Sec. 3.1, 3.2 and Algorithm 1;
    LibMTL's `DB_MTL` is the reference code).

    With `h_t` task `t`'s gradient of the shared parameters (of `log(L_t +
    1e-8)` under the default `log_loss=True`, so `grad L_t / (L_t + 1e-8)`), at
    the `k`-th step in which the task has labels:

        g_t <- beta_k g_t + (1 - beta_k) h_t,   beta_k = beta / k^beta_sigma,
        alpha_t = max_j ||g_j|| / (||g_t|| + 1e-8),
        direction = sum_t alpha_t g_t.

    `g_t` starts at 0 with no bias correction (as LibMTL: the first step's
    average is `(1 - beta) h_t`). The returned and logged weights are the
    `alpha_t`, coefficients of the moving averages, not of this step's
    gradients; `loss` logs `sum_t alpha_t log L_t`. Task-specific variables get
    their own task's gradient of its log loss, as in LibMTL. `log_loss=False`
    is the paper's gradient-balancing-only ablation.

    Masking: a task without labels in the batch keeps its moving average and
    step count, is left out of the largest norm and gets weight 0.

    State (non-trainable variables saved in `.keras` files):
    `gradient_averages`, `(tasks, N)` with `N` the model's trainable scalars
    (`build_gradients`, called by `compile`; the first `parameters` columns,
    the shared ones, are used: which parameters are shared is only known when
    the train step is traced), and per-task `steps`. Under `tf.distribute` the
    task gradients are averaged over the replicas with labels before the
    moving average (one all-reduce of the `(tasks, parameters)` matrix), so
    every replica keeps the same state (on-read variables read as their mean)
    and takes the same step.

    `gradients="representation"` is refused (`compile` raises ConfigError): a
    moving average of the representation's gradients would mix different rows
    from batch to batch (LibMTL refuses it too).

    Args:
        beta: float in [0, 1), default 0.9 (LibMTL's default). Decay of the
            moving average.
        beta_sigma: float >= 0, default 0.0 (a constant `beta`). Decay
            exponent of `beta_k`.
        log_loss: bool, default True (the paper's loss-scale balancing).
        **kwargs: `Weighting` arguments (`name`).

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: `beta` not in [0, 1) or a negative `beta_sigma`.

    Examples:
        >>> model.compile(optimizer="adam", weighting="db_mtl(beta=0.9)")
    """

    gradient_based = True
    supports_representation_gradients = False

    def __init__(self, beta=0.9, beta_sigma=0.0, log_loss=True, **kwargs):
        super().__init__(log_loss=log_loss, **kwargs)
        if not 0.0 <= float(beta) < 1.0:
            raise ValueError(f"beta must be in [0, 1). Received: beta={beta}")
        if not float(beta_sigma) >= 0:
            raise ValueError(f"beta_sigma must be >= 0. Received: "
                             f"beta_sigma={beta_sigma}")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.steps = None
        self.gradient_averages = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        if self.steps is not None:
            return
        with keras.name_scope(self.name, caller=self):
            self.steps = keras.Variable(
                "zeros", shape=(self.num_tasks,), trainable=False,
                aggregation="mean", synchronization="on_read", name="steps")

    def build_gradients(self, num_parameters):
        if self.gradient_averages is not None:
            return
        with keras.name_scope(self.name, caller=self):
            self.gradient_averages = keras.Variable(
                "zeros", shape=(self.num_tasks, int(num_parameters)),
                trainable=False, aggregation="mean", synchronization="on_read",
                name="gradient_averages")

    def aggregate_gradients(self, gradients, losses, labelled):
        if self.gradient_averages is None:
            raise ValueError("db_mtl keeps a moving average per shared "
                             "parameter: call build_gradients (compile does).")
        size, capacity = gradients.shape[1], self.gradient_averages.shape[1]
        if size is None or size > capacity:
            raise ValueError(
                f"db_mtl was built for {capacity} parameters (the model's "
                f"trainable scalars at compile) and gets {size}. Compile the "
                f"model again after changing its trainable variables.")
        # The replicas' mean gradient over those with labels (the plain
        # gradients on one device).
        local = ops.cast(labelled, gradients.dtype)
        share, summed = _gradients.sum_over_replicas(local, local[:, None] * gradients)
        labelled = share > 0
        current = ops.divide_no_nan(summed, share[:, None])

        steps = ops.convert_to_tensor(self.steps) + ops.cast(labelled, "float32")
        beta = self.beta / ops.power(ops.maximum(steps, 1.0), self.beta_sigma)
        stored = ops.convert_to_tensor(self.gradient_averages)
        averages = stored[:, :size]
        averages = ops.where(labelled[:, None],
                             beta[:, None] * averages
                             + (1.0 - beta[:, None]) * current, averages)
        norms = ops.sqrt(ops.sum(ops.square(averages), axis=1))
        largest = ops.max(ops.where(labelled, norms, 0.0))
        weights = ops.where(labelled, largest / (norms + EPSILON), 0.0)
        direction = ops.matmul(weights, averages)

        # A non-finite gradient (a loss-scale overflow under mixed precision,
        # whose step the optimizer skips) must not enter the state, or every
        # later direction is NaN. The direction stays non-finite, so the
        # optimizer still sees the overflow.
        finite = ops.all(ops.isfinite(current))
        averages = ops.where(finite, averages, stored[:, :size])
        steps = ops.where(finite, steps, ops.convert_to_tensor(self.steps))
        if size < capacity:
            averages = ops.concatenate([averages, stored[:, size:]], axis=1)
        self.gradient_averages.assign(averages)
        self.steps.assign(steps)
        return direction, weights

    def get_config(self):
        return {**super().get_config(), "beta": self.beta,
                "beta_sigma": self.beta_sigma}
