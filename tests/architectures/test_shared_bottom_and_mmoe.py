"""Tests for the SharedBottom and MMoE architecture layers: values against numpy
formulas, shapes, weight counts, configs, `get` by name, `.keras` saving and a
short training run."""

import re

import keras
import numpy as np
import pytest
from helpers import fit_tasks_and_features

import kmtl
from kmtl import architectures
from kmtl.architectures import MMoE
from kmtl.architectures import SharedBottom
from kmtl.data import make_dataset
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import penguin_tasks
from kmtl.errors import ConfigError
from kmtl.tasks import Task

D_IN = 5


def _inputs(rows=7, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, D_IN)).astype("float32")


def _relu(x):
    return np.maximum(x, 0.0)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


# --- SharedBottom ------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_shared_bottom_shapes_and_weight_count(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = SharedBottom(names, units=(8, 4))
    out = layer(_inputs())
    assert list(out) == names
    assert all(tuple(v.shape) == (7, 4) for v in out.values())
    # sum(d_in * u + u): 5 * 8 + 8 + 8 * 4 + 4, whatever the number of tasks.
    assert _count(layer) == 5 * 8 + 8 + 8 * 4 + 4 == 84
    assert layer.compute_output_shape((None, D_IN)) == {n: (None, 4) for n in names}


def test_shared_bottom_values():
    layer = SharedBottom(["a", "b"], units=(6, 3))
    x = _inputs()
    out = layer(x)
    k0, b0, k1, b1 = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    expected = _relu(_relu(x @ k0 + b0) @ k1 + b1)
    for name in ("a", "b"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[name]), expected,
                                   rtol=1e-5, atol=1e-6)


# --- MMoE --------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
@pytest.mark.parametrize("gate_units", [(), (6,)])
def test_mmoe_shapes_and_weight_count(num_tasks, gate_units):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = MMoE(names, num_experts=3, expert_units=(8, 4), gate_units=gate_units)
    out = layer(_inputs())
    assert list(out) == names
    assert all(tuple(v.shape) == (7, 4) for v in out.values())
    experts = 3 * (5 * 8 + 8 + 8 * 4 + 4)  # num_experts * sum(d_in * u + u)
    if gate_units:
        gate = (5 * 6 + 6) + (6 * 3 + 3)  # hidden layer, then d * E + E
    else:
        gate = 5 * 3 + 3  # d * E + E
    assert _count(layer) == experts + num_tasks * gate
    assert _count(layer) == {
        ((), 1): 270, ((), 2): 288, ((), 5): 342,
        ((6,), 1): 309, ((6,), 2): 366, ((6,), 5): 537,
    }[(gate_units, num_tasks)]


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_mmoe_gate_weights_sum_to_one(num_tasks):
    layer = MMoE([f"t{i}" for i in range(num_tasks)], num_experts=4,
                 expert_units=(3,), gate_units=(5,))
    x = _inputs(rows=9) * 10.0
    layer(x)
    gates = keras.ops.convert_to_numpy(layer.gate_weights(x))
    assert gates.shape == (num_tasks, 9, 4)
    assert np.all(gates >= 0)
    np.testing.assert_allclose(gates.sum(axis=-1), 1.0, rtol=1e-6)


def test_mmoe_values_match_the_paper_formula():
    """f_k(x) = sum_i softmax(W_gk x + b_gk)_i * relu(W_i x + b_i)."""
    layer = MMoE(["a", "b"], num_experts=3, expert_units=(4,))
    x = _inputs()
    out = layer(x)
    kernel, bias = (keras.ops.convert_to_numpy(w)
                    for w in (layer.expert_kernels[0], layer.expert_biases[0]))
    gate_kernel, gate_bias = (keras.ops.convert_to_numpy(w)
                              for w in (layer.gate_kernels[0], layer.gate_biases[0]))
    assert kernel.shape == (3, D_IN, 4) and gate_kernel.shape == (2, D_IN, 3)
    experts = [_relu(x @ kernel[i] + bias[i]) for i in range(3)]
    for t, name in enumerate(["a", "b"]):
        gate = _softmax(x @ gate_kernel[t] + gate_bias[t])
        expected = sum(gate[:, i : i + 1] * experts[i] for i in range(3))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[name]), expected,
                                   rtol=1e-5, atol=1e-6)


def test_experts_and_gates_are_initialized_independently():
    """Identical experts would give the gates no gradient (every mixture equal)."""
    layer = MMoE(["a", "b"], num_experts=3, expert_units=(4,))
    layer.build((None, D_IN))
    kernel = keras.ops.convert_to_numpy(layer.expert_kernels[0])
    # glorot_uniform per expert: limit sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 9).
    assert np.abs(kernel).max() <= np.sqrt(6 / 9)
    assert not np.allclose(kernel[0], kernel[1])
    assert not np.allclose(kernel[1], kernel[2])
    gates = keras.ops.convert_to_numpy(layer.gate_kernels[0])
    assert not np.allclose(gates[0], gates[1])


# --- Both architectures ------------------------------------------------------

ARCHITECTURES = [
    (SharedBottom, {"units": (8, 4), "dropout": 0.2, "kernel_regularizer": "l2"}),
    (MMoE, {"num_experts": 2, "expert_units": (8, 4), "gate_units": (3,),
            "dropout": 0.1, "kernel_regularizer": "l2", "activation": "tanh"}),
]


@pytest.mark.parametrize("cls, options", ARCHITECTURES)
@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_config_round_trip(cls, options, num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = cls(names, name="arch", **options)
    x = _inputs()
    out = layer(x)
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    cloned = clone(x)
    assert list(cloned) == names
    for name in names:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(cloned[name]),
                                   keras.ops.convert_to_numpy(out[name]), atol=1e-6)


