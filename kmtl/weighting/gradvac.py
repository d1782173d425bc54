"""Gradient Vaccine: raise each pair's gradient cosine to its running target."""

import keras
import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("gradvac")
class GradVac(Weighting):
    """Gradient Vaccine (GradVac): when the cosine similarity of two task
    gradients is below a target, task `i`'s gradient is moved towards `j`'s
    until the cosine equals the target; the targets are exponential moving
    averages of the observed cosines.

    Wang, Tsvetkov, Firat and Cao, "Gradient Vaccine: Investigating and
    Improving Multi-task Optimization in Massively Multilingual Models",
    ICLR 2021, arXiv:2010.05874.

    For each task `i` and each other task `j` in a random order (Algorithm 2),
    with `phi_ij` the cosine of the current `g_i^PC` and `g_j` and `phi^_ij`
    the target:

    - if `phi_ij < phi^_ij`: `g_i^PC += ||g_i^PC|| (phi^_ij sqrt(1 - phi_ij^2)
      - phi_ij sqrt(1 - phi^_ij^2)) / (||g_j|| sqrt(1 - phi^_ij^2)) g_j`;
    - `phi^_ij <- (1 - beta) phi^_ij + beta phi_ij`.

    The targets start at 0, so the first step projects conflicting gradients as
    PCGrad does. The update is the sum of the `g_i^PC`. As in PCGrad, each
    `g_i^PC` is a combination of the task gradients and the whole procedure runs
    on the `T x T` Gram matrix; the returned weights are the effective
    coefficients of the task gradients in the direction.

    The cosines are taken over all shared parameters at once (LibMTL's
    `GradVac_group_type=0`); the paper's per-layer granularity is not available
    because the train step passes one flat gradient per task. `beta` defaults to
    0.5, LibMTL's default; the paper uses `beta = 1e-2` for its multilingual
    models, which makes the targets move much more slowly.

    The targets are a `(tasks, tasks)` non-trainable variable created by
    `build_tasks` (saved in `.keras` files); the random orders come from a
    `keras.random.SeedGenerator`.

    Masking: a task without labels in the batch neither moves nor is moved
    towards, its targets are not updated, and it gets weight 0.

    Args:
        beta: float in [0, 1], default 0.5. EMA rate of the targets.
        seed: int or None, default None. Seed of the random orders.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: `beta` outside [0, 1].

    Examples:
        >>> model.compile(optimizer="adam", weighting="gradvac(beta=0.01)")
    """

    gradient_based = True

    def __init__(self, beta=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"beta must be in [0, 1]. Received: beta={beta}")
        self.beta = float(beta)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.targets = None

    def build_tasks(self, task_names, loss_weights=None):
        super().build_tasks(task_names, loss_weights)
        shape = (self.num_tasks, self.num_tasks)
        if self.targets is not None and tuple(self.targets.shape) == shape:
            return
        self.targets = self.add_weight(
            shape=shape, initializer="zeros", trainable=False, aggregation="mean",
            name="targets")

    def aggregate_gradients(self, gradients, losses, labelled):
        dtype = gradients.dtype
        size = gradients.shape[0]
        mask = _gradients.task_mask(labelled, dtype)
        gram, _ = _gradients.normalized_gram(
            _gradients.gram_matrix(gradients, mask), mask)
        norms = tf.sqrt(tf.linalg.diag_part(gram))
        targets = tf.cast(tf.convert_to_tensor(self.targets), dtype)
        keys = keras.random.uniform((size, size), seed=self.seed_generator)
        orders = _gradients.random_orders(tf.cast(keys, dtype))
        rows = tf.range(size)
        coefficients = tf.eye(size, dtype=dtype)
        for step in range(size - 1):
            other = orders[:, step]
            pair = tf.stack([rows, other], axis=1)
            products = tf.matmul(coefficients, gram)
            dots = tf.gather_nd(products, pair)
            own = tf.sqrt(tf.maximum(tf.reduce_sum(products * coefficients, 1), 0.0))
            other_norm = tf.gather(norms, other)
            valid = (mask * tf.gather(mask, other) * tf.cast(own > 0, dtype)
                     * tf.cast(other_norm > 0, dtype))
            cosine = tf.clip_by_value(
                tf.math.divide_no_nan(dots, own * other_norm), -1.0, 1.0)
            target = tf.gather_nd(targets, pair)
            target_sine = tf.sqrt(1.0 - target ** 2)
            step_size = tf.math.divide_no_nan(
                own * (target * tf.sqrt(1.0 - cosine ** 2) - cosine * target_sine),
                other_norm * target_sine)
            step_size *= valid * tf.cast(cosine < target, dtype)
            coefficients += step_size[:, None] * tf.one_hot(other, size, dtype=dtype)
            moved = target + self.beta * valid * (cosine - target)
            targets = tf.tensor_scatter_nd_update(targets, pair, moved)
        self.targets.assign(tf.cast(targets, self.targets.dtype))
        weights = tf.reduce_sum(coefficients * mask[:, None], axis=0) * mask
        return _gradients.combine(weights, gradients), weights

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}
