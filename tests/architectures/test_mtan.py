"""Tests for the MTAN architecture: shapes, the weight-count formula, values
against a numpy transcription of the attention equations, masks, diagnostics and
the config round trip. `.keras` saving, export and a short fit are covered for
every registered architecture in test_architectures.py."""

import json

import keras
import numpy as np
import pytest
from helpers import random_inputs
from helpers import relu
from helpers import to_numpy
from helpers import trainable_count

from kmtl import architectures
from kmtl.architectures import MTAN

D_IN = 5
UNITS = (8, 4)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference(layer, x):
    """`(masks, attended)` per level from the docstring's equations, in numpy,
    one task at a time."""
    num_tasks = len(layer.task_names)
    shared, h = [], x
    for kernel, bias in layer.trunk:
        h = relu(h @ to_numpy(kernel) + to_numpy(bias))
        shared.append(h)
    masks, attended = [], []
    for t in range(num_tasks):
        previous = None
        for level, p in enumerate(shared):
            if level == 0:
                z = p
            else:
                f_kernel, f_bias = (to_numpy(w) for w in layer.extractors[level - 1])
                if not layer.shared_extractor:
                    f_kernel, f_bias = f_kernel[t], f_bias[t]
                z = np.concatenate([p, relu(previous @ f_kernel + f_bias)], axis=1)
            g_kernel, g_bias = (to_numpy(w)[t] for w in layer.attention_g[level])
            h_kernel, h_bias = (to_numpy(w)[t] for w in layer.attention_h[level])
            mask = _sigmoid(relu(z @ g_kernel + g_bias) @ h_kernel + h_bias)
            previous = mask * p
            if t == 0:
                masks.append(np.zeros((num_tasks, *mask.shape)))
                attended.append(np.zeros((num_tasks, *mask.shape)))
            masks[level][t] = mask
            attended[level][t] = previous
    return masks, attended


