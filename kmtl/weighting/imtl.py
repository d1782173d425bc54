"""IMTL-G: the update with equal projections onto every task's gradient."""

import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


def imtl_weights(gram, mask):
    """The IMTL-G weights `alpha` (summing to 1 over the labelled tasks) such
    that `g = sum_t alpha_t g_t` has the same projection `g . u_t` onto every
    labelled task's unit gradient `u_t = g_t / ||g_t||`.

    The paper's closed form `alpha_{2:T} = g_1 U^T (D U^T)^{-1}` (`D`, `U`: the
    rows `g_1 - g_t`, `u_1 - u_t`) solves `g . (u_1 - u_t) = 0`,
    `sum_t alpha_t = 1`. The same conditions are solved here as one linear system
    in `(alpha, kappa)` on the Gram matrix, `sum_j alpha_j g_j . u_t = kappa`
    for each labelled `t`, `alpha_t = 0` for the others, `sum_t alpha_t = 1`,
    so that a task's place in the batch (first or not, labelled or not) does
    not matter; the pseudo-inverse keeps a singular system (two equal gradients,
    a zero gradient, no labelled task) finite.
    """
    size = gram.shape[0]
    gram = gram * (mask[:, None] * mask[None, :])
    gram, _ = _gradients.normalized_gram(gram, mask)
    diag = tf.linalg.diag_part(gram)
    # A zero gradient has no unit vector: such a task is left out like an
    # unlabelled one (else g . u_t = 0 for it would force g = 0).
    mask = mask * tf.cast(diag > _gradients.TINY, gram.dtype)
    norms = tf.sqrt(tf.maximum(diag, 0.0))
    # Row t: (g_j . u_t)_j and -1 for kappa; an unlabelled task's row: alpha_t.
    projections = tf.math.divide_no_nan(gram, norms[:, None])
    top = tf.concat([
        mask[:, None] * projections + tf.linalg.diag(1.0 - mask),
        -mask[:, None]], axis=1)
    bottom = tf.concat([mask, tf.zeros((1,), gram.dtype)], axis=0)[None, :]
    system = tf.concat([top, bottom], axis=0)
    target = tf.one_hot(size, size + 1, dtype=gram.dtype)
    return _gradients.pinv_solve(system, target)[:size] * mask


@register("imtl")
class IMTL(Weighting):
    """Impartial multi-task learning, gradient part (IMTL-G): the update is the
    combination of the task gradients whose projections onto every task's unit
    gradient are equal, so no task dominates the update's direction.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao and Zhang, "Towards Impartial
    Multi-task Learning", ICLR 2021, https://openreview.net/forum?id=IMPnRXEWpvr.

    `g = sum_t alpha_t g_t` with `sum_t alpha_t = 1` and
    `g . u_1 = g . u_2 = ... = g . u_T`, `u_t = g_t / ||g_t||`: the paper's closed
    form `alpha_{2:T} = g_1 U^T (D U^T)^{-1}`, `alpha_1 = 1 - sum alpha_{2:T}`,
    with `D`, `U` the rows `g_1 - g_t` and `u_1 - u_t`. It is computed on the
    `T x T` Gram matrix (as one pseudo-inverse solve, see `imtl_weights`). The
    weights sum to 1, so the update is about `1 / T` of equal weighting's sum
    of gradients.

    Only the gradient part is implemented: the paper's full IMTL also learns
    loss scales (IMTL-L, `e^{s_t} L_t - s_t`) and uses both; combine IMTL-L by
    itself with a loss weighting if needed. The gradients are those of all
    shared parameters (the paper and LibMTL use the gradients of the shared
    representation).

    Masking: a task without labels in the batch (or with a zero gradient, which
    has no unit vector) gets weight 0 and the other tasks' projections are
    equalized among themselves.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Examples:
        >>> model.compile(optimizer="adam", weighting="imtl")
    """

    gradient_based = True

    def aggregate_gradients(self, gradients, losses, labelled):
        mask = _gradients.task_mask(labelled, gradients.dtype)
        gram = _gradients.gram_matrix(gradients, mask)
        weights = imtl_weights(gram, mask)
        return _gradients.combine(weights, gradients), weights
