"""Random Loss Weighting: fresh random task weights at every step."""

import keras
from keras import ops

from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register

DISTRIBUTIONS = ("normal", "uniform")


@register("rlw")
class RLW(Weighting):
    """Random Loss Weighting (RLW): the task weights of each step are the
    softmax of random draws, `w = softmax(z)`, `z_t ~ N(0, 1)` i.i.d.

    Lin, Ye, Zhang and Tsang, "Reasonable Effectiveness of Random Weighting: A
    Litmus Test for Multi-Task Learning", TMLR 2022, arXiv:2111.10603.

    The weights sum to 1 over the tasks labelled in the batch (the softmax is
    taken over those tasks; an unlabelled task gets weight 0), as in the paper
    and LibMTL's `RLW`: the total loss is a random convex combination of the
    task losses, not a sum, so its scale is about `1 / T` of equal weighting's.

    The draws come from a `keras.random.SeedGenerator` inside the step: the same
    `seed` gives the same sequence of weights, and a model reloaded from a
    `.keras` file continues the sequence where it was saved.

    Args:
        distribution: str, default `"normal"` (standard normal draws, the
            paper's and LibMTL's default). `"uniform"`: draws from U(0, 1).
        seed: int or None, default None. Seed of the draws.

    Input shape:
        `losses`, `labelled`: `(tasks,)`.

    Output shape:
        a scalar total loss and `(tasks,)` weights.

    Raises:
        ValueError: unknown `distribution`.

    Examples:
        >>> model.compile(optimizer="adam", weighting="rlw(seed=0)")
    """

    def __init__(self, distribution="normal", seed=None, **kwargs):
        super().__init__(**kwargs)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"Unknown distribution. Use one of {DISTRIBUTIONS}. "
                             f"Received: distribution={distribution!r}")
        self.distribution = distribution
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Tracked as a layer variable too, so `.keras` files keep the position in
        # the random stream (Keras saves only layer variables).
        self.seed_state = self.seed_generator.state

    def combine_losses(self, losses, labelled):
        shape = (self.num_tasks,)
        if self.distribution == "normal":
            draws = keras.random.normal(shape, seed=self.seed_generator)
        else:
            draws = keras.random.uniform(shape, seed=self.seed_generator)
        draws = ops.where(labelled, ops.cast(draws, losses.dtype), -1e9)
        weights = ops.cast(labelled, losses.dtype) * ops.softmax(draws)
        return ops.sum(weights * losses), weights

    def get_config(self):
        return {**super().get_config(), "distribution": self.distribution,
                "seed": self.seed}