def _set_mask_biases(layer, values):
    """Zero every `h` kernel and set task t's `h` bias to `values[t]`, so task t's
    mask is `sigmoid(values[t])` everywhere."""
    for kernel, bias in layer.attention_h:
        kernel.assign(np.zeros(kernel.shape, "float32"))
        bias.assign(np.repeat(np.asarray(values, "float32")[:, None], bias.shape[1],
                              axis=1))


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_output_shapes(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = MTAN(names, units=UNITS)
    out = layer(random_inputs())
    assert list(out) == names
    assert all(tuple(v.shape) == (7, 4) for v in out.values())
    assert layer.compute_output_shape((None, D_IN)) == {n: (None, 4) for n in names}


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
@pytest.mark.parametrize("shared_extractor", [True, False])
@pytest.mark.parametrize("attention_units", [None, 3])
def test_weight_count_matches_the_docstring_formula(num_tasks, shared_extractor,
                                                    attention_units):
    layer = MTAN([f"t{i}" for i in range(num_tasks)], units=UNITS,
                 attention_units=attention_units, shared_extractor=shared_extractor)
    layer(random_inputs())
    k1, k2 = (8, 4) if attention_units is None else (3, 3)
    trunk = (5 * 8 + 8) + (8 * 4 + 4)  # sum(d_{l-1} d_l + d_l)
    extractor = 8 * 4 + 4  # level 2 only: d_1 d_2 + d_2
    extractors = 1 if shared_extractor else num_tasks
    attention = (
        (8 * k1 + k1 + k1 * 8 + 8)  # level 1: m_1 = d_1 = 8
        + (2 * 4 * k2 + k2 + k2 * 4 + 4)  # level 2: m_2 = 2 d_2 = 8
    )
    expected = trunk + extractors * extractor + num_tasks * attention
    assert trainable_count(layer) == expected
    assert expected == {
        (None, True, 1): 320, (None, True, 2): 520, (None, True, 5): 1120,
        (None, False, 1): 320, (None, False, 2): 556, (None, False, 5): 1264,
        (3, True, 1): 222, (3, True, 2): 324, (3, True, 5): 630,
        (3, False, 1): 222, (3, False, 2): 360, (3, False, 5): 774,
    }[(attention_units, shared_extractor, num_tasks)]


@pytest.mark.parametrize("shared_extractor", [True, False])
def test_values_match_the_attention_equations(shared_extractor):
    layer = MTAN(["a", "b", "c"], units=(6, 5, 3), attention_units=4,
                 shared_extractor=shared_extractor)
    x = random_inputs()
    out = layer(x)
    masks, attended = _reference(layer, x)
    for level, mask in enumerate(layer.attention_masks(x)):
        np.testing.assert_allclose(to_numpy(mask), masks[level], rtol=1e-5, atol=1e-6)
    for t, name in enumerate(["a", "b", "c"]):
        np.testing.assert_allclose(to_numpy(out[name]), attended[-1][t], rtol=1e-5,
                                   atol=1e-6)


def test_masks_of_ones_give_the_trunk_output():
    """With every mask equal to 1 each task reads the plain trunk:
    relu(relu(x W1 + b1) W2 + b2), whatever the extractors and `g` compute."""
    layer = MTAN(["a", "b"], units=UNITS)
    x = random_inputs()
    layer(x)
    # sigmoid(40) rounds to exactly 1 in float32.
    _set_mask_biases(layer, [40.0, 40.0])
    (k0, b0), (k1, b1) = ((to_numpy(k), to_numpy(b)) for k, b in layer.trunk)
    expected = relu(relu(x @ k0 + b0) @ k1 + b1)
    out = layer(x)
    for name in ("a", "b"):
        np.testing.assert_allclose(to_numpy(out[name]), expected, rtol=1e-6,
                                   atol=1e-6)
    for mask in layer.attention_masks(x):
        np.testing.assert_array_equal(to_numpy(mask), 1.0)


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_masks_are_strictly_between_zero_and_one(num_tasks):
    layer = MTAN([f"t{i}" for i in range(num_tasks)], units=(8, 6, 4))
    x = random_inputs(rows=50, scale=3.0)
    layer(x)
    masks = layer.attention_masks(x)
    assert [tuple(m.shape) for m in masks] == [(num_tasks, 50, u) for u in (8, 6, 4)]
    for mask in masks:
        mask = to_numpy(mask)
        assert mask.min() > 0.0 and mask.max() < 1.0
        # Not a constant: the mask depends on the input.
        assert mask.std() > 1e-3


def test_diagnostics_are_the_mean_mask_per_task_and_level():
    layer = MTAN(["a", "b", "c"], units=(8, 6, 4))
    x = random_inputs(rows=9)
    layer(x)
    matrix, rows, columns = layer.diagnostics(x)["attention"]
    assert rows == ["a", "b", "c"]
    assert columns == ["level_0", "level_1", "level_2"]
    expected = np.stack([to_numpy(m).mean(axis=(1, 2)) for m in
                         layer.attention_masks(x)], axis=1)
    assert expected.shape == (3, 3)
    np.testing.assert_allclose(to_numpy(matrix), expected, rtol=1e-6)
    # Constant masks: sigmoid(0) = 1/2, sigmoid(log 3) = 3/4, sigmoid(-log 4) = 1/5.
    _set_mask_biases(layer, [0.0, np.log(3.0), -np.log(4.0)])
    matrix = to_numpy(layer.diagnostics(x)["attention"][0])
    np.testing.assert_allclose(matrix, [[0.5] * 3, [0.75] * 3, [0.2] * 3], rtol=1e-6)


@pytest.mark.parametrize("options", [
    {},
    {"attention_units": [3, 2], "shared_extractor": False, "dropout": 0.25,
     "activation": "tanh", "kernel_regularizer": "l2"},
])
def test_config_round_trip_gives_identical_outputs(options):
    layer = MTAN(["a", "b"], units=(6, 4), name="mtan", **options)
    x = random_inputs()
    expected = layer(x)
    config = json.loads(json.dumps(architectures.serialize(layer)))
    copy = architectures.deserialize(config)
    assert isinstance(copy, MTAN)
    assert copy.get_config() == layer.get_config()
    copy(x)
    copy.set_weights(layer.get_weights())
    actual = copy(x)
    for name in ("a", "b"):
        np.testing.assert_array_equal(to_numpy(actual[name]), to_numpy(expected[name]))


def test_weights_start_different():
    """Kernels of the same shape (trunk level 2 and the shared extractor here, the
    tasks' modules) start from different draws."""
    layer = MTAN(["a", "b"], units=(8, 8))
    layer(random_inputs())
    kernels = {w.path.split("/")[-1]: to_numpy(w) for w in layer.weights
               if w.path.endswith("kernel")}
    assert kernels["trunk_1_kernel"].shape == kernels["extractor_1_kernel"].shape
    assert not np.allclose(kernels["trunk_1_kernel"], kernels["extractor_1_kernel"])
    for name in ("attention_g_0_kernel", "attention_h_1_kernel"):
        assert not np.allclose(kernels[name][0], kernels[name][1])


def test_int_attention_units_apply_to_every_level():
    layer = MTAN(["a"], units=(8, 6, 4), attention_units=3)
    assert layer.get_config()["attention_units"] == [3, 3, 3]
    layer(random_inputs())
    assert [tuple(k.shape) for k, _ in layer.attention_g] == [
        (1, 8, 3), (1, 12, 3), (1, 8, 3)]


def test_dropout_only_in_training():
    layer = MTAN(["a", "b"], units=(16, 8), dropout=0.5)
    x = random_inputs(rows=20)
    inference = to_numpy(layer(x, training=False)["a"])
    np.testing.assert_array_equal(inference, to_numpy(layer(x)["a"]))
    keras.utils.set_random_seed(0)
    assert not np.allclose(to_numpy(layer(x, training=True)["a"]), inference)


def test_regularizer_adds_losses():
    layer = MTAN(["a", "b"], units=(6, 4), kernel_regularizer="l2")
    layer(random_inputs())
    # One l2 term per kernel: 2 trunk, 1 shared extractor, 2 levels x (g, h),
    # each 0.01 (Keras's default l2 factor) times the kernel's sum of squares.
    assert len(layer.losses) == 2 + 1 + 4
    kernels = [w for w in layer.trainable_weights if w.path.endswith("_kernel")]
    assert len(kernels) == 7
    expected = 0.01 * sum(float(np.sum(np.square(to_numpy(k)))) for k in kernels)
    assert float(sum(to_numpy(loss) for loss in layer.losses)) == pytest.approx(
        expected, rel=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"task_names": []}, "task_names"),
    ({"task_names": ["a", "a"]}, "task_names"),
    ({"task_names": ["a"], "units": []}, "units"),
    ({"task_names": ["a"], "units": [8, 4], "attention_units": [3]},
     "attention_units"),
    ({"task_names": ["a"], "attention_units": 0}, "attention_units"),
    ({"task_names": ["a"], "dropout": 1.0}, "dropout"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MTAN(**kwargs)
