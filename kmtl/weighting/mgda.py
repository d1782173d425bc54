"""MGDA: the min-norm point of the task gradients' convex hull."""

import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@register("mgda")
class MGDA(Weighting):
    """Multiple-gradient descent (MGDA): the update is the min-norm point of the
    convex hull of the task gradients, a common descent direction of every task
    (or 0 at a Pareto-stationary point).

    Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018, arXiv:1810.04650.

    The weights `w = argmin_{w in simplex} ||sum_t w_t g_t / n_t||^2` are found
    on the `T x T` Gram matrix: the paper's solver starts from the best pair of
    tasks (two-task closed form) and runs line-searched Frank-Wolfe steps; here a
    fixed number of pairwise Frank-Wolfe steps (linear convergence on the
    simplex) replaces the paper's loop of up to 250 steps with a tolerance,
    and exact solves on the face of the simplex the weights support (at the
    start and the end, see `_gradients.min_norm_weights`) reach optima that
    Frank-Wolfe steps only approach slowly (0 inside the hull). With two tasks
    the start is already the exact solution
    `gamma = clip((g_2 - g_1).g_2 / ||g_1 - g_2||^2, 0, 1)`.

    `n_t` is the optional gradient normalization of the authors' code (not in
    the paper): `"l2"` the gradient norm, `"loss"` the task loss, `"loss+"`
    both. As in that code, the weights found on the normalized gradients scale
    the unnormalized ones: the direction is `sum_t w_t g_t` (LibMTL instead
    combines the normalized gradients). The weights sum to 1, so the update is
    about `1 / T` of equal weighting's sum of gradients. This is MGDA on all
    shared parameters, not the paper's MGDA-UB (the gradients of the shared
    representation only).

    Masking: a task without labels in the batch is left out of the simplex and
    gets weight 0; with no labelled task the direction is 0.

    Args:
        normalization: str, default `"none"` (the paper's MGDA). One of
            `"none"`, `"l2"`, `"loss"`, `"loss+"`.
        iterations: int, default 25. Pairwise Frank-Wolfe steps.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: unknown `normalization` or negative `iterations`.

    Examples:
        >>> model.compile(optimizer="adam", weighting="mgda(normalization='l2')")
    """

    gradient_based = True
    # XLA does not compile its Frank-Wolfe loop in reasonable time (over 90 s on a
    # two-task model, where the other methods take 3 to 7 s).
    compiles_with_xla = False

    def __init__(self, normalization="none", iterations=25, **kwargs):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization. Use one of {NORMALIZATIONS}. "
                             f"Received: normalization={normalization!r}")
        if int(iterations) < 0:
            raise ValueError(f"iterations must be >= 0. Received: "
                             f"iterations={iterations}")
        if self.log_loss and normalization in ("loss", "loss+"):
            raise ValueError(
                f"normalization={normalization!r} divides each gradient by its "
                f"loss, which log_loss=True already does (and a log loss can be "
                f"0 or negative). Use normalization='none' or 'l2' with it.")
        self.normalization = normalization
        self.iterations = int(iterations)

    def _normalizers(self, gram, losses, mask):
        norms = tf.sqrt(tf.linalg.diag_part(gram))
        losses = tf.cast(losses, gram.dtype)
        scale = {"none": tf.ones_like(norms), "l2": norms, "loss": losses,
                 "loss+": losses * norms}[self.normalization]
        return tf.where((scale > 0) & (mask > 0), scale, tf.ones_like(scale))

    def aggregate_gradients(self, gradients, losses, labelled):
        mask = _gradients.task_mask(labelled, gradients.dtype)
        gram = _gradients.gram_matrix(gradients, mask)
        if self.normalization != "none":
            scale = self._normalizers(gram, losses, mask)
            gram = gram / (scale[:, None] * scale[None, :])
        weights = _gradients.min_norm_weights(gram, mask, self.iterations)
        return _gradients.combine(weights, gradients), weights

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization,
                "iterations": self.iterations}
