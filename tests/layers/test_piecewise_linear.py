"""Tests for `kmtl.layers.quantile_bin_edges` and `PiecewiseLinearEncoding`, the
piecewise linear encoding of Gorishniy, Rubachev and Babenko (NeurIPS 2022)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_export_serves
from helpers import assert_same_under_xla

from kmtl.layers import PiecewiseLinearEncoding
from kmtl.layers import quantile_bin_edges


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def ple_reference(x, edges):
    """The paper's Eq. 1, case by case, for one value and one feature."""
    count = len(edges) - 1
    encoding = []
    for t in range(1, count + 1):
        if x < edges[t - 1] and t > 1:
            encoding.append(0.0)
        elif x >= edges[t] and t < count:
            encoding.append(1.0)
        else:
            encoding.append((x - edges[t - 1]) / (edges[t] - edges[t - 1]))
    return encoding


def _reference(x, edges):
    return np.array([sum((ple_reference(float(v), e) for v, e in zip(row, edges)),
                         []) for row in x])


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


# === quantile_bin_edges ===

def test_edges_are_the_quantiles():
    # 9 values 0..8: quantile q sits at position 8q, so the 4-bin edges are the
    # values at positions 0, 2, 4, 6, 8.
    values = np.arange(9.0)
    assert quantile_bin_edges(values, 4) == [0.0, 2.0, 4.0, 6.0, 8.0]
    # 5 values 0..4, 3 bins: positions 4/3 and 8/3, interpolated linearly.
    edges = quantile_bin_edges([3.0, 0.0, 4.0, 1.0, 2.0], 3)
    expected = np.float32([0.0, 4 / 3, 8 / 3, 4.0])
    np.testing.assert_array_equal(np.float32(edges), expected)
    by_numpy = np.quantile(np.arange(5.0), [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(np.float32(edges), np.float32(by_numpy))
    assert all(type(edge) is float for edge in edges)
    # One bin: the minimum and the maximum.
    assert quantile_bin_edges([5.0, -2.0, 1.0], 1) == [-2.0, 5.0]


def test_edges_ignore_missing_values():
    values = [0.0, np.nan, 1.0, 2.0, np.inf, 3.0, -np.inf, 4.0]
    assert quantile_bin_edges(values, 4) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_few_distinct_values_give_fewer_bins():
    # [0, 0, 0, 1], 8 bins: positions 3q = 0, 0.375, ..., 1.875 all read 0;
    # 2.25 and 2.625 interpolate between 0 and 1; 3 reads 1.
    assert quantile_bin_edges([0.0, 0.0, 0.0, 1.0], 8) == [0.0, 0.25, 0.625, 1.0]
    # Five 0s and five 1s, 4 bins: positions 0, 2.25, 4.5, 6.75, 9 read 0, 0,
    # 0.5, 1, 1.
    assert quantile_bin_edges([0.0] * 5 + [1.0] * 5, 4) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("values,expected", [
    ([2.0, 2.0, np.nan], [2.0, 4.0]),
    ([0.0] * 10, [0.0, 1.0]),
    ([-3.0], [-3.0, 0.0]),
    ([0.5, 0.5], [0.5, 1.5]),
    ([np.nan, np.nan], [0.0, 1.0]),
    ([], [0.0, 1.0]),
    # Distinct in float64 but one float32 value: a constant column.
    ([1.0, 1.0 + 1e-12], [1.0, 2.0]),
], ids=["constant", "zeros", "one_negative", "half", "all_missing", "empty",
        "equal_in_float32"])
def test_degenerate_columns_get_one_bin(values, expected):
    edges = quantile_bin_edges(values, 16)
    assert edges == expected
    # A valid layer: the training value encodes to 0, others linearly.
    layer = PiecewiseLinearEncoding([edges])
    constant = edges[0]
    x = np.array([[constant], [constant + (edges[1] - edges[0])]], "float32")
    np.testing.assert_array_equal(_numpy(layer(x)), [[0.0], [1.0]])


def test_edges_are_distinct_in_float32():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=500), np.full(500, 0.1)])
    edges = quantile_bin_edges(values, 48)
    assert 2 <= len(edges) < 49
    assert np.all(np.diff(np.float32(edges)) > 0)
    assert edges == [float(np.float32(edge)) for edge in edges]
    PiecewiseLinearEncoding([edges])


