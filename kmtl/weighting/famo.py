"""FAMO: fast adaptive multitask optimization, task weights learned from the
rates at which the log losses fall, at O(1) cost per step."""

import keras
from keras import ops

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

# Added to `L_t - L*_t` before the log and the division (the references' value).
EPSILON = 1e-8
# Adam's moment decay rates and epsilon for the logit step (torch's defaults,
# which the references use).
BETA_1 = 0.9
BETA_2 = 0.999
ADAM_EPSILON = 1e-8
# Where the "after" losses of a logit step come from.
UPDATES = ("next_batch", "same_batch")
# The state variables, `(tasks,)` each.
STATE = ("logits", "first_moments", "second_moments", "adam_steps",
         "previous_log_losses", "previous_labelled")


@register("famo")
class FAMO(Weighting):
    """Fast Adaptive Multitask Optimization (FAMO): the total loss moves the
    tasks' log losses at rates that a softmax over learned logits balances, with
    one backward pass per step.

    Liu, Feng, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization",
    NeurIPS 2023, arXiv:2306.03792 (Sec. 3; Algorithm 2 of Appendix C is the
    Adam form used here and in the references).

    With logits `xi` (`(tasks,)`, 0 at the start), `z = softmax(xi)` and
    `D_t = max(L_t - L*_t, 0) + 1e-8` (`L*_t` the loss's lower bound,
    `min_losses`), the model follows the gradient of
    `c sum_t z_t log D_t`, `c = 1 / sum_t (z_t / D_t)`: the gradient of the
    total loss is that of `sum_t w_t L_t` with `w_t = c z_t / D_t` held
    constant (so every variable, shared or task-specific, gets the references'
    gradient). The weights sum to 1. The total's value, logged as `loss` and
    `val_loss`, is the objective `sum_t z_t log D_t` (negative once the losses
    are below 1): it moves with each task's relative change, so early stopping
    on `val_loss` sees one task overfit. (The value of `sum_t w_t L_t` is `c`,
    a harmonic mean of the `D_t` that the smallest one dominates.)

    After a step, the logits take one Adam step (with L2 decay `weight_decay`
    added to the gradient, as torch's `Adam(weight_decay=...)`) on the gradient
    `z * (delta - z . delta)` of `z . delta`, where `delta_t = log D_t(before) -
    log D_t(after)` is how much task `t`'s log loss fell: a task whose log loss
    fell faster than the `z`-weighted mean gets a lower logit.

    The "after" losses (`update`): the references (official code, LibMTL)
    recompute the losses with a second forward pass on the same batch after
    the update (`update="same_batch"`: the train step does so, in training
    mode as they do, and calls `observe_losses_after_step`). The default,
    kmtl's approximation `update="next_batch"`, takes them from the next
    training batch, read at the start of the next train step
    (`observe_losses`) before its weights are computed: no extra forward pass.
    Both give the weights of step `t + 1` from the logits updated with step
    `t`'s `delta`; with the next batch `delta` compares two batches, which adds
    batch-to-batch noise (zero-mean for shuffled batches) that Adam's
    normalization averages out, and the first step makes no logit update. The
    official code also clips the shared gradient to norm 1; kmtl does not (use
    the optimizer's `clipnorm`).

    Masking: the softmax, `c` and the weights run over the labelled tasks (an
    unlabelled task gets weight 0); the logits move only for the tasks
    labelled in both batches of `delta` (the softmax gradient over those
    tasks), and each task counts its own Adam steps.

    State (non-trainable variables saved in `.keras` files): `logits`, Adam's
    `first_moments`, `second_moments` and per-task `adam_steps`, and
    `previous_log_losses` with the tasks labelled then (`previous_labelled`).
    Only the train step moves it (`observe_losses`,
    `observe_losses_after_step`): `evaluate` and validation use the current
    logits. Under `tf.distribute` the losses are averaged over
    the replicas with labels (an all-reduce of `2 T` numbers for the weights
    and one for `delta`), so every replica uses the same weights, takes the
    same logit step and keeps the same state (on-read variables read as their
    mean), as on one device.

    `log_loss=True` is refused: FAMO already balances the log losses.

    A curriculum's scale `s_t` cancels in the weights (`w_t s_t L_t = c z_t`),
    so with FAMO a ramp only switches a task on; its steps between epochs also
    enter `delta` once.

    Args:
        learning_rate: float, default 0.025 (the references' `w_lr`). Adam step
            size of the logits.
        weight_decay: float, default 1e-3 (`gamma`: the paper's Algorithm 2,
            LibMTL and the official NYUv2 runs). L2 decay of the logits.
        min_losses: float or list of float (one per task), default 0.0: the
            lower bounds `L*_t` of the task losses.
        update: str, default `"next_batch"` (no extra cost); `"same_batch"`
            for the references' second forward pass after each update.
        **kwargs: `Weighting` arguments (`name`).

    Input shape:
        `losses`, `labelled`: `(tasks,)`.

    Output shape:
        a scalar total loss and `(tasks,)` weights.

    Raises:
        ValueError: `learning_rate` is not positive, `weight_decay` is
            negative, `update` is unknown, or `min_losses` is not a number or
            a list of numbers (one per task, checked by `build_tasks`).

    Examples:
        >>> model.compile(optimizer="adam", weighting="famo(learning_rate=0.025)")
    """

    log_loss_refusal = ("FAMO weights the tasks by the rates of their log "
                        "losses already.")

    def __init__(self, learning_rate=0.025, weight_decay=1e-3, min_losses=0.0,
                 update="next_batch", **kwargs):
        super().__init__(**kwargs)
        if update not in UPDATES:
            raise ValueError(f"Unknown update. Use one of {UPDATES}. Received: "
                             f"update={update!r}")
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0. Received: "
                             f"learning_rate={learning_rate}")
        if not float(weight_decay) >= 0:
            raise ValueError(f"weight_decay must be >= 0. Received: "
                             f"weight_decay={weight_decay}")
        if isinstance(min_losses, (list, tuple)):
            min_losses = [float(v) for v in min_losses]
        else:
            min_losses = float(min_losses)
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.min_losses = min_losses
        self.update = update
        self.observes_losses_after_step = update == "same_batch"
        self.logits = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        if isinstance(self.min_losses, list) and len(self.min_losses) != len(
                self.task_names):
            raise ValueError(f"min_losses must give one number per task "
                             f"{self.task_names}. Received: "
                             f"min_losses={self.min_losses}")
        if self.logits is not None:
            return
        # Every replica computes the same update from all-reduced losses, so
        # each keeps its own copy (on-read, read as their mean), as GradNorm.
        with keras.name_scope(self.name, caller=self):
            for name in STATE:
                setattr(self, name, keras.Variable(
                    "zeros", shape=(self.num_tasks,), trainable=False,
                    aggregation="mean", synchronization="on_read", name=name))

    def _log_gaps(self, losses, labelled):
        """`log D_t` where labelled (0 elsewhere) and `D_t`, float32."""
        losses = ops.cast(losses, "float32")
        bounds = ops.convert_to_tensor(self.min_losses, "float32")
        gaps = ops.where(labelled, ops.maximum(losses - bounds, 0.0) + EPSILON, 1.0)
        return ops.log(gaps), gaps

    def combine_losses(self, losses, labelled):
        losses_now, labelled = _mean_over_replicas(ops.stop_gradient(losses),
                                                   labelled)
        mask = ops.cast(labelled, "float32")
        log_gaps, gaps = self._log_gaps(losses_now, labelled)
        z = _masked_softmax(ops.convert_to_tensor(self.logits), mask)
        weights = mask * ops.divide_no_nan(z / gaps, ops.sum(z / gaps))
        weights = ops.cast(weights, losses.dtype)
        weighted = ops.sum(weights * losses)
        # The gradient of `sum_t w_t L_t`, the value of `sum_t z_t log D_t`.
        objective = ops.cast(ops.sum(z * log_gaps), losses.dtype)
        return weighted + ops.stop_gradient(objective - weighted), weights

    def observe_losses(self, losses, labelled):
        losses, labelled = _mean_over_replicas(losses, labelled)
        log_now, _ = self._log_gaps(losses, labelled)
        if self.update == "next_batch":
            # This batch's losses are the "after" losses of the last step.
            self._logit_step(log_now, labelled)
        self.previous_log_losses.assign(
            ops.where(labelled, log_now, self.previous_log_losses))
        self.previous_labelled.assign(ops.cast(labelled, "float32"))

    def observe_losses_after_step(self, losses, labelled):
        losses, labelled = _mean_over_replicas(losses, labelled)
        log_after, _ = self._log_gaps(losses, labelled)
        self._logit_step(log_after, labelled)

    def _logit_step(self, log_after, labelled):
        """One Adam step of the logits from `delta = previous - log_after`,
        over the tasks labelled at both."""
        valid = ops.cast(labelled, "float32") * ops.convert_to_tensor(
            self.previous_labelled)
        delta = valid * (ops.convert_to_tensor(self.previous_log_losses)
                         - log_after)
        logits = ops.convert_to_tensor(self.logits)
        z = _masked_softmax(logits, valid)
        gradient = z * (delta - ops.sum(z * delta)) + self.weight_decay * logits
        steps = ops.convert_to_tensor(self.adam_steps) + valid
        first = BETA_1 * self.first_moments + (1.0 - BETA_1) * gradient
        second = BETA_2 * self.second_moments + (1.0 - BETA_2) * ops.square(gradient)
        # Bias corrections at the task's own step count (1 where not moved).
        safe_steps = ops.maximum(steps, 1.0)
        step = self.learning_rate * (first / (1.0 - BETA_1 ** safe_steps)) / (
            ops.sqrt(second / (1.0 - BETA_2 ** safe_steps)) + ADAM_EPSILON)
        moved = valid > 0
        self.logits.assign(ops.where(moved, logits - step, logits))
        self.first_moments.assign(ops.where(moved, first, self.first_moments))
        self.second_moments.assign(ops.where(moved, second, self.second_moments))
        self.adam_steps.assign(steps)

    def get_config(self):
        return {**super().get_config(), "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "min_losses": self.min_losses,
                "update": self.update}


def _mean_over_replicas(losses, labelled):
    """The replicas' mean `(tasks,)` losses over those with labels, and which
    tasks any replica has labels for (the values themselves on one device)."""
    local = ops.cast(labelled, "float32")
    share, summed = _gradients.sum_over_replicas(
        local, local * ops.cast(losses, "float32"))
    return ops.divide_no_nan(summed, share), share > 0


def _masked_softmax(logits, mask):
    """`softmax(logits)` over the tasks where `mask` is 1 (0 elsewhere; all 0
    for an empty mask)."""
    shifted = logits - ops.max(ops.where(mask > 0, logits, -1e9))
    exp = mask * ops.exp(ops.where(mask > 0, shifted, 0.0))
    return ops.divide_no_nan(exp, ops.sum(exp))
