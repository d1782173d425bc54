"""GradDrop: keep one sign of the task gradients per parameter, at random."""

import keras
import tensorflow as tf

from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("graddrop")
class GradDrop(Weighting):
    """Gradient Sign Dropout (GradDrop): at every coordinate, the task gradients
    of one sign are kept and the others dropped, the sign drawn with
    probability given by the coordinate's sign purity.

    Chen, Ngiam, Huang, Luong, Kretzschmar, Chai and Anguelov, "Just Pick a
    Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout",
    NeurIPS 2020, arXiv:2010.06808.

    Per coordinate, with `P = (1 + sum_t g_t / sum_t |g_t|) / 2` the positive
    sign purity and `U ~ Uniform(0, 1)`: a positive `g_t` is kept when `U < P`,
    a negative one when `U >= P` (the paper's `P > U`, `P < U`; the tie goes to
    the negative sign so that gradients of one sign are always all kept). The
    update is `sum_t (leak_t + (1 - leak_t) M_t) g_t`. The draws come from a
    `keras.random.SeedGenerator` in the graph.

    The paper applies GradDrop to the gradient of a shared activation layer
    (summed over the batch, times the sign of the layer's input) and
    backpropagates the result; here it is applied to the gradients of the
    shared parameters, coordinate by coordinate, since the train step passes
    those. There are no per-task scalar weights: the returned weight of a task
    is the share of its squared gradient norm that is kept,
    `sum_p M_tp g_tp^2 / ||g_t||^2` (1 when nothing is dropped).

    Masking: a task without labels in the batch is left out of the purity and
    of the update and gets weight 0.

    Args:
        leak: float in [0, 1] or a list of one float per task, default 0.0 (the
            paper's multi-task setting). The share of each task's gradient that
            passes whatever the mask; 1 for a task makes it a main task.
        seed: int or None, default None. Seed of the draws.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: a leak outside [0, 1], or a leak list whose length is not
            the number of tasks (at `compile`).

    Examples:
        >>> model.compile(optimizer="adam", weighting="graddrop(leak=0.0, seed=0)")
    """

    gradient_based = True

    def __init__(self, leak=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        leaks = list(leak) if isinstance(leak, list | tuple) else [leak]
        if not all(0.0 <= float(value) <= 1.0 for value in leaks):
            raise ValueError(f"leak must be in [0, 1]. Received: leak={leak!r}")
        self.leak = ([float(value) for value in leak]
                     if isinstance(leak, list | tuple) else float(leak))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build_tasks(self, task_names, loss_weights=None):
        if isinstance(self.leak, list) and len(self.leak) != len(task_names):
            raise ValueError(f"leak must have one value per task "
                             f"({len(task_names)}: {list(task_names)}). Received: "
                             f"leak={self.leak}")
        super().build_tasks(task_names, loss_weights)

    def aggregate_gradients(self, gradients, losses, labelled):
        dtype = gradients.dtype
        mask = _gradients.task_mask(labelled, dtype)
        gradients = gradients * mask[:, None]
        purity = 0.5 * (1.0 + tf.math.divide_no_nan(
            tf.reduce_sum(gradients, axis=0),
            tf.reduce_sum(tf.abs(gradients), axis=0)))
        draws = tf.cast(keras.random.uniform(tf.shape(purity),
                                             seed=self.seed_generator), dtype)
        keep = tf.where(gradients > 0, draws < purity, draws >= purity)
        leak = tf.constant(self.leak, dtype)
        leak = leak[:, None] if isinstance(self.leak, list) else leak
        kept = gradients * (leak + (1.0 - leak) * tf.cast(keep, dtype))
        weights = tf.math.divide_no_nan(tf.reduce_sum(kept * gradients, axis=1),
                                        tf.reduce_sum(gradients ** 2, axis=1))
        return tf.reduce_sum(kept, axis=0), weights

    def get_config(self):
        return {**super().get_config(), "leak": self.leak, "seed": self.seed}
