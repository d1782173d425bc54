"""Nash-MTL: the Nash bargaining solution of the tasks' update preferences."""

import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


def nash_weights(gram, mask, iterations=20):
    """The `alpha > 0` with `(G G^T alpha)_t alpha_t = 1` for every labelled task
    (the paper's `G^T G alpha = 1 / alpha`, `G^T G` being the Gram matrix).

    It is the unique minimizer of the strictly convex
    `f(alpha) = alpha^T A alpha / 2 - sum_t log alpha_t` (`A = G G^T`), whose
    gradient is `A alpha - 1 / alpha`. `f` is self-concordant, so damped Newton
    steps `alpha += delta / (1 + lambda)` (`lambda` the Newton decrement) stay
    positive and converge from any start (Nesterov & Nemirovski), quadratically
    near the solution; each step also tries the full and shortened Newton steps
    and keeps the best (a line search over fixed sizes, in parallel). The
    Newton systems use `tf.linalg.eigh` (always defined); this `T x T` solve
    runs in float64.
    The start `alpha_t = k / ||g_t||`, `k` such that `alpha^T A alpha = T`, is the
    solution when the gradients are orthogonal.

    It is FairGrad's alpha-fair solve at `alpha = 1`
    (`_gradients.alpha_fair_weights`, shared with `kmtl.weighting.fairgrad`).

    A task that is unlabelled or whose gradient is 0 gets weight 0. When 0 is a
    positive combination of the gradients there is no solution and `alpha`
    grows with the iterations along that combination, up to
    `_gradients.MAX_FAIR_WEIGHT` (for gradients rescaled to a largest norm of 1).

    Args:
        gram: `(T, T)` Gram matrix.
        mask: `(T,)` 0/1 floats.
        iterations: int, Newton steps.

    Returns:
        `(T,)` weights.
    """
    return _gradients.alpha_fair_weights(gram, mask, 1.0, iterations)


@register("nash_mtl")
class NashMTL(Weighting):
    """Nash-MTL: the update `sum_t alpha_t g_t` is the Nash bargaining solution
    of the tasks, each task's utility being its improvement `g_t . d`.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik and Fetaya,
    "Multi-Task Learning as a Bargaining Game", ICML 2022, arXiv:2202.01017.

    The weights solve `G^T G alpha = 1 / alpha`, `alpha > 0` (`G^T G` the
    `T x T` Gram matrix of the task gradients), i.e.
    `alpha_t (G^T G alpha)_t = 1` for every task. The paper solves it with a
    sequence of convex approximations (CVXPY, up to 20, warm-started from the
    previous step); here it is solved in the graph as the minimizer of
    `alpha^T G^T G alpha / 2 - sum_t log alpha_t` by a fixed number of damped
    Newton steps from a cold start (see `nash_weights`). The shared direction is
    then scaled down to norm `max_norm` when longer, as the authors' code clips
    the shared parameters' gradient (at the solution `||d||^2 = T`).

    The weights are recomputed every `update_weights_every` steps and reused in
    between (the Gram matrix is then not computed); they live in a
    non-trainable variable, with the step counter, created by `build_tasks`.

    The returned weights are the effective coefficients of the task gradients
    in the clipped direction. Task-specific variables get their own task's
    unweighted gradient from the train step, where the paper's weighted loss
    `sum_t alpha_t L_t` would scale them by `alpha_t`.

    Masking: a task without labels in the batch is left out of the bargaining
    (the condition holds among the others) and gets weight 0.

    Args:
        update_weights_every: int, default 1. Solve for the weights every this
            many steps.
        max_norm: float, default 1.0 (the authors' code). Clip the shared
            direction to this norm; 0 or None: no clipping.
        iterations: int, default 20. Damped Newton steps.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: `update_weights_every < 1`, negative `max_norm` or
            `iterations`.

    Examples:
        >>> model.compile(optimizer="adam", weighting="nash_mtl(max_norm=1.0)")
    """

    gradient_based = True
    # XLA does not compile its iterative solver in reasonable time (over 90 s on a
    # two-task model, where the other methods take 3 to 7 s).
    compiles_with_xla = False

    def __init__(self, update_weights_every=1, max_norm=1.0, iterations=20,
                 **kwargs):
        super().__init__(**kwargs)
        if int(update_weights_every) < 1:
            raise ValueError(f"update_weights_every must be >= 1. Received: "
                             f"update_weights_every={update_weights_every}")
        max_norm, iterations = _gradients.solver_arguments(max_norm, iterations)
        self.update_weights_every = int(update_weights_every)
        self.max_norm = max_norm
        self.iterations = iterations
        self.alpha = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        if self.alpha is not None and tuple(self.alpha.shape) == (self.num_tasks,):
            return
        self.alpha = self.add_weight(
            shape=(self.num_tasks,), initializer="zeros", trainable=False,
            aggregation="mean", name="alpha")
        self.steps = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="int64",
            aggregation="only_first_replica", name="steps")

    def _solve(self, gradients, mask):
        gram = _gradients.gram_matrix(gradients, mask)
        return nash_weights(gram, mask, self.iterations)

    def aggregate_gradients(self, gradients, losses, labelled):
        dtype = gradients.dtype
        mask = _gradients.task_mask(labelled, dtype)
        if self.update_weights_every == 1:
            alpha = self._solve(gradients, mask)
        else:
            alpha = tf.cond(
                tf.equal(tf.math.floormod(tf.convert_to_tensor(self.steps),
                                          self.update_weights_every), 0),
                lambda: self._solve(gradients, mask),
                lambda: tf.cast(tf.convert_to_tensor(self.alpha), dtype))
        self.alpha.assign(tf.cast(alpha, self.alpha.dtype))
        self.steps.assign_add(1)
        alpha *= mask
        return _gradients.clip_direction(_gradients.combine(alpha, gradients),
                                         alpha, self.max_norm)

    def get_config(self):
        return {**super().get_config(),
                "update_weights_every": self.update_weights_every,
                "max_norm": self.max_norm, "iterations": self.iterations}
