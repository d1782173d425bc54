"""UPGrad: the mean of the task gradients projected onto the dual cone."""

import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

# KKT tolerance of the active-set solver, on the trace-normalized Gram matrix.
TOLERANCE = 1e-12


def _solve_on_free_sets(gram, targets, free):
    """For every problem `i`, the `lambda` that is 0 outside the free set
    `free[i]` and solves `gram_FF lambda_F = -targets[i]_F` on it (the
    unconstrained minimizer of the QP on that face), through `eigh` with a
    pseudo-inverse (defined for a singular Gram matrix).

    Args:
        gram: `(T, T)` positive semi-definite, float64.
        targets: `(T, T)`: row `i` is `gram @ u_i`.
        free: `(T, T)` 0/1 floats.

    Returns:
        `(T, T)`.
    """
    outer = free[:, :, None] * free[:, None, :]
    systems = gram[None] * outer + tf.linalg.diag(1.0 - free)
    values, vectors = tf.linalg.eigh(systems)
    cutoff = 1e-13 * tf.reduce_max(tf.abs(values), axis=-1, keepdims=True)
    inverse = tf.where(tf.abs(values) > cutoff,
                       1.0 / tf.where(values == 0, tf.ones_like(values), values),
                       tf.zeros_like(values))
    rhs = -targets * free
    projected = tf.linalg.matvec(vectors, rhs, transpose_a=True) * inverse
    return tf.linalg.matvec(vectors, projected) * free


def dual_cone_weights(gram, preferences, mask, iterations=None):
    """`v_i = argmin_v v^T gram v` subject to `v >= u_i`, for every row `u_i`
    of `preferences` at once: `G^T v_i` is the projection of `G^T u_i` onto the
    dual cone `{x : G x >= 0}` (Quinton and Rey, arXiv:2406.16232, Prop. 1).

    Each QP is solved in `lambda = v - u_i >= 0` by the Lawson-Hanson active
    set method: starting from `lambda = 0` and an empty free set, an
    iteration solves the QP's stationarity on the free set (`_solve_on_free_sets`);
    if that point is feasible (`> 0` on the free set) it is taken and the
    constraint whose multiplier `(gram (u + lambda))_j` is most negative
    joins the free set (nothing happens once every multiplier is
    `>= -TOLERANCE`: the KKT conditions hold); else `lambda` moves towards it
    up to the first coordinate that reaches 0, which leaves the free set. The
    `T` problems run batched for a fixed number of iterations (`2 T + 2` by
    default; on 60 random problems for each of T = 3, 5, 8, 12 and 16, half
    of them strongly conflicting, the most needed were 4, 6, 10, 18 and 20),
    in float64.

    Args:
        gram: `(T, T)` positive semi-definite float64 matrix (rows and columns
            of tasks outside `mask` may be anything but are ignored).
        preferences: `(T, T)` rows `u_i >= 0`, 0 outside `mask`.
        mask: `(T,)` 0/1 floats: the constraints `v_j >= u_ij` kept (outside,
            `v_j = u_ij`).
        iterations: int, active-set iterations; None: `2 T + 2`.

    Returns:
        `(T, T)` float64: row `i` is `v_i`.
    """
    size = gram.shape[0]
    if iterations is None:
        iterations = 2 * size + 2
    gram = gram * (mask[:, None] * mask[None, :])
    targets = tf.matmul(preferences, gram)  # row i: gram @ u_i (gram symmetric)
    infinity = tf.constant(float("inf"), gram.dtype)
    allowed = tf.broadcast_to(mask[None, :], (size, size)) > 0

    def step(slack, free):
        solution = _solve_on_free_sets(gram, targets, free)
        infeasible = (free > 0) & (solution <= 0)
        feasible = ~tf.reduce_any(infeasible, axis=1, keepdims=True)
        # Feasible: take the face's solution, free the most violated constraint.
        multipliers = targets + tf.matmul(solution, gram)
        candidates = tf.where(allowed & (free == 0), multipliers, infinity)
        worst = tf.argmin(candidates, axis=1)
        violated = tf.gather(candidates, worst, axis=1, batch_dims=1) < -TOLERANCE
        added = tf.one_hot(worst, size, dtype=gram.dtype) * tf.cast(
            violated, gram.dtype)[:, None]
        # Infeasible: move towards the face's solution up to the first
        # coordinate that reaches 0, and drop it from the free set.
        ratios = tf.where(infeasible, slack / tf.maximum(slack - solution, 1e-300),
                          infinity)
        first = tf.argmin(ratios, axis=1)
        ratio = tf.minimum(tf.reduce_min(ratios, axis=1, keepdims=True), 1.0)
        moved = slack + ratio * (solution - slack)
        dropped = (tf.one_hot(first, size, dtype=gram.dtype) > 0) | (moved <= 0)
        moved = tf.where(dropped, tf.zeros_like(moved), moved)
        slack = tf.where(feasible, solution, moved)
        free = tf.where(feasible, tf.maximum(free, added),
                        tf.where(dropped, tf.zeros_like(free), free))
        return slack, free

    zeros = tf.zeros((size, size), gram.dtype)
    slack, _ = _gradients.fixed_loop(step, (zeros, zeros), iterations)
    return preferences + slack


