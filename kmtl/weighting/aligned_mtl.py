"""Aligned-MTL: align the principal components of the task gradients."""

import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

SCALE_MODES = ("min", "median", "rmse")
# float32 machine epsilon: the rank tolerance of the authors' code
# (`torch.finfo().eps`).
EPS = 2.0 ** -23


def aligned_weights(gram, mask, scale_mode="min"):
    """The Aligned-MTL weights `B 1`, `B = sqrt(sigma) V Lambda^{-1/2} V^T`,
    from the eigendecomposition `G G^T = V Lambda V^T` of the Gram matrix.

    As in the authors' code, eigenvalues up to `max(Lambda) * T * eps` count as
    0 and their components are dropped (a rank-deficient `G`), and `sigma` is
    the smallest kept eigenvalue (`"min"`), their lower median (`"median"`) or
    their mean (`"rmse"`). Rows and columns of unlabelled tasks are zeroed, so
    such a task is one of the dropped components and gets weight 0.
    """
    size = gram.shape[0]
    gram = gram * (mask[:, None] * mask[None, :])
    values, vectors = tf.linalg.eigh(gram)
    keep = values > tf.reduce_max(values) * size * EPS
    kept = tf.reduce_sum(tf.cast(keep, tf.int32))
    ascending = tf.sort(tf.where(keep, values, tf.fill(tf.shape(values), float("inf"))))
    if scale_mode == "min":
        sigma = ascending[0]
    elif scale_mode == "median":
        sigma = tf.gather(ascending, tf.maximum(kept - 1, 0) // 2)
    else:
        sigma = tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(keep, values, tf.zeros_like(values))),
            tf.cast(kept, gram.dtype))
    sigma = tf.where(kept > 0, sigma, tf.zeros_like(sigma))
    scales = tf.where(keep, tf.sqrt(sigma) * tf.math.rsqrt(
        tf.where(keep, values, tf.ones_like(values))), tf.zeros_like(values))
    # B 1 = V diag(scales) V^T 1.
    weights = tf.linalg.matvec(vectors, scales * tf.reduce_sum(vectors, axis=0))
    return weights * mask


@register("aligned_mtl")
class AlignedMTL(Weighting):
    """Aligned-MTL: the task gradients are replaced by an orthogonal set of equal
    norms with the same principal directions (the condition number of the
    aligned gradient matrix is 1), and the update is their sum.

    Senushkin, Patakin, Kuznetsov and Konushin, "Independent Component
    Alignment for Multi-Task Learning", CVPR 2023, arXiv:2305.19000.

    With the eigendecomposition `G G^T = V Lambda V^T` of the `T x T` Gram
    matrix (`tf.linalg.eigh`, in the graph), the aligned gradients are the rows
    of `B G`, `B = sqrt(sigma_min) V Lambda^{-1/2} V^T`, and the update is
    `sum_t (B 1)_t g_t`: with orthogonal gradients, each rescaled to norm
    `sqrt(sigma_min)`, the smallest gradient norm. Eigenvalues up to
    `max(Lambda) * T * eps` are dropped, as in the authors' code. The returned
    weights `B 1` are the coefficients of the task gradients in the update. The
    gradients are those of all shared parameters (not the paper's
    Aligned-MTL-UB on the shared representation); the task preference vector is
    all ones.

    Masking: a task without labels in the batch is a zero row of `G`, its
    component is dropped and it gets weight 0.

    Args:
        scale_mode: str, default `"min"` (the paper's `sigma_min`). The scale of
            the aligned gradients: `"min"`, `"median"` or `"rmse"` (mean) of the
            kept eigenvalues, as in the authors' code.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: unknown `scale_mode`.

    Examples:
        >>> model.compile(optimizer="adam", weighting="aligned_mtl")
    """

    gradient_based = True

    def __init__(self, scale_mode="min", **kwargs):
        super().__init__(**kwargs)
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"Unknown scale_mode. Use one of {SCALE_MODES}. "
                             f"Received: scale_mode={scale_mode!r}")
        self.scale_mode = scale_mode

    def aggregate_gradients(self, gradients, losses, labelled):
        mask = _gradients.task_mask(labelled, gradients.dtype)
        gram = _gradients.gram_matrix(gradients, mask)
        weights = aligned_weights(gram, mask, self.scale_mode)
        return _gradients.combine(weights, gradients), weights

    def get_config(self):
        return {**super().get_config(), "scale_mode": self.scale_mode}
