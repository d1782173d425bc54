"""CrossStitch: shapes, weight count, the initial cross-stitch matrices, the
mixing against hand-computed numbers and the formula, diagnostics, config round
trip, and alpha learning inside a MultiTaskModel."""

import keras
import numpy as np
import pytest
from helpers import assert_config_round_trip
from helpers import fitted_penguins
from helpers import random_inputs
from helpers import relu
from helpers import to_numpy
from helpers import trainable_count

import kmtl
from kmtl.architectures import CrossStitch
from kmtl.data import make_dataset

D_IN = 5


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_shapes_and_weight_count(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = CrossStitch(names, units=(8, 4))
    out = layer(random_inputs())
    assert list(out) == names
    assert all(tuple(v.shape) == (7, 4) for v in out.values())
    # towers: num_tasks * (5 * 8 + 8 + 8 * 4 + 4); units: 2 layers * num_tasks^2.
    assert trainable_count(layer) == num_tasks * 84 + 2 * num_tasks**2
    assert trainable_count(layer) == {1: 86, 2: 176, 5: 470}[num_tasks]
    assert layer.compute_output_shape((None, D_IN)) == {n: (None, 4) for n in names}


@pytest.mark.parametrize("num_tasks, self_weight, other", [
    (1, 0.9, None), (2, 0.9, 0.1), (5, 0.9, 0.025), (3, 0.6, 0.2)])
def test_initial_cross_stitch_matrices(num_tasks, self_weight, other):
    layer = CrossStitch([f"t{i}" for i in range(num_tasks)], units=(3, 2),
                        self_weight=self_weight)
    layer.build((None, D_IN))
    if num_tasks == 1:
        expected = [[1.0]]
    else:
        expected = np.full((num_tasks, num_tasks), other)
        np.fill_diagonal(expected, self_weight)
    for alpha in layer.alphas:
        np.testing.assert_allclose(to_numpy(alpha), expected, rtol=1e-6)
        np.testing.assert_allclose(to_numpy(alpha).sum(axis=1), 1.0, rtol=1e-6)


def test_mixing_equals_the_hand_computed_value():
    """Linear towers, tower t's layer-0 kernel (t + 1) I, biases 0:
    layer 0: h_a = x, h_b = 2x; alpha_0 = [[.5, .5], [.25, .75]] gives
    a: 1.5x, b: 1.75x. Layer 1 kernels I and 2I: a: 1.5x, b: 3.5x;
    alpha_1 = [[1, 0], [-1, 1]] gives a: 1.5x, b: 2x."""
    layer = CrossStitch(["a", "b"], units=(2, 2), activation="linear")
    layer.build((None, 2))
    eye = np.eye(2)
    layer.set_weights([
        np.stack([eye, 2 * eye]), np.zeros((2, 2)),
        np.stack([eye, 2 * eye]), np.zeros((2, 2)),
        np.array([[0.5, 0.5], [0.25, 0.75]]),
        np.array([[1.0, 0.0], [-1.0, 1.0]]),
    ])
    out = layer(np.array([[1.0, -2.0], [4.0, 0.0]], "float32"))
    np.testing.assert_allclose(to_numpy(out["a"]), [[1.5, -3.0], [6.0, 0.0]],
                               rtol=1e-6)
    np.testing.assert_allclose(to_numpy(out["b"]), [[2.0, -4.0], [8.0, 0.0]],
                               rtol=1e-6)


def test_values_match_the_paper_formula():
    """x~_t = sum_s alpha[t, s] relu(x_s W_s + b_s) after every layer."""
    names = ["a", "b", "c"]
    layer = CrossStitch(names, units=(6, 3))
    layer.build((None, D_IN))
    rng = np.random.default_rng(1)
    layer.alphas[0].assign(rng.normal(size=(3, 3)))
    layer.alphas[1].assign(rng.normal(size=(3, 3)))
    layer.biases[0].assign(rng.normal(size=(3, 6)))
    x = random_inputs()
    out = layer(x)
    k0, b0, k1, b1, a0, a1 = (to_numpy(w) for w in layer.weights)
    h = [relu(x @ k0[t] + b0[t]) for t in range(3)]
    h = [sum(a0[t, s] * h[s] for s in range(3)) for t in range(3)]
    h = [relu(h[t] @ k1[t] + b1[t]) for t in range(3)]
    h = [sum(a1[t, s] * h[s] for s in range(3)) for t in range(3)]
    for t, name in enumerate(names):
        np.testing.assert_allclose(to_numpy(out[name]), h[t], rtol=1e-5, atol=1e-5)


def test_identity_units_leave_the_towers_independent():
    layer = CrossStitch(["a", "b"], units=(4,), self_weight=1.0)
    x = random_inputs()
    out = layer(x)
    kernel, bias, alpha = (to_numpy(w) for w in layer.weights)
    np.testing.assert_array_equal(alpha, np.eye(2))
    for t, name in enumerate(["a", "b"]):
        np.testing.assert_allclose(to_numpy(out[name]), relu(x @ kernel[t] + bias[t]),
                                   rtol=1e-5, atol=1e-6)


def test_diagnostics_are_the_cross_stitch_matrices():
    layer = CrossStitch(["a", "b", "c"], units=(4, 2))
    layer(random_inputs())
    layer.alphas[1].assign(np.arange(9.0).reshape(3, 3))
    diagnostics = layer.diagnostics(random_inputs())
    assert sorted(diagnostics) == ["cross_stitch_0", "cross_stitch_1"]
    for i, key in enumerate(["cross_stitch_0", "cross_stitch_1"]):
        matrix, rows, columns = diagnostics[key]
        assert rows == columns == ["a", "b", "c"]
        np.testing.assert_array_equal(to_numpy(matrix), to_numpy(layer.alphas[i]))
    np.testing.assert_array_equal(to_numpy(diagnostics["cross_stitch_1"][0]),
                                  np.arange(9.0).reshape(3, 3))


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_config_round_trip(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = CrossStitch(names, units=(8, 4), activation="tanh", dropout=0.2,
                        self_weight=0.7, kernel_regularizer="l2", name="arch")
    x = random_inputs()
    layer(x)
    layer.alphas[0].assign(np.random.default_rng(2).normal(
        size=(num_tasks, num_tasks)))
    assert layer.get_config()["self_weight"] == 0.7
    assert_config_round_trip(layer, x)


@pytest.mark.parametrize("self_weight", [-0.1, 1.5])
def test_bad_self_weight(self_weight):
    with pytest.raises(ValueError, match=f"self_weight={self_weight}"):
        CrossStitch(["a", "b"], self_weight=self_weight)


def test_alpha_is_learned_in_a_model():
    frame, features, tasks = fitted_penguins(rows=64)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "cross_stitch", tower_units=(4,),
                             units=(6, 4))
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    layer = model.get_layer("cross_stitch")
    start = [to_numpy(a) for a in layer.alphas]
    history = model.fit(make_dataset(frame, features, tasks, 64), verbose=0,
                        shuffle=False).history
    assert "sharing_penalty" not in history
    for before, alpha in zip(start, layer.alphas):
        change = np.abs(to_numpy(alpha) - before)
        # Every entry, off-diagonal ones included, gets a gradient.
        assert np.all(change > 0)
