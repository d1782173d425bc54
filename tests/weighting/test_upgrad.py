"""UPGrad (Quinton and Rey, arXiv:2406.16232): the two-task closed form, cases
solved by hand, the dual-cone property (no task's loss increases to first
order) on random and strongly conflicting gradients, an exhaustive active-set
reference, masking, the compiled graph (XLA too), and a fit with representation
gradients. The common checks are in `test_registered_weightings.py`."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from test_fairgrad import fit_with_representation_gradients
from test_gradient_methods import _aggregate
from test_gradient_methods import _built
from test_gradient_methods import _random_gradients

import kmtl
from kmtl.errors import ConfigError
from kmtl.weighting.upgrad import UPGrad

EXACT = UPGrad(reg_eps=0.0)
THREE = [[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0]]


def _conflicting(tasks, seed, size=12):
    """Random gradients, every other one pulled against the first."""
    gradients = _random_gradients(tasks, size, seed)
    gradients[1::2] = -0.8 * gradients[0] + 0.3 * gradients[1::2]
    return gradients


def _reference(gradients, reg_eps=1e-4, norm_eps=1e-4):
    """UPGrad's weights by enumerating the active sets of each QP
    `min v^T H v, v >= u_i` (H the trace-normalized, regularized Gram
    matrix): the set whose solution meets the KKT conditions."""
    gram = np.asarray(gradients, "float64") @ np.asarray(gradients, "float64").T
    size = len(gram)
    trace = np.trace(gram)
    gram = (gram / trace if trace >= norm_eps else 0 * gram) + reg_eps * np.eye(size)
    weights = np.zeros(size)
    for i in range(size):
        u = np.eye(size)[i] / size
        found = []
        for count in range(size + 1):
            for free in map(list, itertools.combinations(range(size), count)):
                slack = np.zeros(size)
                if free:
                    slack[free] = np.linalg.solve(gram[np.ix_(free, free)],
                                                  -(gram @ u)[free])
                multipliers = gram @ (u + slack)
                if slack.min() >= -1e-12 and multipliers.min() >= -1e-10:
                    found.append(u + slack)
        assert found, "no KKT point"
        weights += found[0]
    return weights


def test_two_tasks_is_the_closed_form():
    for seed in range(6):
        g1, g2 = _random_gradients(2, size=5, seed=seed).astype("float64")
        if seed % 2:
            g2 = -g1 + 0.5 * g2
        dot = g1 @ g2
        expected = (np.full(2, 0.5) if dot >= 0 else
                    0.5 * np.array([1 - dot / (g1 @ g1), 1 - dot / (g2 @ g2)]))
        _, weights = _aggregate(_built(EXACT, 2), [g1, g2])
        np.testing.assert_allclose(weights, expected, rtol=1e-5)


def test_pcgrad_case_by_hand():
    # g1 = (1, 0), g2 = (-1, 1): UPGrad = PCGrad's two projections, halved.
    gradients = [[1.0, 0.0], [-1.0, 1.0]]
    direction, weights = _aggregate(_built(EXACT, 2), gradients)
    np.testing.assert_allclose(weights, [1.0, 0.75], rtol=1e-6)
    np.testing.assert_allclose(direction, [0.25, 0.75], rtol=1e-6)
    direction, weights = _aggregate(_built("upgrad", 2), gradients)  # reg_eps 1e-4
    np.testing.assert_allclose(weights, [0.99985, 0.749963], rtol=1e-5)
    np.testing.assert_allclose(direction, [0.249888, 0.749963], rtol=1e-5)


def test_three_tasks_by_hand_and_masked():
    direction, weights = _aggregate(_built(EXACT), THREE)
    np.testing.assert_allclose(weights, [1.0, 8 / 9, 11 / 18], rtol=1e-6)
    np.testing.assert_allclose(direction, [1 / 9, 5 / 18, 11 / 18], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(THREE) @ direction, [1 / 9, 1 / 6, 1 / 3],
                               rtol=1e-5)
    # The third task unlabelled: the two-task case on the first two rows.
    direction, weights = _aggregate(_built(EXACT), THREE, [True, True, False])
    np.testing.assert_allclose(weights, [1.0, 0.75, 0.0], rtol=1e-6)
    np.testing.assert_allclose(direction, [0.25, 0.75, 0.0], rtol=1e-6, atol=1e-7)


def test_agreeing_gradients_give_their_mean():
    direction, weights = _aggregate(_built("upgrad", 2), [[3.0, 4.0], [1.0, 0.0]])
    np.testing.assert_allclose(weights, [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(direction, [2.0, 2.0], rtol=1e-6)


def test_tiny_gradients_give_the_mean():
    # trace(G G^T) = 2.5e-5 < norm_eps: no projection (TorchJD's normalization).
    direction, weights = _aggregate(_built("upgrad", 2), [[3e-3, 0.0], [-3e-3, 4e-3]])
    np.testing.assert_allclose(weights, [0.5, 0.5], rtol=1e-6)


@pytest.mark.parametrize("tasks", range(2, 9))
def test_no_task_loss_increases(tasks):
    """`g_t . d >= 0` for every task (`d` in the dual cone) without
    regularization; with it, the KKT conditions give
    `(G G^T / trace + reg_eps I) w >= 0`, i.e. `g_t . d >= -reg_eps w_t trace`."""
    step, exact = (tf.function(_built(w, tasks).aggregate_gradients)
                   for w in ("upgrad", EXACT))
    labelled, losses = tf.constant([True] * tasks), tf.ones((tasks,))
    for seed in range(8):
        gradients = (_conflicting(tasks, seed) if seed % 2
                     else _random_gradients(tasks, 12, seed))
        gram = gradients.astype("float64") @ gradients.astype("float64").T
        for function, reg_eps in ((step, 1e-4), (exact, 0.0)):
            direction, weights = (t.numpy() for t in function(
                tf.constant(gradients), losses, labelled))
            improvements = gradients.astype("float64") @ direction
            assert (weights >= 1 / tasks - 1e-6).all()
            bound = -(reg_eps * weights + 1e-6) * np.trace(gram)
            assert (improvements >= bound).all(), (seed, improvements, bound)


@pytest.mark.parametrize("tasks", [3, 4, 5])
def test_matches_the_exhaustive_active_set_reference(tasks):
    for seed in range(4):
        gradients = _conflicting(tasks, 20 + seed, size=6)
        _, weights = _aggregate(_built("upgrad", tasks), gradients)
        np.testing.assert_allclose(weights, _reference(gradients), rtol=1e-5)


def test_an_unlabelled_task_changes_nothing():
    gradients = _conflicting(4, seed=3)
    labelled = [True, False, True, True]
    direction, weights = _aggregate(_built("upgrad", 4), gradients, labelled)
    alone, alone_weights = _aggregate(_built("upgrad", 3), gradients[[0, 2, 3]])
    assert weights[1] == 0.0
    np.testing.assert_allclose(weights[[0, 2, 3]], alone_weights, rtol=1e-5)
    np.testing.assert_allclose(direction, alone, rtol=1e-5, atol=1e-6)
    direction, weights = _aggregate(_built("upgrad", 4), gradients, [False] * 4)
    np.testing.assert_array_equal(weights, 0.0)
    np.testing.assert_array_equal(direction, 0.0)


def test_degenerate_gradients_stay_finite():
    g, h = _random_gradients(tasks=2, size=10, seed=12)
    for gradients in ([g, -g, h], [g, g, h], [g, np.zeros_like(g), h]):
        for weighting in ("upgrad", EXACT):
            direction, weights = _aggregate(_built(weighting), gradients)
            assert np.isfinite(direction).all() and np.isfinite(weights).all()
    # g and -g: the dual cone is the plane orthogonal to g.
    direction, _ = _aggregate(_built(EXACT), [g, -g, h])
    assert abs(direction @ g) <= 1e-5 * np.linalg.norm(g) * np.linalg.norm(direction)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_runs_in_a_compiled_graph(jit_compile):
    gradients = tf.constant(_conflicting(3, seed=11, size=1000))
    args = (gradients, tf.constant([0.5, 1.5, 1.0]), tf.constant([True, True, True]))
    step = tf.function(_built("upgrad").aggregate_gradients, jit_compile=jit_compile)
    direction, weights = step(*args)
    expected, expected_weights = _built("upgrad").aggregate_gradients(*args)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-6)
    # XLA sums the (T, P) product in another order (float32).
    np.testing.assert_allclose(direction, expected, rtol=1e-5, atol=1e-6)


def test_config_and_bad_arguments():
    weighting = kmtl.weighting.get("upgrad(norm_eps=0, reg_eps=1e-3, iterations=9)")
    assert (weighting.norm_eps, weighting.reg_eps, weighting.iterations) == (
        0.0, 1e-3, 9)
    clone = kmtl.weighting.deserialize(kmtl.weighting.serialize(weighting))
    assert isinstance(clone, UPGrad) and clone.get_config() == weighting.get_config()
    for spec, key in (("upgrad(reg_eps=-1)", "reg_eps"),
                      ("upgrad(norm_eps=-0.1)", "norm_eps"),
                      ("upgrad(iterations=-1)", "iterations")):
        with pytest.raises(ConfigError, match=key):
            kmtl.weighting.get(spec)


def test_fits_with_representation_gradients():
    fit_with_representation_gradients("upgrad")
