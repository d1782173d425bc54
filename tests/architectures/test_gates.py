"""Tests for the mixture-of-experts gates (softmax, DSelect-k) and MMoE's gate
option and diagnostics: values derived by hand from the DSelect-k formulas,
weight counts, rows summing to 1, sparsity, configs and a short fit."""

import json
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip
from helpers import random_inputs
from helpers import to_numpy
from helpers import trainable_count
from keras import ops

import kmtl
from kmtl.architectures import MMoE
from kmtl.architectures import gates
from kmtl.data import make_dataset
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import penguin_tasks
from kmtl.features import resolve_features

D_IN = 4


def _inputs(rows=7, seed=0, scale=1.0):
    return random_inputs(rows, seed, scale, features=D_IN)


class Owner(keras.layers.Layer):
    """A bare layer that owns a gate's weights, as an architecture does."""


def _built_gate(name, count, num_experts, features=D_IN, **options):
    owner = Owner()
    gate = gates.get(name, **options)
    gate.build(owner, "gate", count, features, num_experts)
    return owner, gate


def _set_selection(gate, selector_logits, weight_logits):
    """Input-independent DSelect-k logits: kernels 0, the given biases
    (`(count, k * m)` and `(count, k)`)."""
    for kernel in gate.kernels:
        kernel.assign(np.zeros(kernel.shape, "float32"))
    if gate.selector_biases:
        gate.selector_biases[0].assign(np.array(selector_logits, "float32"))
    gate.weight_biases[0].assign(np.array(weight_logits, "float32"))


# --- Smooth step and binary codes ---------------------------------------------


def test_smooth_step_values():
    t = np.array([-2.0, -0.5, -0.25, 0.0, 0.25, 0.5, 2.0], "float32")
    # -2 t^3 + 1.5 t + 0.5 at gamma = 1: t = 0.25 -> -1/32 + 3/8 + 1/2.
    expected = [0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0]
    np.testing.assert_allclose(to_numpy(gates.smooth_step(t, 1.0)), expected, atol=1e-7)
    # S_gamma(t) = S_1(t / gamma).
    np.testing.assert_allclose(to_numpy(gates.smooth_step(2 * t, 2.0)), expected,
                               atol=1e-7)


