"""CAGrad: the best worst-task improvement near the average gradient."""

import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

RESCALES = (0, 1, 2)


def rescale_divisor(rescale, c):
    """The divisor of the direction for each `rescale` of the authors' code."""
    return (1.0, 1.0 + c ** 2, 1.0 + c)[rescale]


def _line_search(q, uv, vv, bv, radius, limit):
    """Exact minimizer over `gamma in [0, limit]` of
    `bv gamma + radius sqrt(q + 2 uv gamma + vv gamma^2)` (plus a constant):
    the dual objective along a pairwise step `w + gamma (e_toward - e_away)`,
    with `q = ||g_w||^2`, `uv = g_w.v`, `vv = ||v||^2`, `bv = g_0.v`, `v =
    g_toward - g_away`. With `s = sqrt(vv)`, the root is `gamma_0 + z / s`,
    `gamma_0 = -uv / vv`, `z / sqrt(z^2 + h^2) = -bv / (radius s)` and
    `h^2 = q - uv^2 / vv`; the slope has one sign when `|bv| >= radius s`."""
    zero = tf.zeros_like(q)
    norm = tf.sqrt(tf.maximum(vv, 0.0))
    slope = radius * norm
    center = -tf.math.divide_no_nan(uv, vv)
    height = tf.sqrt(tf.maximum(q - uv * tf.math.divide_no_nan(uv, vv), 0.0))
    ratio = tf.clip_by_value(-tf.math.divide_no_nan(bv, slope), -1.0, 1.0)
    shift = ratio * height * tf.math.rsqrt(tf.maximum(1.0 - ratio ** 2, 1e-12))
    gamma = tf.clip_by_value(center + tf.math.divide_no_nan(shift, norm), 0.0, limit)
    gamma = tf.where(bv <= -slope, limit, gamma)
    gamma = tf.where(bv >= slope, zero, gamma)
    return tf.where(vv > _gradients.TINY, gamma, zero)


def cagrad_dual_weights(gram, mask, c, iterations):
    """Solves CAGrad's dual problem
    `min_{w in simplex} g_w . g_0 + c ||g_0|| ||g_w||` (`g_w = sum_t w_t g_t`,
    `g_0` the mean gradient) over the labelled tasks, by a fixed number of
    pairwise Frank-Wolfe steps with exact line search, from `w = 1 / T`.

    Returns:
        `(w, mean_weights, radius, gw_norm)` on the normalized Gram matrix:
        `radius = c ||g_0||` and `gw_norm = ||g_w||` (both in its units).
    """
    gram = gram * (mask[:, None] * mask[None, :])
    gram, _ = _gradients.normalized_gram(gram, mask)
    mean_weights = mask / tf.maximum(tf.reduce_sum(mask), 1.0)
    to_mean = tf.linalg.matvec(gram, mean_weights)
    radius = c * tf.sqrt(tf.maximum(tf.reduce_sum(mean_weights * to_mean), 0.0))

    def step(weights):
        to_w = tf.linalg.matvec(gram, weights)
        q = tf.maximum(tf.reduce_sum(weights * to_w), 0.0)
        grad = to_mean + radius * tf.math.divide_no_nan(to_w, tf.sqrt(q))
        toward, away = _gradients.pairwise_vertices(grad, weights, mask)
        direction = toward - away
        gamma = _line_search(
            q, tf.reduce_sum(direction * to_w),
            tf.reduce_sum(direction * tf.linalg.matvec(gram, direction)),
            tf.reduce_sum(direction * to_mean), radius,
            tf.reduce_sum(weights * away))
        return (tf.maximum(weights + gamma * direction, 0.0),)

    (weights,) = _gradients.fixed_loop(step, (mean_weights,), iterations)
    weights *= mask
    gw_norm = tf.sqrt(tf.maximum(
        tf.reduce_sum(weights * tf.linalg.matvec(gram, weights)), 0.0))
    return weights, mean_weights, radius, gw_norm


@register("cagrad")
class CAGrad(Weighting):
    """Conflict-Averse Gradient descent (CAGrad): the update maximizes the
    worst task's improvement `min_t g_t . d` within a ball of radius
    `c ||g_0||` around the average gradient `g_0`.

    Liu, Liu, Jin, Stone and Liu, "Conflict-Averse Gradient Descent for
    Multi-task Learning", NeurIPS 2021, arXiv:2110.14048.

    The direction is `d = g_0 + (c ||g_0|| / ||g_w||) g_w`, with `w` the
    solution of the dual problem
    `min_{w in simplex} g_w . g_0 + c ||g_0|| ||g_w||` (`g_w = sum_t w_t g_t`),
    divided by `1 + c^2` (`rescale=1`, the authors' code and LibMTL's default).
    The paper's code solves the dual with SciPy's SLSQP; here it is solved in the
    graph on the `T x T` Gram matrix by a fixed number of pairwise Frank-Wolfe
    steps, each with the exact line search (closed form along the step). At
    `c = 0` the direction is the mean gradient (gradient descent on the average
    loss, about `1 / T` of equal weighting's sum). The returned weights are the
    effective coefficients `(1 / T + lambda w) / (1 + c^2)` of the task
    gradients in `d`.

    Masking: `g_0` is the mean over the tasks labelled in the batch and the dual
    runs over those tasks only; an unlabelled task gets weight 0.

    Args:
        c: float >= 0, default 0.4 (the paper's value for NYUv2; LibMTL
            defaults to 0.5). Radius of the ball around `g_0`, relative to
            `||g_0||`; 0 gives the average gradient.
        rescale: int, default 1. Divide the direction by 1 (`0`), `1 + c^2`
            (`1`) or `1 + c` (`2`), as in the authors' code.
        iterations: int, default 25. Pairwise Frank-Wolfe steps on the dual.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: negative `c` or `iterations`, or `rescale` not 0, 1 or 2.

    Examples:
        >>> model.compile(optimizer="adam", weighting="cagrad(c=0.4)")
    """

    gradient_based = True

    def __init__(self, c=0.4, rescale=1, iterations=25, **kwargs):
        super().__init__(**kwargs)
        if not float(c) >= 0:
            raise ValueError(f"c must be >= 0. Received: c={c}")
        if rescale not in RESCALES:
            raise ValueError(f"rescale must be 0, 1 or 2. Received: "
                             f"rescale={rescale!r}")
        if int(iterations) < 0:
            raise ValueError(f"iterations must be >= 0. Received: "
                             f"iterations={iterations}")
        self.c = float(c)
        self.rescale = int(rescale)
        self.iterations = int(iterations)

    def aggregate_gradients(self, gradients, losses, labelled):
        mask = _gradients.task_mask(labelled, gradients.dtype)
        gram = _gradients.gram_matrix(gradients, mask)
        weights, mean_weights, radius, gw_norm = cagrad_dual_weights(
            gram, mask, self.c, self.iterations)
        weights = mean_weights + tf.math.divide_no_nan(radius, gw_norm) * weights
        weights /= rescale_divisor(self.rescale, self.c)
        return _gradients.combine(weights, gradients), weights

    def get_config(self):
        return {**super().get_config(), "c": self.c, "rescale": self.rescale,
                "iterations": self.iterations}
