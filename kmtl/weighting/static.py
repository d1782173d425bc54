"""Static loss weights: equal weighting (EW) and fixed per-task weights."""

from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("static", "ew")
class StaticWeighting(Weighting):
    """Fixed loss weights: `sum_t w_t L_t`, or the weighted mean.

    With every weight 1 this is equal weighting (EW), the baseline of every
    multi-task comparison (e.g. LibMTL's `EW`). The weights are the tasks'
    `loss_weight`s, overridden by `compile(loss_weights=...)`. A task without
    labels in the batch (loss 0) has effective weight 0.

    Args:
        mean: bool, default False. Divide by `sum_t w_t` (a weighted mean).

    Input shape:
        `losses`, `labelled`: `(tasks,)`.

    Output shape:
        a scalar total loss and `(tasks,)` weights.

    Examples:
        >>> model.compile(optimizer="adam", weighting="static")
    """

    # The weights are the config's: logging them adds a constant column.
    logs_weights = False

    def __init__(self, mean=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = bool(mean)

    def combine_losses(self, losses, labelled):
        total, weights = super().combine_losses(losses, labelled)
        if self.mean:
            scale = 1.0 / sum(self.static_weights)
            return total * scale, weights * scale
        return total, weights

    def get_config(self):
        return {**super().get_config(), "mean": self.mean}