@pytest.mark.parametrize("bins", [0, -1, 2.5, True, "4"])
def test_bad_bins(bins):
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        quantile_bin_edges([0.0, 1.0], bins)


def test_values_must_be_one_feature():
    with pytest.raises(ValueError, match=r"must be 1-D.*shape \(2, 2\)"):
        quantile_bin_edges(np.zeros((2, 2)), 4)


# === the encoding ===

EDGES = [[-1.0, 0.0, 2.0, 3.0], [0.0, 4.0]]  # widths 1, 2, 1; one bin of 4


@pytest.mark.parametrize("x0,x1,expected", [
    (-3.0, -2.0, [-2.0, 0.0, 0.0, -0.5]),  # below the first edge: not clipped
    (-1.0, 0.0, [0.0, 0.0, 0.0, 0.0]),     # on the first edge
    (-0.5, 1.0, [0.5, 0.0, 0.0, 0.25]),    # inside bin 1
    (0.0, 2.0, [1.0, 0.0, 0.0, 0.5]),      # on an inner edge
    (1.0, 3.0, [1.0, 0.5, 0.0, 0.75]),     # inside bin 2
    (2.0, 4.0, [1.0, 1.0, 0.0, 1.0]),      # on an inner edge; on the last one
    (2.25, 5.0, [1.0, 1.0, 0.25, 1.25]),   # inside bin 3; above the last edge
    (3.0, 6.0, [1.0, 1.0, 1.0, 1.5]),      # on the last edge
    (5.0, 8.0, [1.0, 1.0, 3.0, 2.0]),      # above the last edge: not clipped
])
def test_encoding_by_hand(x0, x1, expected):
    layer = PiecewiseLinearEncoding(EDGES)
    out = _numpy(layer(np.array([[x0, x1]], "float32")))
    np.testing.assert_array_equal(out, [expected])
    assert ple_reference(x0, EDGES[0]) + ple_reference(x1, EDGES[1]) == expected


def test_values_on_inexact_edges_encode_to_exactly_zero_and_one():
    edges = [0.1, 0.3, 0.7]
    layer = PiecewiseLinearEncoding([edges])
    out = _numpy(layer(np.float32([[0.1], [0.3], [0.7]])))
    np.testing.assert_array_equal(out, [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])


def test_features_with_different_bin_counts_match_the_paper():
    rng = np.random.default_rng(1)
    edges = [
        quantile_bin_edges(rng.normal(size=200), 5),
        [0.0, 1.0],
        quantile_bin_edges(rng.integers(0, 3, size=50).astype(float), 8),
        [-2.0, -1.0, 0.5],
    ]
    counts = [len(e) - 1 for e in edges]
    assert counts == [5, 1, 2, 2]
    layer = PiecewiseLinearEncoding(edges)
    x = rng.normal(scale=1.5, size=(64, 4)).astype("float32")
    # Rows 0 to 2 on the first, the second and the last edge of each feature.
    for row, t in enumerate([0, 1, -1]):
        x[row] = [feature_edges[t] for feature_edges in edges]
    out = _numpy(layer(x))
    assert out.shape == (64, sum(counts))
    assert layer.compute_output_shape((None, 4)) == (None, 10)
    np.testing.assert_allclose(out, _reference(x.astype("float64"), edges),
                               rtol=1e-6, atol=1e-6)
    assert not layer.weights


def test_same_bin_counts():
    edges = [[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0]]
    x = np.float32([[0.5, 2.0], [3.0, -0.5]])
    out = _numpy(PiecewiseLinearEncoding(edges)(x))
    np.testing.assert_array_equal(out, [[0.5, 0.0, 1.0, 2.0], [1.0, 2.0, 0.5, 0.0]])