def test_binary_codes_most_significant_bit_first():
    np.testing.assert_array_equal(
        gates.binary_codes(5),
        [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(gates.binary_codes(2), [[0], [1]])
    assert gates.binary_codes(1).shape == (1, 0)


# --- Rows are distributions ---------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "dselect_k"])
@pytest.mark.parametrize("num_experts", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("per_gate_inputs", [False, True])
def test_gate_rows_are_non_negative_and_sum_to_one(name, num_experts,
                                                   per_gate_inputs):
    _, gate = _built_gate(name, 3, num_experts, units=(5,), gamma=0.5, top_k=3)
    # Large inputs saturate some smooth steps, small ones leave them smooth.
    x = np.concatenate([_inputs(rows=6, scale=30.0), _inputs(rows=6, seed=1)])
    if per_gate_inputs:
        x = np.stack([x, 2 * x, -x])
    weights, _ = gate(x)
    weights = to_numpy(weights)
    assert weights.shape == (3, 12, num_experts)
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)


# --- DSelect-k by hand --------------------------------------------------------


def test_dselect_k_saturated_selectors_pick_exactly_their_experts():
    """n = 4, k = 2, m = 2. Selector 0 logits (+5, -5) saturate to bits (1, 0):
    expert 2; selector 1, (-5, +5): bits (0, 1), expert 1. Selector weights
    softmax(0, ln 3) = (1/4, 3/4)."""
    _, gate = _built_gate("dselect_k", 1, 4, top_k=2)
    _set_selection(gate, [[5.0, -5.0, -5.0, 5.0]], [[0.0, math.log(3.0)]])
    weights, penalty = gate(_inputs())
    weights = to_numpy(weights)[0]
    assert penalty is None  # a power of two and no entropy weight
    np.testing.assert_array_equal(weights[:, [0, 3]], 0.0)
    np.testing.assert_allclose(weights[:, 1], 0.75, rtol=1e-6)
    np.testing.assert_allclose(weights[:, 2], 0.25, rtol=1e-6)
    # Both selectors on expert 3 (bits 1, 1): exactly one expert, weight 1.
    _set_selection(gate, [[5.0, 5.0, 5.0, 5.0]], [[0.3, -0.2]])
    weights = to_numpy(gate(_inputs())[0])[0]
    np.testing.assert_array_equal(weights, np.tile([0.0, 0.0, 0.0, 1.0], (7, 1)))


def test_dselect_k_at_most_k_non_zero_once_saturated():
    """Random selector logits far outside (-gamma / 2, gamma / 2): the smooth
    steps are 0 or 1, so each of the k = 3 selectors is one-hot and a row has at
    most 3 non-zero weights."""
    _, gate = _built_gate("dselect_k", 2, 8, top_k=3, gamma=0.01)
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=gate.selector_kernels[0].shape).astype("float32")
    bias = rng.normal(size=gate.selector_biases[0].shape).astype("float32")
    gate.selector_kernels[0].assign(kernel)
    gate.selector_biases[0].assign(bias)
    x = _inputs(rows=50)
    weights = to_numpy(gate(x)[0])
    z = np.einsum("bd,cdz->cbz", x, kernel) + bias[:, None]
    saturated = np.all(np.abs(z) >= 0.005, axis=-1)
    assert saturated.mean() > 0.9
    non_zero = (weights > 0).sum(axis=-1)
    assert np.all(non_zero[saturated] <= 3)
    # Each saturated selector is one-hot: the weights are the selector weights.
    selector_weights = to_numpy(ops.softmax(
        np.einsum("bd,cdk->cbk", x, to_numpy(gate.weight_kernels[0]))
        + to_numpy(gate.weight_biases[0])[:, None]))
    np.testing.assert_allclose(np.sort(weights, -1)[saturated][:, -3:].sum(-1), 1.0,
                               rtol=1e-6)
    assert np.all(weights[saturated].max(-1) >= selector_weights[saturated].max(-1)
                  - 1e-6)


def test_dselect_k_per_example_selection():
    """n = 2, k = 1, m = 1: z = 10 x_0, so expert 1's weight is S(10 x_0)."""
    _, gate = _built_gate("dselect_k", 1, 2, top_k=1)
    _set_selection(gate, [[0.0]], [[0.0]])
    kernel = np.zeros((1, D_IN, 1), "float32")
    kernel[0, 0, 0] = 10.0
    gate.selector_kernels[0].assign(kernel)
    x = np.zeros((6, D_IN), "float32")
    x[:, 0] = [-1.0, -0.05, 0.0, 0.025, 0.05, 1.0]  # z = -10, -.5, 0, .25, .5, 10
    weights = to_numpy(gate(x)[0])[0]
    np.testing.assert_allclose(weights[:, 1], [0, 0, 0.5, 0.84375, 1, 1], atol=1e-6)
    np.testing.assert_allclose(weights[:, 0], 1 - weights[:, 1], atol=1e-6)


def test_dselect_k_smooth_selector_and_entropy_penalty():
    """n = 4, k = 1, z = (0.25, 0): S = (0.84375, 0.5), so
    r = ((1-a) .5, (1-a) .5, a .5, a .5) with a = 0.84375; the entropy
    penalty is w * -sum r log r."""
    _, gate = _built_gate("dselect_k", 1, 4, top_k=1, entropy_weight=0.5)
    _set_selection(gate, [[0.25, 0.0]], [[0.0]])
    weights, penalty = gate(_inputs(rows=3))
    r = np.array([0.078125, 0.078125, 0.421875, 0.421875])
    np.testing.assert_allclose(to_numpy(weights)[0], np.tile(r, (3, 1)), rtol=1e-6)
    entropy = -np.sum(r * np.log(r + gates.EPSILON))
    assert float(penalty) == pytest.approx(0.5 * entropy, rel=1e-6)


def test_dselect_k_experts_not_a_power_of_two():
    """n = 3, m = 2: code 11 names no expert. With S = (0.84375, 0.5) the
    selector's mass on real experts is 1 - 0.84375 * 0.5 = 0.578125; the weights
    are r / 0.578125 and the paper's penalty is 1 / 0.578125 per selector (less
    1, so that it is 0 once the selectors keep to real experts)."""
    _, gate = _built_gate("dselect_k", 1, 3, top_k=2)
    _set_selection(gate, [[0.25, 0.0, 0.25, 0.0]], [[0.0, 0.0]])
    weights, penalty = gate(_inputs(rows=2))
    r = np.array([0.078125, 0.078125, 0.421875]) / 0.578125
    np.testing.assert_allclose(to_numpy(weights)[0], np.tile(r, (2, 1)), rtol=1e-6)
    assert float(penalty) == pytest.approx(2 / 0.578125 - 2, rel=1e-6)

    # Both selectors entirely on code 11: an even spread, finite gradients.
    _set_selection(gate, [[5.0, 5.0, 5.0, 5.0]], [[0.0, 0.0]])
    np.testing.assert_allclose(to_numpy(gate(_inputs(rows=2))[0])[0], 1 / 3, rtol=1e-6)
    _set_selection(gate, [[0.4, 0.4, 5.0, 5.0]], [[0.0, 0.0]])
    with tf.GradientTape() as tape:
        weights, penalty = gate(_inputs(rows=2))
        loss = ops.sum(weights * np.array([1.0, 2.0, 3.0])) + penalty
    gradients = tape.gradient(loss, gate.kernels + gate.biases)
    assert all(np.all(np.isfinite(to_numpy(g))) for g in gradients if g is not None)
    # Selector 0 is smooth (0.4 < gamma / 2): it gets a gradient.
    assert np.abs(to_numpy(gradients[len(gate.kernels)])[0, :2]).sum() > 0


def test_dselect_k_with_one_expert_is_the_identity():
    _, gate = _built_gate("dselect_k", 2, 1, top_k=2)
    assert not gate.selector_kernels  # nothing to select
    np.testing.assert_allclose(to_numpy(gate(_inputs())[0]), np.ones((2, 7, 1)),
                               rtol=1e-6)


# --- Weight counts, options ---------------------------------------------------


@pytest.mark.parametrize("num_experts, units, top_k", [
    (4, (), 2), (5, (6,), 3), (1, (), 2), (2, (3, 2), 1)])
def test_dselect_k_weight_count(num_experts, units, top_k):
    """Per gate: sum(d_in * u + u) over units + (h + 1) * k * (m + 1)."""
    owner, _ = _built_gate("dselect_k", 3, num_experts, units=units, top_k=top_k)
    hidden = sum(a * b + b for a, b in zip((D_IN, *units), units))
    h = units[-1] if units else D_IN
    m = math.ceil(math.log2(num_experts))
    assert trainable_count(owner) == 3 * (hidden + (h + 1) * top_k * (m + 1))
    assert trainable_count(owner) == {
        4: 3 * 30, 5: 3 * (30 + 84), 1: 3 * 10, 2: 3 * (15 + 8 + 6)}[num_experts]


def test_get_and_list_gates():
    assert gates.list_gates() == ["dselect_k", "softmax"]
    gate = gates.get("DSelect_K", top_k=3, gamma=0.5, units=(4,))
    assert isinstance(gate, gates.DSelectKGate)
    assert gate.registered_name == "dselect_k"
    config = gate.get_config()
    assert {k: config[k] for k in ("units", "activation", "top_k", "gamma",
                                   "entropy_weight")} == {
        "units": [4], "activation": "relu", "top_k": 3, "gamma": 0.5,
        "entropy_weight": 0.0}
    # A softmax gate ignores the DSelect-k options an architecture passes on.
    assert isinstance(gates.get("softmax", top_k=3), gates.SoftmaxGate)
    assert gates.get("dselect_k(top_k=4)").top_k == 4
    with pytest.raises(kmtl.ConfigError, match=re.escape(
            "Unknown gate. Received: gate='topk'. Available: ['dselect_k', "
            "'softmax'].")):
        gates.get("topk")
    with pytest.raises(ValueError, match=re.escape("top_k=0")):
        gates.get("dselect_k", top_k=0)


@pytest.mark.parametrize("name", ["softmax", "dselect_k"])
def test_gate_serialize_round_trip_gives_the_same_weights(name):
    gate = gates.get(name, units=(3,), activation="tanh", kernel_regularizer="l2",
                     gamma=0.5)
    config = json.loads(json.dumps(gates.serialize(gate)))
    assert config["class_name"] == name
    copy = gates.deserialize(config)
    assert type(copy) is type(gate)
    assert copy.get_config() == gate.get_config()
    owner, copy_owner = Owner(), Owner()
    gate.build(owner, "gate", 2, D_IN, 5)
    copy.build(copy_owner, "gate", 2, D_IN, 5)
    copy_owner.set_weights(owner.get_weights())
    x = _inputs()
    np.testing.assert_allclose(to_numpy(copy(x)[0]), to_numpy(gate(x)[0]),
                               rtol=1e-6)


@pytest.mark.parametrize("argument", [
    {"top_k": 0}, {"gamma": 0.0}, {"entropy_weight": -1.0}, {"gate": "sparse"}])
def test_bad_gate_options_echo_the_value(argument):
    (key, value), = argument.items()
    with pytest.raises(ValueError, match=re.escape(f"{key}={value!r}")):
        MMoE(["a"], **{"gate": "dselect_k", **argument})


# --- MMoE with DSelect-k gates ------------------------------------------------


def test_mmoe_softmax_weights_keep_their_names():
    """Models saved before gates were an option load: same variables, same
    order."""
    layer = MMoE(["a", "b"], num_experts=3, expert_units=(4,), gate_units=(2,))
    layer.build((None, D_IN))
    assert [w.name for w in layer.weights] == [
        "expert_kernel_0", "expert_bias_0", "gate_kernel_0", "gate_bias_0",
        "gate_kernel_1", "gate_bias_1"]


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_mmoe_dselect_k_shapes_and_weight_count(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = MMoE(names, num_experts=5, expert_units=(8, 4), gate="dselect_k",
                 top_k=3)
    out = layer(_inputs())
    assert {k: tuple(v.shape) for k, v in out.items()} == {n: (7, 4) for n in names}
    experts = 5 * (4 * 8 + 8 + 8 * 4 + 4)
    gate = (4 + 1) * 3 * (3 + 1)  # (h + 1) * k * (m + 1), m = ceil(log2 5) = 3
    assert trainable_count(layer) == experts + num_tasks * gate
    assert trainable_count(layer) == {1: 440, 2: 500, 5: 680}[num_tasks]


def test_mmoe_dselect_k_values_and_penalty_only_in_training():
    layer = MMoE(["a", "b"], num_experts=3, expert_units=(4,), gate="dselect_k")
    x = _inputs()
    out = layer(x)
    assert not layer.losses
    gate_weights = to_numpy(layer.gate_weights(x))
    kernel, bias = to_numpy(layer.expert_kernels[0]), to_numpy(layer.expert_biases[0])
    experts = np.maximum(np.einsum("bd,edu->ebu", x, kernel) + bias[:, None], 0)
    for t, name in enumerate(["a", "b"]):
        np.testing.assert_allclose(
            to_numpy(out[name]), np.einsum("be,ebu->bu", gate_weights[t], experts),
            rtol=1e-5, atol=1e-6)
    layer(x, training=True)
    # 3 experts: 2 gates x 2 selectors of 1 / (mass on real experts) - 1 each;
    # the selector logits start near 0, so each mass is near 1 - 1/4.
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(4 / 0.75 - 4, rel=0.1)


def test_mmoe_dselect_k_config_round_trip():
    layer = MMoE(["a", "b"], num_experts=4, expert_units=(6,), gate_units=(3,),
                 gate="dselect_k", top_k=3, gamma=0.5, entropy_weight=0.01)
    assert_config_round_trip(layer, _inputs())
    config = layer.get_config()
    assert (config["gate"], config["top_k"], config["gamma"],
            config["entropy_weight"]) == ("dselect_k", 3, 0.5, 0.01)


@pytest.mark.parametrize("gate", ["softmax", "dselect_k"])
def test_mmoe_diagnostics_is_the_mean_gate_weight(gate):
    layer = MMoE(["a", "b"], num_experts=3, expert_units=(4,), gate=gate)
    x = _inputs(rows=9)
    diagnostics = layer.diagnostics(x)
    assert list(diagnostics) == ["expert_utilisation"]
    matrix, rows, columns = diagnostics["expert_utilisation"]
    assert rows == ["a", "b"] and columns == ["expert_0", "expert_1", "expert_2"]
    np.testing.assert_allclose(to_numpy(matrix),
                               to_numpy(layer.gate_weights(x)).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(matrix).sum(axis=1), 1.0, rtol=1e-6)


def test_training_makes_dselect_k_sparse():
    """Small gamma: the smooth steps saturate as the selector logits grow, and
    most rows keep at most k = 2 of the 4 experts (at the start, none does)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = np.stack([2 * x[:, 0] + np.sin(x[:, 1]), x[:, 2] - x[:, 3] ** 2], 1)
    inputs = keras.Input((4,))
    layer = MMoE(["a", "b"], num_experts=4, expert_units=(8,), gate="dselect_k",
                 top_k=2, gamma=0.02)
    representations = layer(inputs)
    outputs = keras.layers.Concatenate()(
        [keras.layers.Dense(1)(representations[n]) for n in ("a", "b")])
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse")

    def sparse_rows():
        return float(np.mean((to_numpy(layer.gate_weights(x)) > 0).sum(-1) <= 2))

    assert sparse_rows() == 0.0
    history = model.fit(x, y, batch_size=64, epochs=20, verbose=0).history["loss"]
    assert history[-1] < 0.2 * history[0]
    assert sparse_rows() > 0.5


# --- Through build_model ------------------------------------------------------


def test_build_model_with_dselect_k_mmoe_fits():
    frame = kmtl.datasets.load_penguins()
    tasks = [t.fit(frame) for t in penguin_tasks()]
    features = [f.fit(frame) for f in resolve_features(frame, **PENGUIN_FEATURES)]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, architecture="mmoe",
                             gate="dselect_k", num_experts=4, expert_units=(8,),
                             tower_units=(8,), entropy_weight=0.01)
    assert model.get_layer("mmoe").get_config()["gate"] == "dselect_k"
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = make_dataset(frame, features, tasks, batch_size=128, shuffle=True,
                        seed=0)
    history = model.fit(data, epochs=8, shuffle=False, verbose=0).history
    assert np.all(np.diff(history["loss"]) < 0)
    for key in ("species_loss", "sex_loss", "body_mass_g_loss"):
        assert history[key][-1] < 0.8 * history[key][0], key
