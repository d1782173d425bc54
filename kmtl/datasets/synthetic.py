"""Synthetic regression tasks whose correlation is set by hand (Ma et al., KDD 2018).

The MMoE paper's control experiment: two regression tasks on the same inputs,
whose relatedness is one number, the cosine `p` between their weight vectors.
"""

import numpy as np
import pandas as pd

from kmtl._checks import check_float
from kmtl.tasks import Task

SYNTHETIC_TARGETS = ("y1", "y2")
"""The label columns of `make_synthetic_tasks`."""


def synthetic_feature_names(num_features=100):
    """The feature columns of `make_synthetic_tasks`.

    Args:
        num_features: int, default 100. The number of input columns.

    Returns:
        list of str: `["x0", "x1", ..., f"x{num_features - 1}"]`.
    """
    return [f"x{i}" for i in range(num_features)]


def synthetic_tasks():
    """The two regression tasks of `make_synthetic_tasks`.

    Returns:
        list of two unfitted `kmtl.Task`s of type `"regression"`, on the
        columns `y1` and `y2`.
    """
    return [Task(name, "regression") for name in SYNTHETIC_TARGETS]


def _check(condition, message, **received):
    if not condition:
        shown = ", ".join(f"{k}={v!r}" for k, v in received.items())
        raise ValueError(f"{message} Received: {shown}")


def make_synthetic_tasks(num_samples=10000, num_features=100, correlation=0.5,
                         num_sinusoids=10, scale=1.0, noise_std=0.01, seed=0,
                         return_weights=False):
    """Two regression tasks with task correlation `correlation`.

    Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018, the synthetic data of
    the paper's preliminary section, with `c = scale`, `p = correlation`,
    `d = num_features` and `m = num_sinusoids`:

    1. `u1`, `u2`: orthogonal unit vectors in `R^d` (here the QR factor of a
       `(d, 2)` standard normal matrix);
    2. `w1 = c u1`, `w2 = c (p u1 + sqrt(1 - p^2) u2)`, so `w1 . w2 = p c^2` and
       `cos(w1, w2) = p`;
    3. `x ~ N(0, I_d)`;
    4. `y_i = w_i^T x + sum_{j=1..m} sin(alpha_j w_i^T x + beta_j) + eps_i`, with
       the same `alpha_j`, `beta_j` for both tasks and `eps_i ~ N(0, noise_std^2)`.

    Since `|w1| = |w2| = c`, the linear parts `w1^T x` and `w2^T x` are jointly
    normal with Pearson correlation exactly `p`; the sinusoids make the labels'
    own correlation lower than `p` (but still falling with `p`).

    What the paper leaves open, and the choice made here: the paper does not
    give `alpha_j` and `beta_j` (Google Research's generator for this procedure
    says so too and picks `alpha_j = j`, `beta_j = (j-1)^2`); here they are drawn
    from `N(0, 1)`, once per seed. The paper writes the noise as `N(0, 0.01)`,
    which reads as variance 0.01 or as standard deviation 0.01; the default
    `noise_std=0.01` follows Google Research's reading. `d = 100` and `m = 10`
    are the values quoted for the paper by third-party reproductions; the paper
    text itself was not available to check them.

    Draws are independent of `correlation`: with the same `seed`, every
    correlation gives the same `x`, `u1`, `u2`, `alpha`, `beta` and noise (so the
    same `y1`), and only `w2` changes. A larger `num_samples` extends the rows of
    a smaller one.

    Args:
        num_samples: int, default 10000. Rows.
        num_features: int >= 2, default 100. Input dimension `d`.
        correlation: float in [-1, 1], default 0.5. Task correlation `p`.
        num_sinusoids: int >= 0, default 10. Number `m` of sine terms.
        scale: float > 0, default 1.0. Scale `c` of the weight vectors.
        noise_std: float >= 0, default 0.01. Standard deviation of the label
            noise.
        seed: int, default 0.
        return_weights: bool, default False. Also return the generating
            parameters.

    Returns:
        A DataFrame with float columns `x0 ... x{d-1}` (features) and `y1`, `y2`
        (targets of `synthetic_tasks()`: `Task("y1", "regression")`,
        `Task("y2", "regression")`). With `return_weights=True`, a pair
        `(frame, weights)` with `weights` a dict of numpy arrays `w1`, `w2`
        (`(d,)`), `alpha`, `beta` (`(m,)`).

    Raises:
        ValueError: an argument outside its range.

    Examples:
        >>> frame, weights = make_synthetic_tasks(1000, correlation=0.9,
        ...                                       return_weights=True)
        >>> frame.shape, round(float(weights["w1"] @ weights["w2"]), 6)
        ((1000, 102), 0.9)
    """
    _check(isinstance(num_samples, int) and num_samples >= 1,
           "num_samples must be a positive integer.", num_samples=num_samples)
    _check(isinstance(num_features, int) and num_features >= 2,
           "num_features must be an integer >= 2 (two orthogonal directions).",
           num_features=num_features)
    check_float(correlation, "correlation", -1.0, 1.0)
    _check(isinstance(num_sinusoids, int) and num_sinusoids >= 0,
           "num_sinusoids must be an integer >= 0.", num_sinusoids=num_sinusoids)
    check_float(scale, "scale", 0.0, low_open=True)
    check_float(noise_std, "noise_std", 0.0)

    # One independent stream per quantity, so that none depends on the others'
    # sizes or on the correlation.
    basis_rng, sine_rng, input_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    basis, _ = np.linalg.qr(basis_rng.standard_normal((num_features, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    alpha = sine_rng.standard_normal(num_sinusoids)
    beta = sine_rng.standard_normal(num_sinusoids)
    x = input_rng.standard_normal((num_samples, num_features))
    noise = noise_rng.standard_normal((num_samples, 2)) * noise_std

    p = float(correlation)
    w1 = scale * u1
    w2 = scale * (p * u1 + np.sqrt(1.0 - p * p) * u2)
    frame = pd.DataFrame(x, columns=synthetic_feature_names(num_features))
    for i, (name, w) in enumerate(zip(SYNTHETIC_TARGETS, (w1, w2))):
        linear = x @ w
        sines = np.sin(linear[:, None] * alpha + beta).sum(axis=1)
        frame[name] = linear + sines + noise[:, i]
    if return_weights:
        return frame, {"w1": w1, "w2": w2, "alpha": alpha, "beta": beta}
    return frame
