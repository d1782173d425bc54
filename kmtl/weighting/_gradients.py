"""In-graph helpers shared by the gradient aggregation / surgery methods.

Every method here works on the `(tasks, parameters)` matrix `G` of per-task
gradients, and most only through its Gram matrix `G G^T` (`tasks x tasks`): the
`O(T^2 P)` product is computed once, the method's own math runs on `T x T`
tensors, and the direction is one `(T,) @ (T, P)` product. Solvers run a fixed
number of iterations in a `tf.while_loop`, so a step is one graph (and compiles
with XLA) whatever the gradients are.

Masking convention: `mask` is the `(tasks,)` float version of `labelled`. A task
outside the mask gets weight 0 and its row of `G` is ignored (its row and column
of the Gram matrix are zeroed), so a call equals the same call on the labelled
tasks only.
"""

import tensorflow as tf


def sum_over_replicas(*values):
    """Sums tensors over the replicas of a `tf.distribute` strategy, in one
    all-reduce (as synchronized batch normalization does); on one device, the
    values themselves. A method whose state must be the same on every replica
    (GradNorm's and FAMO's weights, DB-MTL's moving averages) builds it from
    these sums.

    Args:
        *values: tensors, the replica's own.

    Returns:
        A tuple (list) of the summed tensors, in order.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, list(values))


# Gram entries below this share of the largest labelled squared norm count as 0.
TINY = 1e-12


def task_mask(labelled, dtype="float32"):
    """`(tasks,)` bool -> `(tasks,)` 0/1 floats."""
    return tf.cast(labelled, dtype)


def gram_matrix(gradients, mask=None):
    """`G G^T` of the `(tasks, parameters)` gradients, rows and columns of
    unlabelled tasks zeroed when `mask` is given.

    A non-finite entry (a diverged loss) becomes 0, so that the decompositions
    downstream, which raise on NaN on CPU, still run; the NaN reaches the
    direction through the gradients themselves, as with equal weighting.
    """
    gram = tf.matmul(gradients, gradients, transpose_b=True)
    gram = tf.where(tf.math.is_finite(gram), gram, tf.zeros_like(gram))
    if mask is not None:
        gram = gram * (mask[:, None] * mask[None, :])
    return gram


def normalized_gram(gram, mask):
    """`(gram / s, s)` with `s` the largest squared gradient norm of a labelled
    task (1 when there is none): the solvers then work on numbers of order 1
    whatever the scale of the loss."""
    scale = tf.reduce_max(mask * tf.linalg.diag_part(gram))
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    return gram / scale, scale


def combine(weights, gradients):
    """`sum_t weights[t] * gradients[t]`: `(T,)`, `(T, P)` -> `(P,)`."""
    return tf.linalg.matvec(gradients, weights, transpose_a=True)


def fixed_loop(body, state, iterations):
    """Runs `state = body(*state)` exactly `iterations` times in the graph."""
    if iterations <= 0:
        return state
    return tf.while_loop(lambda *_: True, body, state,
                         maximum_iterations=iterations)


def random_orders(keys):
    """Random orders of the other tasks, one per task.

    Args:
        keys: `(T, T)` uniform draws in [0, 1).

    Returns:
        `(T, T - 1)` int32: row `i` lists the tasks other than `i` in random
        order (sorted by their keys).
    """
    size = keys.shape[0]
    keys = tf.where(tf.eye(size, dtype=tf.bool), 2.0 * tf.ones_like(keys), keys)
    return tf.argsort(keys, axis=1, stable=True)[:, :size - 1]


def _pair_start(gram, mask):
    """The start point of Sener & Koltun's solver: the best min-norm point over
    every pair of labelled tasks (a single vertex when only one is labelled),
    each from the closed form `gamma = clip((g_j - g_i).g_j / ||g_i - g_j||^2,
    0, 1)` for `gamma g_i + (1 - gamma) g_j`."""
    size = gram.shape[0]
    diag = tf.linalg.diag_part(gram)
    numerator = diag[None, :] - gram
    denominator = diag[:, None] + diag[None, :] - 2.0 * gram
    gamma = tf.clip_by_value(
        tf.math.divide_no_nan(numerator, denominator), 0.0, 1.0)
    gamma = tf.where(denominator > TINY, gamma, tf.ones_like(gamma))
    cost = (gamma ** 2 * diag[:, None] + 2.0 * gamma * (1.0 - gamma) * gram
            + (1.0 - gamma) ** 2 * diag[None, :])
    pairs = mask[:, None] * mask[None, :] > 0
    best = tf.argmin(tf.reshape(tf.where(pairs, cost, tf.fill(tf.shape(cost), 1e30)),
                                (-1,)), output_type=tf.int32)
    i, j = best // size, best % size
    gamma = tf.reshape(gamma, (-1,))[best]
    start = (gamma * tf.one_hot(i, size, dtype=gram.dtype)
             + (1.0 - gamma) * tf.one_hot(j, size, dtype=gram.dtype))
    return start * mask


def pairwise_vertices(grad, weights, mask):
    """The two vertices of a pairwise Frank-Wolfe step over the simplex
    (Lacoste-Julien & Jaggi, "On the Global Linear Convergence of Frank-Wolfe
    Optimization Variants", NeurIPS 2015, arXiv:1511.05932).

    Args:
        grad: `(T,)` gradient of the objective at `weights`.
        weights: `(T,)` current point of the simplex.
        mask: `(T,)` 0/1 floats, the vertices allowed.

    Returns:
        `(toward, away)` one-hot `(T,)` rows: the labelled task of smallest
        `grad`, and the task of largest `grad` among those with weight > 0. The
        step moves weight from `away` to `toward`, at most `weights[away]`.
    """
    size = weights.shape[0]
    big = tf.fill(tf.shape(weights), tf.constant(1e30, weights.dtype))
    toward = tf.argmin(tf.where(mask > 0, grad, big), output_type=tf.int32)
    away = tf.argmax(tf.where(weights > 0, grad, -big), output_type=tf.int32)
    return (tf.one_hot(toward, size, dtype=weights.dtype),
            tf.one_hot(away, size, dtype=weights.dtype))


def min_norm_weights(gram, mask, iterations=25):
    """The min-norm point of the convex hull of the labelled task gradients:
    `argmin_{w in simplex} ||sum_t w_t g_t||^2 = w^T (G G^T) w`.

    Sener & Koltun's solver starts from the best pair (closed form) and runs
    Frank-Wolfe steps with exact line search. Here the steps are pairwise
    Frank-Wolfe steps (weight moves from the worst task in the support to the
    best task, exact line search), which converge linearly on the simplex where
    plain Frank-Wolfe zig-zags, and their number is fixed. The start is the
    better of the best pair and the min-norm point of the whole simplex's
    affine hull (when inside), and the result is polished by an exact solve on
    the face it supports.

    Args:
        gram: `(T, T)` Gram matrix of the gradients (masked rows may be anything).
        mask: `(T,)` 0/1 floats.
        iterations: int, the number of pairwise steps.

    Returns:
        `(T,)` weights: non-negative, summing to 1 over the labelled tasks (all
        0 when none is).
    """
    gram = gram * (mask[:, None] * mask[None, :])
    gram, _ = normalized_gram(gram, mask)

    def step(weights):
        grad = tf.linalg.matvec(gram, weights)
        toward, away = pairwise_vertices(grad, weights, mask)
        direction = toward - away
        decrease = tf.reduce_sum(grad * -direction)  # -(G w).d >= 0
        curvature = tf.reduce_sum(direction * tf.linalg.matvec(gram, direction))
        limit = tf.reduce_sum(weights * away)
        gamma = tf.where(curvature > TINY,
                         tf.math.divide_no_nan(decrease, curvature),
                         tf.zeros_like(curvature))
        gamma = tf.clip_by_value(gamma, 0.0, limit)
        return (tf.maximum(weights + gamma * direction, 0.0),)

    # Two starts: the paper's best pair, and the exact min-norm point of the
    # whole simplex's affine hull when it is inside (the optimum is interior).
    pair = _pair_start(gram, mask)
    full = _polish_on_support(gram, mask / tf.maximum(tf.reduce_sum(mask), 1.0))
    start = tf.where(_quadratic(gram, full) < _quadratic(gram, pair), full, pair)
    (weights,) = fixed_loop(step, (start,), iterations)
    return _polish_on_support(gram, weights * mask)


def _quadratic(gram, weights):
    return tf.reduce_sum(weights * tf.linalg.matvec(gram, weights))


def _polish_on_support(gram, weights):
    """One exact step on the face of the simplex that `weights` support: the
    min-norm point of the affine hull of those gradients (KKT system
    `[A 1; 1^T 0] [w; l] = [0; 1]` on the face, pseudo-inverse), kept if it lies
    in the face and is no worse. Where Frank-Wolfe steps approach an optimum
    slowly (0 inside the hull, a singular Gram matrix) but have found its face,
    this lands on it (Wolfe's min-norm-point algorithm, Math. Programming 1976,
    takes such steps)."""
    size = gram.shape[0]
    support = tf.cast(weights > 0, gram.dtype)
    system = tf.concat([
        tf.concat([gram * (support[:, None] * support[None, :])
                   + tf.linalg.diag(1.0 - support), support[:, None]], axis=1),
        tf.concat([support, tf.zeros((1,), gram.dtype)], axis=0)[None, :],
    ], axis=0)
    face = pinv_solve(system, tf.one_hot(size, size + 1, dtype=gram.dtype))[:size]
    face *= support
    inside = tf.reduce_min(face) >= -1e-4
    face = tf.maximum(face, 0.0)
    face = tf.math.divide_no_nan(face, tf.reduce_sum(face))
    better = (inside & (tf.reduce_sum(face) > 0)
              & (_quadratic(gram, face) <= _quadratic(gram, weights)))
    return tf.where(better, face, weights)


def pinv_solve(matrix, rhs):
    """Minimum-norm least-squares solution of `matrix @ x = rhs` through the
    SVD pseudo-inverse (`tf.linalg.pinv`): defined for a singular matrix, where
    `tf.linalg.solve` raises on CPU."""
    return tf.linalg.matvec(tf.linalg.pinv(matrix), rhs)


# Newton step sizes tried in parallel at each iteration of `alpha_fair_weights`,
# besides the damped one.
NEWTON_STEP_SIZES = (1.0, 0.5, 0.25, 0.1)
# Bounds of the weights of `alpha_fair_weights` for gradients normalized to a
# largest norm of 1: the upper one is reached only when 0 is (nearly) a
# positive combination of the gradients.
MAX_FAIR_WEIGHT = 1e8


def alpha_fair_weights(gram, mask, alpha=1.0, iterations=20):
    """The weights `w > 0` with `(G G^T w)_t = w_t^(-1 / alpha)` for every
    labelled task: the direction `d = sum_t w_t g_t` maximizes the alpha-fair
    utility `sum_t u_alpha(g_t . d)` over a ball (Ban and Ji, ICML 2024,
    arXiv:2402.15638, Sec. 4; `alpha = 1` is Nash-MTL's `w_t (G G^T w)_t = 1`).

    The weights are the unique minimizer of the strictly convex
    `f(w) = w^T A w / 2 + sum_t phi(w_t)` (`A = G G^T`) with
    `phi(w) = -log w` (alpha = 1) or `-w^p / p`, `p = 1 - 1 / alpha`, whose
    gradient is `A w - w^(-1 / alpha)`. Each Newton step (Hessian
    `A + diag(w^(-1 / alpha - 1) / alpha)`, solved through `tf.linalg.eigh`,
    always defined) tries the full, halved, quartered and tenth steps, the
    damped step `1 / (1 + lambda)` (`lambda` the Newton decrement; `f` is
    self-concordant for alpha = 1, so that step is always feasible and
    converges from any start, Nesterov & Nemirovski) and, for alpha != 1, 0.99
    of the step to the boundary `w = 0`, in parallel, and keeps the one of
    least `f` (+inf outside `w > 0`). The solve runs in float64 on the Gram
    matrix divided by the largest labelled squared norm `s`, whose solution
    `w'` gives `w = w' s^(-alpha / (1 + alpha))`. The start, the minimizer
    of `f` along `w_t = k A_tt^(-alpha / (1 + alpha))`, is the solution when
    the gradients are orthogonal.

    Twenty iterations solve random problems with alpha in [0.25, 5] to a
    relative residual below 1e-7 (1e-9 up to alpha = 2; 150 problems
    per alpha, T = 2..8, with conflicts). Beyond that range, some problems
    were not solved in 20 iterations, and the solution can have weights below
    1e-8 (alpha large: tasks nearly left out, as in MGDA) or above 1e8 (alpha
    small) of the normalized problem, where they are clipped. A task
    that is unlabelled or whose gradient is 0 gets the decoupled equation
    `w_t = 1` in the solve and weight 0. When 0 is a positive combination of
    the gradients there is no solution and the weights grow along that
    combination, up to `MAX_FAIR_WEIGHT` (normalized problem).

    Args:
        gram: `(T, T)` Gram matrix `G G^T`.
        mask: `(T,)` 0/1 floats.
        alpha: float > 0, the fairness exponent (a Python number: it selects
            the graph).
        iterations: int, Newton steps.

    Returns:
        `(T,)` weights, in `gram`'s dtype.
    """
    alpha = float(alpha)
    dtype = gram.dtype
    gram = gram * (mask[:, None] * mask[None, :])
    gram, scale = normalized_gram(gram, mask)
    gram, mask = tf.cast(gram, tf.float64), tf.cast(mask, tf.float64)
    diag = tf.linalg.diag_part(gram)
    active = mask * tf.cast(diag > TINY, tf.float64)
    # Inactive tasks get the decoupled equation w_t = 1.
    system = gram * (active[:, None] * active[None, :]) + tf.linalg.diag(1.0 - active)
    size = tf.cast(gram.shape[0], tf.float64)
    exponent = alpha / (1.0 + alpha)
    if alpha == 1.0:
        start = tf.math.rsqrt(tf.linalg.diag_part(system))
    else:
        start = tf.linalg.diag_part(system) ** -exponent
    curvature = tf.reduce_sum(start * tf.linalg.matvec(system, start))
    # f(k start) is least at k^(1 + 1/alpha) = sum_t start_t^p / curvature.
    safe = tf.maximum(curvature, TINY)
    if alpha == 1.0:
        factor = tf.sqrt(size / safe)
    else:
        factor = (tf.reduce_sum(start ** (1.0 - 1.0 / alpha)) / safe) ** exponent
    start *= tf.where(curvature > TINY, factor, tf.ones_like(curvature))
    steps = tf.constant(NEWTON_STEP_SIZES, tf.float64)
    infinity = tf.constant(float("inf"), tf.float64)

    def barrier(weights):  # sum_t phi(w_t), for w > 0
        if alpha == 1.0:
            return -tf.reduce_sum(tf.math.log(tf.maximum(weights, 1e-300)), axis=-1)
        power = 1.0 - 1.0 / alpha
        return -tf.reduce_sum(tf.maximum(weights, 1e-300) ** power, axis=-1) / power

    def objective(weights):  # f at each row of `weights`; +inf outside w > 0
        value = 0.5 * tf.reduce_sum(weights * tf.matmul(weights, system), axis=-1)
        value += barrier(weights)
        return tf.where(tf.reduce_all(weights > 0, axis=-1), value,
                        tf.fill(tf.shape(value), infinity))

    def step(weights):
        if alpha == 1.0:
            grad = tf.linalg.matvec(system, weights) - 1.0 / weights
            curvatures = weights ** -2
        else:
            grad = tf.linalg.matvec(system, weights) - weights ** (-1.0 / alpha)
            curvatures = weights ** (-1.0 / alpha - 1.0) / alpha
        values, vectors = tf.linalg.eigh(system + tf.linalg.diag(curvatures))
        newton = -tf.linalg.matvec(vectors, tf.linalg.matvec(
            vectors, grad, transpose_a=True) / tf.maximum(values, 1e-300))
        decrement = tf.sqrt(tf.maximum(-tf.reduce_sum(grad * newton), 0.0))
        sizes = [steps, [1.0 / (1.0 + decrement)]]
        if alpha != 1.0:  # f is not self-concordant: stay inside w > 0
            to_boundary = tf.reduce_min(tf.where(
                newton < 0, weights / tf.maximum(-newton, 1e-300),
                tf.fill(tf.shape(weights), infinity)))
            sizes.append([tf.minimum(0.99 * to_boundary, 1.0)])
        sizes = tf.concat(sizes, axis=0)
        candidates = weights[None, :] + sizes[:, None] * newton[None, :]
        values = objective(candidates)
        index = tf.argmin(values)
        best = candidates[index]
        accept = tf.math.is_finite(values[index]) & tf.reduce_all(best > 0)
        best = tf.clip_by_value(best, 1.0 / MAX_FAIR_WEIGHT, MAX_FAIR_WEIGHT)
        return (tf.where(accept, best, weights),)

    (weights,) = fixed_loop(step, (start,), iterations)
    # w' solved A / s; w' s^(-alpha / (1 + alpha)) solves A.
    if alpha == 1.0:
        return tf.cast(weights * active, dtype) * tf.math.rsqrt(scale)
    return tf.cast(weights * active, dtype) * scale ** -exponent


def clip_direction(direction, weights, max_norm):
    """Scales the direction, and the weights that made it, down to norm
    `max_norm` when it is longer (Nash-MTL's and FairGrad's clipping of the
    shared update); unchanged when `max_norm` is 0 or None.

    Args:
        direction: `(parameters,)`.
        weights: `(tasks,)`, with `direction = weights @ G`.
        max_norm: float >= 0 or None.

    Returns:
        `(direction, weights)`, both scaled by `min(1, max_norm / ||direction||)`.
    """
    if not max_norm:
        return direction, weights
    norm = tf.norm(direction)
    factor = tf.where(norm > max_norm, max_norm / norm, tf.ones_like(norm))
    return direction * factor, weights * factor


def solver_arguments(max_norm, iterations):
    """Nash-MTL's and FairGrad's `max_norm` (None: 0, no clipping) and solver
    `iterations`, checked.

    Returns:
        `(max_norm, iterations)` as `(float, int)`.

    Raises:
        ValueError: a negative `max_norm` or `iterations`.
    """
    max_norm = 0.0 if max_norm is None else float(max_norm)
    if not max_norm >= 0:
        raise ValueError(f"max_norm must be >= 0 (0: no clipping). Received: "
                         f"max_norm={max_norm}")
    if int(iterations) < 0:
        raise ValueError(f"iterations must be >= 0. Received: "
                         f"iterations={iterations}")
    return max_norm, int(iterations)