@register("upgrad")
class UPGrad(Weighting):
    """UPGrad: the mean of the task gradients, each projected onto the dual
    cone of the tasks' gradients (the directions that increase no task's loss).

    Quinton and Rey, "Jacobian Descent for Multi-Objective Optimization",
    arXiv:2406.16232 (the TorchJD library's `UPGrad` aggregator).

    The dual cone of the gradients `g_1 .. g_T` (rows of `G`) is
    `C = {x : G x >= 0}`. UPGrad's direction is `d = (1 / T) sum_i pi_C(g_i)`,
    `pi_C` the Euclidean projection onto `C`, so that `g_t . d >= 0` for every
    task: to first order, no task's loss increases, and gradients that do
    not conflict are averaged unchanged. Each projection is `G^T v_i` with
    `v_i = argmin_v v^T G G^T v` subject to `v >= e_i / T` (the paper's
    Prop. 1), so `d = sum_t w_t g_t` with `w = sum_i v_i`. As in TorchJD, the
    QPs use the Gram matrix divided by its trace (0 when the trace is below
    `norm_eps`: the direction is then the mean gradient) plus `reg_eps` times
    the identity; the weights then apply to the raw gradients. TorchJD solves
    the QPs with `quadprog` on the CPU; here the `T` QPs are solved in the
    graph, batched, by an active-set method in float64
    (`dual_cone_weights`), which reaches the exact solution in finitely many
    iterations; it runs a fixed `2 T + 2`, enough on every random problem
    tried.

    Scale: `d` is the mean of the projected gradients (TorchJD's
    convention), where kmtl's default (`"static"`, EW) sums the task
    gradients: without conflict UPGrad's step is `1 / T` times EW's. Scale
    the learning rate by `T` to compare them at the same step size.

    Task-specific variables get their own task's unweighted gradient from the
    train step. No state.

    Masking: the projection and the mean are over the labelled tasks only
    (`u_i = e_i / T_labelled`, the unlabelled tasks' rows of `G` ignored);
    an unlabelled task gets weight 0.

    Args:
        norm_eps: float >= 0, default 1e-4 (TorchJD). Below this trace of the
            Gram matrix (the sum of the squared gradient norms) the gradients
            count as 0 and the direction is their mean.
        reg_eps: float >= 0, default 1e-4 (TorchJD). Added to the diagonal of
            the trace-normalized Gram matrix, which keeps the QPs strictly
            convex (the weights move by about `reg_eps` relatively).
        iterations: int or None, default None (`2 T + 2`). Active-set
            iterations.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: a negative `norm_eps`, `reg_eps` or `iterations` (a
            `ConfigError` naming the argument through `kmtl.weighting.get`).

    Examples:
        >>> model.compile(optimizer="adam", weighting="upgrad")
    """

    gradient_based = True

    def __init__(self, norm_eps=1e-4, reg_eps=1e-4, iterations=None, **kwargs):
        super().__init__(**kwargs)
        for key, value in (("norm_eps", norm_eps), ("reg_eps", reg_eps)):
            if not float(value) >= 0:
                raise ValueError(f"{key} must be >= 0. Received: {key}={value}")
        if iterations is not None and int(iterations) < 0:
            raise ValueError(f"iterations must be >= 0 or None (2 T + 2). "
                             f"Received: iterations={iterations}")
        self.norm_eps = float(norm_eps)
        self.reg_eps = float(reg_eps)
        self.iterations = None if iterations is None else int(iterations)

    def aggregate_gradients(self, gradients, losses, labelled):
        dtype = gradients.dtype
        size = gradients.shape[0]
        mask = _gradients.task_mask(labelled, dtype)
        gram = tf.cast(_gradients.gram_matrix(gradients, mask), tf.float64)
        mask = tf.cast(mask, tf.float64)
        trace = tf.linalg.trace(gram)
        gram = tf.where(trace >= self.norm_eps,
                        gram / tf.where(trace > 0, trace, tf.ones_like(trace)),
                        tf.zeros_like(gram))
        gram += self.reg_eps * tf.eye(size, dtype=tf.float64)
        preferences = tf.linalg.diag(mask / tf.maximum(tf.reduce_sum(mask), 1.0))
        projections = dual_cone_weights(gram, preferences, mask, self.iterations)
        weights = tf.cast(tf.reduce_sum(projections, axis=0) * mask, dtype)
        return _gradients.combine(weights, gradients), weights

    def get_config(self):
        return {**super().get_config(), "norm_eps": self.norm_eps,
                "reg_eps": self.reg_eps, "iterations": self.iterations}