@pytest.mark.parametrize("edges,message", [
    ([], "non-empty list"),
    ("0,1", "non-empty list"),
    ([[0.0, 1.0], [2.0]], r"feature 1 needs .* at least 2 .* edges\[1\]=\[2.0\]"),
    ([[0.0, 1.0], []], r"feature 1 needs"),
    ([[[0.0, 1.0]]], r"feature 0 needs a flat list"),
    ([["a", "b"]], r"feature 0 needs"),
    ([[0.0, 1.0], [0.0, 2.0, 1.0]],
     r"feature 1 must be strictly increasing .* edges\[1\]\[2\]=1.0 is not above "
     r"edges\[1\]\[1\]=2.0"),
    ([[0.0, 0.0, 1.0]], r"feature 0 must be strictly increasing .* edges\[0\]\[1\]"),
    ([[1.0, 1.0 + 1e-12]], r"feature 0 must be strictly increasing \(in float32\)"),
    ([[0.0, np.inf]], r"feature 0 has a non-finite bin edge"),
    ([[np.nan, 1.0]], r"feature 0 has a non-finite bin edge"),
])
def test_bad_edges(edges, message):
    with pytest.raises(ValueError, match=message):
        PiecewiseLinearEncoding(edges)


@pytest.mark.parametrize("output_dim", [0, -2, 1.5, True])
def test_bad_output_dim(output_dim):
    with pytest.raises(ValueError, match="Received: output_dim="):
        PiecewiseLinearEncoding(EDGES, output_dim=output_dim)


def test_wrong_number_of_columns():
    with pytest.raises(ValueError, match="input has 3 columns but edges has 2"):
        PiecewiseLinearEncoding(EDGES)(np.zeros((1, 3), "float32"))


# === the embedding (output_dim) ===

def _embedding_reference(layer, x, activation):
    encoded = _numpy(PiecewiseLinearEncoding(layer.edges)(x))
    kernel, bias = _numpy(layer.kernel), _numpy(layer.bias)
    outputs, start = [], 0
    for i, count in enumerate(layer.bin_counts):
        block = encoded[:, start:start + count] @ kernel[start:start + count] + bias[i]
        outputs.append(activation(block))
        start += count
    return np.concatenate(outputs, axis=1)


@pytest.mark.parametrize("activation,function", [
    ("relu", lambda v: np.maximum(v, 0.0)), ("linear", lambda v: v)])
def test_embedding_is_a_linear_layer_per_feature(activation, function):
    edges = [[-1.0, 0.0, 2.0, 3.0], [0.0, 4.0], [0.0, 1.0, 2.0]]
    layer = PiecewiseLinearEncoding(edges, output_dim=5, activation=activation,
                                    seed=3)
    x = np.random.default_rng(2).normal(scale=2.0, size=(16, 3)).astype("float32")
    out = _numpy(layer(x))
    assert out.shape == (16, 15)
    assert layer.compute_output_shape((None, 3)) == (None, 15)
    # One Dense(5) per feature on its 3, 1 and 2 components.
    assert layer.count_params() == (3 + 1 + 2) * 5 + 3 * 5
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(6, 5), (3, 5)]
    np.testing.assert_allclose(out, _embedding_reference(layer, x, function),
                               rtol=1e-5, atol=1e-6)
    if activation == "linear":
        assert (out < 0).any()


def test_embedding_initializer_and_seed():
    edges = [list(np.linspace(-2.0, 2.0, 17)), [0.0, 1.0]]  # 16 bins and 1
    layers = [PiecewiseLinearEncoding(edges, output_dim=64, seed=s)
              for s in (7, 7, 8)]
    for layer in layers:
        layer.build((None, 2))
    kernel = _numpy(layers[0].kernel)
    # Uniform in +-1/sqrt(bins of the feature), as PyTorch's Linear.
    assert np.abs(kernel[:16]).max() <= 0.25
    assert np.abs(kernel[:16]).max() > 0.2
    assert np.abs(kernel[16]).max() > 0.5
    assert np.abs(_numpy(layers[0].bias)[0]).max() <= 0.25
    for a, b in zip(layers[0].weights, layers[1].weights):
        np.testing.assert_array_equal(_numpy(a), _numpy(b))
    assert not np.array_equal(_numpy(layers[0].kernel), _numpy(layers[2].kernel))


