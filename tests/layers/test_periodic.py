"""Tests for `kmtl.layers.PeriodicEmbedding`, the periodic ("PLR") embedding of
Gorishniy, Rubachev and Babenko (NeurIPS 2022)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_export_serves
from helpers import assert_same_under_xla

from kmtl.layers import PeriodicEmbedding


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def periodic_reference(layer, x, activation=lambda v: np.maximum(v, 0.0)):
    """The paper's formula in float64 numpy, with the layer's weights."""
    coefficients = _numpy(layer.coefficients).astype("float64")
    kernel = _numpy(layer.kernel).astype("float64")
    bias = _numpy(layer.bias).astype("float64")
    angles = 2 * math.pi * coefficients[None] * np.asarray(x, "float64")[:, :, None]
    periodic = np.concatenate([np.cos(angles), np.sin(angles)], axis=-1)
    if layer.lite:
        outputs = periodic @ kernel + bias
    else:
        outputs = np.einsum("bnf,nfd->bnd", periodic, kernel) + bias
    return activation(outputs).reshape(len(x), -1)


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def test_defaults_follow_the_authors_package():
    layer = PeriodicEmbedding(2)
    assert (layer.frequencies, layer.sigma, layer.output_dim) == (48, 0.01, 24)
    assert not layer.lite
    assert layer(np.zeros((3, 2), "float32")).shape == (3, 48)


@pytest.mark.parametrize("lite", [False, True])
def test_shapes_and_weight_count(lite):
    n, k, d = 3, 5, 4
    layer = PeriodicEmbedding(n, frequencies=k, output_dim=d, lite=lite, seed=0)
    out = layer(np.zeros((7, n), "float32"))
    assert out.shape == (7, n * d)
    assert layer.compute_output_shape((None, n)) == (None, n * d)
    shapes = [tuple(w.shape) for w in layer.trainable_weights]
    if lite:
        assert shapes == [(n, k), (2 * k, d), (d,)]
        assert layer.count_params() == n * k + 2 * k * d + d
    else:
        assert shapes == [(n, k), (n, 2 * k, d), (n, d)]
        assert layer.count_params() == n * k + n * (2 * k * d + d)


@pytest.mark.parametrize("lite", [False, True])
@pytest.mark.parametrize("activation,function", [
    ("relu", lambda v: np.maximum(v, 0.0)), ("linear", lambda v: v)])
def test_matches_the_formula(lite, activation, function):
    layer = PeriodicEmbedding(4, frequencies=6, sigma=0.5, output_dim=3, lite=lite,
                              activation=activation, seed=1)
    x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    out = _numpy(layer(x))
    np.testing.assert_allclose(out, periodic_reference(layer, x, function),
                               rtol=1e-5, atol=1e-6)
    if activation == "relu":
        assert (out == 0).any() and (out > 0).any()
    else:
        assert (out < 0).any()


def test_formula_by_hand():
    # One feature, one frequency c = 0.25, x = 1: angle pi/2, so v = (cos, sin)
    # = (0, 1); with W = [[2], [3]] and b = [-1]: relu(0*2 + 1*3 - 1) = 2.
    layer = PeriodicEmbedding(1, frequencies=1, output_dim=1)
    layer.build((None, 1))
    layer.coefficients.assign([[0.25]])
    layer.kernel.assign([[[2.0], [3.0]]])
    layer.bias.assign([[-1.0]])
    out = _numpy(layer(np.float32([[1.0], [2.0], [0.0]])))
    # x = 2: angle pi, v = (-1, 0): relu(-2 - 1) = 0; x = 0: v = (1, 0): 2 - 1.
    np.testing.assert_allclose(out, [[2.0], [0.0], [1.0]], atol=1e-6)


def test_lite_shares_the_linear_layer():
    x = np.float32([[0.7, 0.7]])
    for lite, equal in [(True, True), (False, False)]:
        layer = PeriodicEmbedding(2, frequencies=4, output_dim=3, lite=lite,
                                  activation="linear", seed=2)
        layer.build((None, 2))
        # The same frequencies for both features: with a shared linear layer,
        # the same value gives the same embedding.
        row = _numpy(layer.coefficients)[0]
        layer.coefficients.assign(np.stack([row, row]))
        out = _numpy(layer(x))
        assert np.array_equal(out[0, :3], out[0, 3:]) == equal


def test_seed_reproducibility():
    def weights(seed):
        layer = PeriodicEmbedding(3, frequencies=8, output_dim=4, seed=seed)
        layer.build((None, 3))
        return [_numpy(w) for w in layer.weights]

    for a, b in zip(weights(11), weights(11)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights(11), weights(12)):
        assert not np.array_equal(a, b)
    for a, b in zip(weights(None), weights(None)):
        assert not np.array_equal(a, b)


def test_initial_weights():
    layer = PeriodicEmbedding(64, frequencies=64, sigma=0.5, output_dim=8, seed=3)
    layer.build((None, 64))
    coefficients = _numpy(layer.coefficients)
    # c ~ N(0, sigma): 4096 draws.
    assert abs(coefficients.std() - 0.5) < 0.025
    assert abs(coefficients.mean()) < 0.025
    bound = 1 / math.sqrt(2 * 64)
    for weight in (_numpy(layer.kernel), _numpy(layer.bias)):
        assert np.abs(weight).max() <= bound
        assert np.abs(weight).max() > 0.9 * bound


def test_gradients_reach_every_weight():
    layer = PeriodicEmbedding(2, frequencies=3, sigma=0.3, output_dim=2,
                              activation="linear", seed=4)
    x = tf.constant([[0.5, -1.0], [2.0, 0.3]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    for gradient in tape.gradient(loss, layer.trainable_weights):
        assert gradient is not None
        values = _numpy(gradient)
        assert np.isfinite(values).all() and np.abs(values).sum() > 0


@pytest.mark.parametrize("arguments,message", [
    ({"num_features": 0}, "num_features must be a positive integer"),
    ({"num_features": 2.0}, "num_features must be a positive integer"),
    ({"frequencies": 0}, "frequencies must be a positive integer"),
    ({"output_dim": -1}, "output_dim must be a positive integer"),
    ({"output_dim": True}, "output_dim must be a positive integer"),
    ({"sigma": 0.0}, "sigma must be a positive number"),
    ({"sigma": float("nan")}, "sigma must be a positive number"),
    ({"sigma": "0.1"}, "sigma must be a positive number"),
])
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        PeriodicEmbedding(**{"num_features": 2, **arguments})


def test_wrong_number_of_columns():
    with pytest.raises(ValueError, match="input has 3 columns but num_features=2"):
        PeriodicEmbedding(2)(np.zeros((1, 3), "float32"))


def test_config_round_trip():
    layer = PeriodicEmbedding(3, frequencies=5, sigma=0.2, output_dim=4, lite=True,
                              activation="linear", seed=9, name="periodic")
    config = layer.get_config()
    assert {key: config[key] for key in
            ("num_features", "frequencies", "sigma", "output_dim", "lite", "seed")} == {
        "num_features": 3, "frequencies": 5, "sigma": 0.2, "output_dim": 4,
        "lite": True, "seed": 9}
    clone = PeriodicEmbedding.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    # The same seed gives the same initial weights, hence the same outputs.
    np.testing.assert_array_equal(_numpy(clone(x)), _numpy(layer(x)))


def _model():
    inputs = keras.Input((3,))
    full = PeriodicEmbedding(3, frequencies=4, sigma=0.3, output_dim=5, seed=0,
                             name="plr")(inputs)
    lite = PeriodicEmbedding(3, frequencies=4, sigma=0.3, output_dim=5, lite=True,
                             seed=1, name="plr_lite")(inputs)
    outputs = keras.layers.Dense(2, name="head")(
        keras.layers.Concatenate()([full, lite]))
    return keras.Model(inputs, outputs)


def test_keras_file_round_trip(tmp_path):
    model = _model()
    x = np.random.default_rng(2).normal(size=(8, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = tmp_path / "periodic.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("plr_lite"), PeriodicEmbedding)
    assert loaded.get_layer("plr_lite").lite
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(_numpy(a), _numpy(b))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


def test_export_for_serving(tmp_path):
    model = _model()
    x = np.random.default_rng(3).normal(size=(4, 3)).astype("float32")
    assert_keras_export_serves(model, x, tmp_path / "served", rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lite", [False, True])
def test_runs_in_an_xla_compiled_function(lite):
    layer = PeriodicEmbedding(3, frequencies=4, sigma=0.5, output_dim=2, lite=lite,
                              seed=5)
    x = np.random.default_rng(4).normal(size=(6, 3)).astype("float32")
    assert_same_under_xla(layer, x, rtol=1e-5, atol=1e-6)


def test_mixed_precision_keeps_the_phase_in_float32(mixed_float16):
    layer = PeriodicEmbedding(2, frequencies=4, sigma=3.0, output_dim=3, seed=6)
    # Large angles (|2 pi c x| up to ~100): float16 would lose the phase.
    x = np.float32([[4.3, -5.1], [0.2, 3.7]])
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.coefficients.dtype) == "float32"
    np.testing.assert_allclose(_numpy(out).astype("float64"),
                               periodic_reference(layer, x), rtol=1e-2, atol=1e-2)
