"""PCGrad: project each task gradient off the gradients it conflicts with."""

import keras
import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("pcgrad")
class PCGrad(Weighting):
    """Projecting Conflicting Gradients (PCGrad): each task gradient is projected
    onto the normal plane of every other task gradient it conflicts with
    (negative dot product), in a random order; the update is the sum of the
    projected gradients.

    Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for
    Multi-Task Learning", NeurIPS 2020, arXiv:2001.06782.

    For each task `i` and each other task `j` in a random order (Algorithm 1):
    `if g_i^PC . g_j < 0: g_i^PC -= (g_i^PC . g_j) / ||g_j||^2 g_j`, with `g_j`
    the original gradient. Every `g_i^PC` stays a combination
    `sum_k C_ik g_k` of the task gradients, so the projections run on the
    `T x T` Gram matrix (dot products `C G G^T`) and the direction is one
    product `(sum_i C_i) G`: `O(T^2 P)` for the Gram matrix, no per-parameter
    loop. The returned weights `sum_i C_i` are the effective coefficients of the
    task gradients in the direction (1 for a task nothing was projected onto).

    The orders are drawn in the graph from a `keras.random.SeedGenerator`
    (one independent order per task and step): the same `seed` gives the same
    sequence of updates.

    Masking: a task without labels in the batch neither projects nor is
    projected and gets weight 0.

    Args:
        seed: int or None, default None. Seed of the random orders.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Examples:
        >>> model.compile(optimizer="adam", weighting="pcgrad(seed=0)")
    """

    gradient_based = True

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def aggregate_gradients(self, gradients, losses, labelled):
        dtype = gradients.dtype
        size = gradients.shape[0]
        mask = _gradients.task_mask(labelled, dtype)
        gram, _ = _gradients.normalized_gram(
            _gradients.gram_matrix(gradients, mask), mask)
        sq_norms = tf.linalg.diag_part(gram)
        keys = keras.random.uniform((size, size), seed=self.seed_generator)
        orders = _gradients.random_orders(tf.cast(keys, dtype))
        coefficients = tf.eye(size, dtype=dtype)
        for step in range(size - 1):
            other = orders[:, step]
            # (C G G^T)[i, other_i]: the current g_i^PC . g_other_i, for every i.
            dots = tf.reduce_sum(coefficients * tf.gather(gram, other), axis=1)
            shift = tf.math.divide_no_nan(tf.minimum(dots, 0.0),
                                          tf.gather(sq_norms, other))
            coefficients -= shift[:, None] * tf.one_hot(other, size, dtype=dtype)
        weights = tf.reduce_sum(coefficients * mask[:, None], axis=0) * mask
        return _gradients.combine(weights, gradients), weights

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
