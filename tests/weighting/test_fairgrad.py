"""FairGrad (Ban and Ji, ICML 2024): the alpha-fair weights on cases solved by
hand (orthogonal and symmetric gradients), the optimality condition
`(G G^T w)_t = w_t^(-1/alpha)` on random gradients, Nash-MTL's weights at
alpha = 1, masking, clipping, the compiled graph, and a fit with representation
gradients. The common checks are in `test_registered_weightings.py`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_gradient_methods import _aggregate
from test_gradient_methods import _built
from test_gradient_methods import _random_gradients

import kmtl
from kmtl.data import make_dataset
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import penguin_tasks
from kmtl.errors import ConfigError
from kmtl.features import resolve_features
from kmtl.tasks import Task
from kmtl.weighting.fairgrad import FairGrad

SQRT3 = 3 ** 0.5
# g1 . g1 = g2 . g2 = 2, g1 . g2 = 1.
SYMMETRIC = [[1.0, 1.0], [(1 + SQRT3) / 2, (1 - SQRT3) / 2]]


@pytest.mark.parametrize("alpha, weights", [
    (0.5, [4 ** -(1 / 3), 1.0]), (1.0, [0.5, 1.0]), (2.0, [4 ** (-2 / 3), 1.0])])
def test_orthogonal_gradients_by_hand(alpha, weights):
    # A = diag(4, 1): w_t = A_tt^(-alpha / (1 + alpha)), and g_t . d = w_t ||g_t||^2.
    direction, got = _aggregate(_built(FairGrad(alpha, max_norm=0.0), 2),
                                [[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(got, weights, rtol=1e-5)
    np.testing.assert_allclose(direction, [2 * weights[0], weights[1]], rtol=1e-5)


@pytest.mark.parametrize("alpha, weight", [(0.5, 0.693361), (1.0, 0.577350),
                                           (2.0, 0.480750)])
def test_symmetric_gradients_by_hand(alpha, weight):
    # A = [[2, 1], [1, 2]]: w1 = w2 = w with 3 w = w^(-1/alpha), w = 3^(-a/(1+a)).
    assert weight == pytest.approx(3 ** (-alpha / (1 + alpha)), rel=1e-6)
    direction, got = _aggregate(_built(FairGrad(alpha, max_norm=0.0), 2), SYMMETRIC)
    np.testing.assert_allclose(got, [weight, weight], rtol=1e-5)
    np.testing.assert_allclose(direction, weight * np.sum(SYMMETRIC, axis=0),
                               rtol=1e-5)


def test_max_norm_clips_the_direction():
    # alpha = 1: ||d||^2 = sum_t w_t (A w)_t = T = 2; clipped to norm 1.
    direction, weights = _aggregate(_built("fairgrad(alpha=1.0)", 2), SYMMETRIC)
    np.testing.assert_allclose(direction, np.array([1.366025, 0.366025]) / 2 ** 0.5,
                               rtol=1e-5)
    np.testing.assert_allclose(weights, 0.577350 / 2 ** 0.5, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 4.0])
def test_weights_solve_the_alpha_fair_condition(alpha):
    for seed, tasks in ((0, 2), (1, 3), (2, 5), (3, 8)):
        gradients = _random_gradients(tasks, size=12, seed=seed)
        gradients[1] = -0.6 * gradients[0] + 0.4 * gradients[1]  # a conflict
        _, weights = _aggregate(_built(FairGrad(alpha, max_norm=0.0), tasks),
                                gradients)
        gram = gradients.astype("float64") @ gradients.astype("float64").T
        assert (weights > 0).all()
        # (A w)_t = w_t^(-1/alpha), i.e. w_t (A w)_t^alpha = 1.
        np.testing.assert_allclose(weights * (gram @ weights) ** alpha, 1.0,
                                   rtol=1e-4)


def test_alpha_one_gives_the_nash_mtl_weights():
    gradients = _random_gradients(4, size=10, seed=5)
    _, fair = _aggregate(_built(FairGrad(1.0, max_norm=0.0), 4), gradients)
    _, nash = _aggregate(_built("nash_mtl(max_norm=0)", 4), gradients)
    np.testing.assert_allclose(fair, nash, rtol=1e-6)


@pytest.mark.parametrize("labelled", [[True, False, True], [False, True, True]])
def test_masked_call_is_the_call_on_the_labelled_tasks(labelled):
    gradients = _random_gradients(seed=9)  # the unlabelled row is not zero
    keep = np.flatnonzero(labelled)
    direction, weights = _aggregate(_built(FairGrad(2.0, max_norm=0.0)), gradients,
                                    labelled)
    alone, alone_weights = _aggregate(_built(FairGrad(2.0, max_norm=0.0), 2),
                                      gradients[keep])
    assert weights[~np.asarray(labelled)] == 0.0
    np.testing.assert_allclose(weights[keep], alone_weights, rtol=1e-5)
    np.testing.assert_allclose(direction, alone, rtol=1e-5, atol=1e-6)
    direction, weights = _aggregate(_built("fairgrad"), gradients, [False] * 3)
    np.testing.assert_array_equal(weights, 0.0)
    np.testing.assert_array_equal(direction, 0.0)


def test_opposite_gradients_stay_finite_and_clipped():
    g, h = _random_gradients(tasks=2, size=10, seed=12)
    direction, weights = _aggregate(_built("fairgrad"), [g, -g, h])
    assert np.isfinite(direction).all() and np.isfinite(weights).all()
    assert np.linalg.norm(direction) <= 1.0 + 1e-5


@pytest.mark.parametrize("jit_compile", [False, True])
def test_runs_in_a_compiled_graph(jit_compile):
    gradients = tf.constant(_random_gradients(size=1000, seed=11))
    args = (gradients, tf.constant([0.5, 1.5, 1.0]), tf.constant([True, True, True]))
    graph = tf.function(_built("fairgrad").aggregate_gradients,
                        jit_compile=jit_compile)
    for got, want in zip(graph(*args), _built("fairgrad").aggregate_gradients(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_config_and_bad_arguments():
    weighting = kmtl.weighting.get("fairgrad(alpha=0.5, max_norm=0, iterations=30)")
    assert (weighting.alpha, weighting.max_norm, weighting.iterations) == (0.5, 0.0, 30)
    clone = kmtl.weighting.deserialize(kmtl.weighting.serialize(weighting))
    assert isinstance(clone, FairGrad) and clone.get_config() == weighting.get_config()
    assert kmtl.weighting.get("fairgrad").alpha == 2.0
    for spec in ("fairgrad(alpha=0)", "fairgrad(alpha=-1.0)"):
        with pytest.raises(ConfigError, match="alpha"):
            kmtl.weighting.get(spec)
    with pytest.raises(ConfigError, match="max_norm"):
        kmtl.weighting.get("fairgrad(max_norm=-1)")


def fit_with_representation_gradients(weighting):
    """One epoch of a shared-bottom penguin model (3 tasks) whose gradient
    method gets the task gradients of the shared representation; the
    history."""
    frame = kmtl.datasets.load_penguins().dropna().reset_index(drop=True)
    tasks = [Task(t.name, t.type, positive=t.positive, metrics=[])
             for t in penguin_tasks()]
    features = resolve_features(frame, numeric=PENGUIN_FEATURES["numeric"])
    for item in [*tasks, *features]:
        item.fit(frame)
    keras.utils.set_random_seed(1)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,),
                             tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.02), weighting=weighting,
                  gradients="representation")
    data = make_dataset(frame, features, tasks, 64, drop_remainder=True)
    history = model.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    for task in tasks:
        assert np.isfinite(history[f"{task.name}_weight"]).all()
        assert history[f"{task.name}_weight"][0] > 0
    return history


def test_fits_with_representation_gradients():
    fit_with_representation_gradients("fairgrad")