@pytest.mark.parametrize("cls, options", ARCHITECTURES)
def test_serialize_and_get_from_config_dict(cls, options):
    layer = cls(["a", "b"], **options)
    config = architectures.serialize(layer)
    clone = architectures.get(config)
    assert type(clone) is cls
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("cls, argument", [
    (SharedBottom, {"units": (0,)}),
    (MMoE, {"num_experts": 0}),
    (MMoE, {"expert_units": ()}),
    (SharedBottom, {"dropout": 1.0}),
])
def test_bad_arguments_echo_the_value(cls, argument):
    (key, value), = argument.items()
    with pytest.raises(ValueError, match=re.escape(f"{key}={value!r}")):
        cls(["a"], **argument)


@pytest.mark.parametrize("cls", [SharedBottom, MMoE])
def test_task_names_must_be_distinct(cls):
    with pytest.raises(ValueError, match="task_names"):
        cls(["a", "a"])


def test_get_by_name():
    layer = architectures.get("mmoe", task_names=["a", "b"])
    assert type(layer) is MMoE and layer.task_names == ["a", "b"]
    assert layer.name == "mmoe"
    assert type(architectures.get("MMoE", task_names=["a"])) is MMoE
    assert type(architectures.get("shared_bottom", task_names=["a"])) is SharedBottom
    assert architectures.ARCHITECTURES.get_class("mmoe") is MMoE
    assert architectures.list_architectures() == [
        "cgc", "cross_stitch", "mmoe", "mtan", "ple", "shared_bottom", "soft_sharing"]
    assert type(architectures.get(MMoE, task_names=["a"])) is MMoE
    layer = MMoE(["a"])
    assert architectures.get(layer) is layer


def test_get_unknown_lists_available():
    with pytest.raises(ConfigError, match=r"Unknown architecture 'moe'. "
                                          r"Available: \['cgc', 'cross_stitch', "):
        architectures.get("moe")


def test_get_with_task_names_and_options_builds_a_named_layer():
    layer = architectures.get("mmoe", task_names=["a", "b"], num_experts=4)
    assert isinstance(layer, MMoE) and layer.name == "mmoe"
    assert layer.num_experts == 4 and layer.task_names == ["a", "b"]


def test_get_unknown_option_lists_options():
    with pytest.raises(ConfigError,
                       match=r"does not take option\(s\) \['num_expert'\]\. "
                             r"Its options are \[.*'num_experts'"):
        architectures.get("mmoe", task_names=["a"], num_expert=4)


def test_get_bad_value_is_config_error():
    with pytest.raises(ConfigError, match="num_experts=0"):
        architectures.get("mmoe", task_names=["a"], num_experts=0)


# --- Models: .keras round trip and training ----------------------------------

SMALL = {
    "shared_bottom": {"units": (8,)},
    "mmoe": {"num_experts": 2, "expert_units": (8,)},
}


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe"])
def test_keras_file_round_trip_and_continued_fit(tiny_frame, tmp_path, architecture):
    keras.utils.set_random_seed(1)
    tasks = [Task("clicked", "binary"), Task("kind", "multiclass"),
             Task("price", "regression")]
    features, tasks = fit_tasks_and_features(tiny_frame, tasks)
    model = kmtl.build_model(features, tasks, architecture, tower_units=(4,),
                             **SMALL[architecture])
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    dataset = make_dataset(tiny_frame, features, tasks, batch_size=6)
    before = model.fit(dataset, epochs=5, shuffle=False, verbose=0).history["loss"]
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)
    assert type(loaded) is kmtl.MultiTaskModel
    assert [t.get_config() for t in loaded.tasks] == [t.get_config() for t in tasks]
    features_only = make_dataset(tiny_frame, features, batch_size=6)
    expected = model.predict(features_only, verbose=0)
    predicted = loaded.predict(features_only, verbose=0)
    for name in ("clicked", "kind", "price"):
        np.testing.assert_allclose(predicted[name], expected[name], rtol=1e-6,
                                   atol=1e-6)
    # The optimizer state is restored, so training resumes where it stopped.
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 5
    after = loaded.fit(dataset, epochs=5, shuffle=False, verbose=0).history["loss"]
    assert before[-1] < before[0]
    assert after[0] < before[-1]
    assert after[-1] < after[0]


@pytest.fixture(scope="module")
def penguin_data():
    frame = kmtl.datasets.load_penguins()
    features, tasks = fit_tasks_and_features(frame, penguin_tasks(), **PENGUIN_FEATURES)
    return frame, features, tasks


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe"])
def test_short_fit_lowers_every_task_loss(penguin_data, architecture):
    frame, features, tasks = penguin_data
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, architecture, tower_units=(8,),
                             **SMALL[architecture])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    # The dataset shuffles itself; Keras's own `shuffle` does not apply to it.
    train = make_dataset(frame, features, tasks, batch_size=128, shuffle=True,
                         seed=0)
    evaluation = make_dataset(frame, features, tasks, batch_size=344)
    start = model.evaluate(evaluation, return_dict=True, verbose=0)
    model.fit(train, epochs=20, shuffle=False, verbose=0)
    end = model.evaluate(evaluation, return_dict=True, verbose=0)
    for task in ("species", "sex", "body_mass_g"):
        assert end[f"{task}_loss"] < 0.6 * start[f"{task}_loss"], task
    assert end["species_accuracy"] > 0.9
