"""FairGrad: task weights from alpha-fair resource allocation."""


from kmtl.weighting import _gradients
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register


@register("fairgrad")
class FairGrad(Weighting):
    """FairGrad: the update `d = sum_t w_t g_t` maximizes the alpha-fair
    utility of the tasks' loss decreases `g_t . d`.

    Ban and Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
    arXiv:2402.15638.

    Each task's utility is its first-order loss decrease `g_t . d`, and `d`
    maximizes `sum_t u_alpha(g_t . d)` in a ball, with
    `u_alpha(x) = x^(1 - alpha) / (1 - alpha)` (`log x` for alpha = 1). Its
    optimality condition gives `d = sum_t w_t g_t` with
    `(G G^T w)_t = w_t^(-1 / alpha)`, `w > 0` (`G G^T` the `T x T` Gram matrix
    of the task gradients), so that `g_t . d = w_t^(-1 / alpha)`. `alpha`
    chooses the fairness: 0 tends to equal weighting (the sum of the
    decreases), 1 is proportional fairness (Nash-MTL's weights), 2 minimum
    potential delay, and a large `alpha` max-min fairness (the worst task's
    decrease, as MGDA). The authors' and LibMTL's code solve the equation with
    `scipy.optimize.least_squares`; here it is solved in the graph, in
    float64, by a fixed number of Newton steps with a parallel line search
    on a convex function whose minimizer it is
    (`_gradients.alpha_fair_weights`, Nash-MTL's solver generalized; 20 steps
    reach a relative residual below 1e-7 for alpha in [0.25, 5]). The shared
    direction is then scaled down to norm `max_norm` when longer, as the
    authors' code clips the shared parameters' gradient. Their code also
    multiplies the direction by the number of tasks `T` before clipping ("to
    match the sum loss"); kmtl does not, so a direction shorter than
    `max_norm` is `T` times shorter than theirs (a learning rate `T` times
    larger gives their step). No state: the weights are solved afresh at every
    step.

    The default `alpha = 2` is the value of every experiment in the paper's
    code (CelebA, QM9, NYU-v2, Cityscapes, MT10 `run.sh`); LibMTL's and the
    authors' command-line default is 1.0, where the weights are Nash-MTL's
    (`nash_mtl`).

    The returned weights are the effective coefficients of the task gradients
    in the clipped direction. Task-specific variables get their own task's
    unweighted gradient from the train step (as in the authors' code; LibMTL
    backpropagates `sum_t w_t L_t` to them).

    Masking: a task without labels in the batch (or with a zero gradient) is
    left out of the solve, whose condition holds among the others, and gets
    weight 0. When 0 is a positive combination of the gradients (strictly
    opposed tasks) the equation has no solution and the weights grow with the
    iterations along that combination, up to a bound (the direction stays
    finite and `max_norm` bounds it).

    Args:
        alpha: float > 0, default 2.0. The fairness exponent.
        max_norm: float, default 1.0 (the authors' code; LibMTL does not
            clip). Clip the shared direction to this norm; 0 or None: no
            clipping.
        iterations: int, default 20. Newton steps.

    Input shape:
        `gradients`: `(tasks, parameters)`; `losses`, `labelled`: `(tasks,)`.

    Output shape:
        `(parameters,)` direction and `(tasks,)` weights.

    Raises:
        ValueError: `alpha <= 0`, negative `max_norm` or `iterations` (a
            `ConfigError` naming the argument through `kmtl.weighting.get`).

    Examples:
        >>> model.compile(optimizer="adam", weighting="fairgrad(alpha=2.0)")
    """

    gradient_based = True
    # Nash-MTL's solver, hence its XLA setting: on a 3-task penguin model the XLA
    # train step of both compiled in 23 s, where PCGrad's, IMTL's and UPGrad's
    # took 11 to 12 s (the aggregation alone compiles and matches eager).
    compiles_with_xla = False

    def __init__(self, alpha=2.0, max_norm=1.0, iterations=20, **kwargs):
        super().__init__(**kwargs)
        alpha = float(alpha)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (1: Nash-MTL's weights, 2: the "
                             f"paper's experiments). Received: alpha={alpha}")
        max_norm, iterations = _gradients.solver_arguments(max_norm, iterations)
        self.alpha = alpha
        self.max_norm = max_norm
        self.iterations = iterations

    def aggregate_gradients(self, gradients, losses, labelled):
        mask = _gradients.task_mask(labelled, gradients.dtype)
        gram = _gradients.gram_matrix(gradients, mask)
        weights = _gradients.alpha_fair_weights(gram, mask, self.alpha,
                                                self.iterations) * mask
        return _gradients.clip_direction(_gradients.combine(weights, gradients),
                                         weights, self.max_norm)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha,
                "max_norm": self.max_norm, "iterations": self.iterations}
