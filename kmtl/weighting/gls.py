"""Geometric Loss Strategy: the geometric mean of the task losses."""

from keras import ops

from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("gls")
class GLS(Weighting):
    """Geometric Loss Strategy (GLS): the total loss is the geometric mean of the
    task losses, `(prod_t L_t)^(1 / T)`.

    Chennupati, Sistu, Yogamani and Rawashdeh, "MultiNet++: Multi-Stream Feature
    Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR
    Workshops 2019, arXiv:1904.08492.

    Computed in log space over the `n` labelled tasks,
    `total = exp(mean_t log(L_t + epsilon))`, so a labelled task loss of 0 (a
    perfect fit) gives neither `log(0)` nor a NaN gradient; an unlabelled task
    enters as `log(1) = 0` and is left out of the mean; the total
    is 0 when no task is labelled. The effective weight of task `t` is the
    gradient weight `d total / d L_t = total / (n (L_t + epsilon))` (0 for an
    unlabelled task): the geometric mean weights each task by the inverse of its
    own loss. (LibMTL's `GLS` logs `L_t / (T prod_k L_k)` instead.)

    Under `tf.distribute` the train step divides each replica's total by the
    replica count; the geometric mean is homogeneous of degree 1, so that is
    the geometric mean of the divided losses. Static loss weights are not used.

    Args:
        epsilon: float, default 1e-8. Added to each loss inside the log.

    Input shape:
        `losses`, `labelled`: `(tasks,)`.

    Output shape:
        a scalar total loss and `(tasks,)` weights.

    Raises:
        ValueError: `epsilon` is not positive.

    Examples:
        >>> model.compile(optimizer="adam", weighting="gls")
    """

    log_loss_refusal = ("its total exp(mean_t log L_t) already works on the log "
                        "losses; on log losses (negative below 1) its own log "
                        "is NaN.")

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        if not float(epsilon) > 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon}")
        self.epsilon = float(epsilon)

    def combine_losses(self, losses, labelled):
        mask = ops.cast(labelled, losses.dtype)
        count = ops.sum(mask)
        shifted = ops.where(labelled, losses + self.epsilon, 1.0)
        mean_log = ops.sum(ops.log(shifted)) / ops.maximum(count, 1.0)
        total = ops.minimum(count, 1.0) * ops.exp(mean_log)
        weights = mask * ops.divide_no_nan(ops.stop_gradient(total),
                                           ops.maximum(count, 1.0) * shifted)
        return total, weights

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