def test_embedding_gradients_reach_every_weight():
    layer = PiecewiseLinearEncoding(EDGES, output_dim=3, activation="linear",
                                    seed=0)
    x = tf.constant([[-0.5, 1.0], [2.5, 5.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    kernel_gradient, bias_gradient = tape.gradient(loss, layer.trainable_weights)
    # d loss / d kernel row = sum over the batch of that component.
    np.testing.assert_allclose(
        _numpy(kernel_gradient),
        np.repeat([[0.5 + 1.0], [0.0 + 1.0], [0.0 + 0.5], [0.25 + 1.25]], 3, axis=1))
    np.testing.assert_allclose(_numpy(bias_gradient), np.full((2, 3), 2.0))


# === serialization, compiled graphs, mixed precision ===

def test_config_round_trip():
    layer = PiecewiseLinearEncoding(EDGES, output_dim=4, activation="linear",
                                    seed=5, name="ple")
    config = layer.get_config()
    assert config["edges"] == EDGES
    assert config["output_dim"] == 4 and config["seed"] == 5
    clone = PiecewiseLinearEncoding.from_config(config)
    assert clone.get_config() == config
    x = np.float32([[0.5, 1.0], [-2.0, 7.0]])
    np.testing.assert_array_equal(_numpy(clone(x)), _numpy(layer(x)))
    plain = PiecewiseLinearEncoding(EDGES)
    assert PiecewiseLinearEncoding.from_config(plain.get_config()).get_config() == (
        plain.get_config())
    restored = keras.layers.deserialize(keras.layers.serialize(plain))
    assert isinstance(restored, PiecewiseLinearEncoding)


def _model():
    edges = [[-1.0, 0.0, 2.0, 3.0], [0.0, 4.0], [0.0, 0.5, 1.0]]
    inputs = keras.Input((3,))
    encoded = PiecewiseLinearEncoding(edges, name="ple")(inputs)
    embedded = PiecewiseLinearEncoding(edges, output_dim=4, seed=1,
                                       name="ple_embedding")(inputs)
    outputs = keras.layers.Dense(2, name="head")(
        keras.layers.Concatenate()([encoded, embedded]))
    return keras.Model(inputs, outputs)


def test_keras_file_round_trip(tmp_path):
    model = _model()
    x = np.random.default_rng(4).normal(scale=2.0, size=(8, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = tmp_path / "ple.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("ple"), PiecewiseLinearEncoding)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


def test_export_for_serving(tmp_path):
    model = _model()
    x = np.random.default_rng(5).normal(size=(4, 3)).astype("float32")
    assert_keras_export_serves(model, x, tmp_path / "served", rtol=1e-6)


@pytest.mark.parametrize("output_dim", [None, 4])
def test_runs_in_an_xla_compiled_function(output_dim):
    layer = PiecewiseLinearEncoding([[-1.0, 0.0, 2.0, 3.0], [0.0, 4.0]],
                                    output_dim=output_dim, seed=0)
    x = np.float32([[-3.0, 1.0], [0.0, 2.0], [2.25, 9.0]])
    assert_same_under_xla(layer, x, rtol=1e-6, atol=1e-7)


def test_mixed_precision_encodes_in_float32(mixed_float16):
    edges = [[1000.0, 1001.0], [-1.0, 0.0, 2.0, 3.0]]
    layer = PiecewiseLinearEncoding(edges)
    # 1000.25 is not a float16 (it rounds to 1000.0); its fraction 0.25 is.
    out = layer(np.float32([[1000.25, 1.0]]))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_array_equal(_numpy(out), [[0.25, 1.0, 0.5, 0.0]])
    embed = PiecewiseLinearEncoding(edges, output_dim=3, seed=0)
    out = embed(np.float32([[1000.25, 1.0]]))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(embed.kernel.dtype) == "float32"
    reference = _embedding_reference(embed, np.float32([[1000.25, 1.0]]),
                                     lambda v: np.maximum(v, 0.0))
    np.testing.assert_allclose(_numpy(out), reference, rtol=1e-2, atol=2e-3)
