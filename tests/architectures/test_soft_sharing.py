"""SoftSharing: shapes, weight count, the penalty and the tower distances against
hand-computed numbers, config round trip, and the penalty in a MultiTaskModel
(added to the loss, logged as `sharing_penalty`, its gradient in both train-step
paths, pulling the towers together)."""

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
from kmtl import architectures
from kmtl.architectures import SoftSharing
from kmtl.data import make_dataset

D_IN = 5


# --- The layer ---------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_shapes_and_weight_count(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = SoftSharing(names, units=(8, 4))
    out = layer(random_inputs())
    assert list(out) == names
    assert all(tuple(v.shape) == (7, 4) for v in out.values())
    # num_tasks * sum(d_in * u + u) = num_tasks * (5 * 8 + 8 + 8 * 4 + 4).
    assert trainable_count(layer) == num_tasks * 84
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        (num_tasks, 5, 8), (num_tasks, 8), (num_tasks, 8, 4), (num_tasks, 4)]
    assert layer.compute_output_shape((None, D_IN)) == {n: (None, 4) for n in names}


def test_each_task_reads_its_own_tower():
    layer = SoftSharing(["a", "b", "c"], units=(6, 3))
    x = random_inputs()
    out = layer(x)
    k0, b0, k1, b1 = (to_numpy(w) for w in layer.weights)
    for t, name in enumerate(["a", "b", "c"]):
        expected = relu(relu(x @ k0[t] + b0[t]) @ k1[t] + b1[t])
        np.testing.assert_allclose(to_numpy(out[name]), expected, rtol=1e-5,
                                   atol=1e-6)
    # Independent draws, not copies of one tower.
    assert not np.allclose(k0[0], k0[1])


def _set_weights(layer):
    """Three towers of units (2, 1) on 2 inputs with hand-picked kernels.

    Layer 0 kernels 0, 1, 2 (all entries): pair distances^2 4 * (1, 4, 1) = 24.
    Layer 1 kernels [1, 0], [0, 1], [1, 1]: pair distances^2 2, 1, 1 = 4.
    Biases are large and different: they must not count.
    """
    layer.build((None, 2))
    layer.set_weights([
        np.stack([np.zeros((2, 2)), np.ones((2, 2)), 2 * np.ones((2, 2))]),
        np.array([[10.0, -10.0], [5.0, 3.0], [-7.0, 0.0]]),
        np.array([[[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [1.0]]]),
        np.array([[100.0], [-100.0], [3.0]]),
    ])


def test_penalty_equals_the_hand_computed_value():
    layer = SoftSharing(["a", "b", "c"], units=(2, 1), strength=0.5)
    _set_weights(layer)
    # 0.5 * (24 + 4)
    assert float(layer.penalty()) == pytest.approx(14.0, rel=1e-6)
    layer(np.ones((4, 2), "float32"))
    assert [float(v) for v in layer.losses] == pytest.approx([14.0], rel=1e-6)


def test_no_penalty_for_one_task_or_zero_strength():
    single = SoftSharing(["a"], units=(3,), strength=10.0)
    single(random_inputs())
    assert float(single.penalty()) == 0.0
    assert single.losses == []
    free = SoftSharing(["a", "b"], units=(3,), strength=0.0)
    free(random_inputs())
    assert float(free.penalty()) == 0.0
    assert free.losses == []


def test_penalty_is_a_function_of_the_weights_only():
    layer = SoftSharing(["a", "b"], units=(4,), strength=0.1)
    layer(random_inputs(seed=1))
    first = float(layer.losses[0])
    layer(random_inputs(seed=2) * 100.0)
    assert float(layer.losses[0]) == pytest.approx(first, rel=1e-6)
    kernel = to_numpy(layer.kernels[0])
    assert first == pytest.approx(0.1 * np.sum((kernel[0] - kernel[1]) ** 2),
                                  rel=1e-5)


def test_diagnostics_tower_distances():
    layer = SoftSharing(["a", "b", "c"], units=(2, 1), strength=0.5)
    _set_weights(layer)
    diagnostics = layer.diagnostics(np.ones((3, 2), "float32"))
    assert sorted(diagnostics) == ["tower_distance_0", "tower_distance_1"]
    matrix, rows, columns = diagnostics["tower_distance_1"]
    assert rows == columns == ["a", "b", "c"]
    # ||W_a - W_b|| / sqrt(||W_a|| ||W_b||): norms 1, 1, sqrt(2).
    r = 1 / 2 ** 0.25
    np.testing.assert_allclose(
        to_numpy(matrix), [[0, 2 ** 0.5, r], [2 ** 0.5, 0, r], [r, r, 0]], rtol=1e-5)
    # Layer 0: tower a is all zeros (norm 0); b, c have norms 2, 4 and
    # distance 2: 2 / sqrt(8).
    matrix, _, _ = diagnostics["tower_distance_0"]
    assert to_numpy(matrix)[1, 2] == pytest.approx(2 / 8 ** 0.5, rel=1e-5)
    assert to_numpy(matrix)[0, 0] == 0.0


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_config_round_trip(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = SoftSharing(names, units=(8, 4), activation="tanh", dropout=0.2,
                        strength=0.03, kernel_regularizer="l2", name="arch")
    assert layer.get_config()["strength"] == 0.03
    clone = assert_config_round_trip(layer, random_inputs())
    assert float(clone.penalty()) == pytest.approx(float(layer.penalty()), rel=1e-6)


def test_bad_strength():
    with pytest.raises(ValueError, match="strength=-1"):
        SoftSharing(["a", "b"], strength=-1)


def test_registered_and_created_with_options():
    assert architectures.ARCHITECTURES.get_class("soft_sharing") is SoftSharing
    layer = architectures.get("soft_sharing", task_names=["a", "b"], units=[4],
                              strength=0.2)
    assert type(layer) is SoftSharing
    assert layer.name == "soft_sharing"
    assert layer.strength == 0.2


# --- In a MultiTaskModel -----------------------------------------------------


@pytest.fixture(scope="module")
def penguins_fitted():
    return fitted_penguins()


def _model(fitted, strength, seed=0):
    _, features, tasks = fitted
    keras.utils.set_random_seed(seed)
    return kmtl.build_model(features, tasks, "soft_sharing", tower_units=(4,),
                            units=(6,), strength=strength)


def _data(fitted, rows=64):
    frame, features, tasks = fitted
    return make_dataset(frame.iloc[:rows], features, tasks, rows)


def test_penalty_is_added_to_the_loss_and_logged(penguins_fitted):
    model = _model(penguins_fitted, strength=0.05)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    layer = model.get_layer("soft_sharing")
    before = float(layer.penalty())
    assert before > 0
    data = _data(penguins_fitted)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False).history
    # One batch per epoch: the first epoch logs the penalty before any update.
    assert history["sharing_penalty"][0] == pytest.approx(before, rel=1e-5)
    assert history["sharing_penalty"][1] < before
    logs = model.evaluate(data, verbose=0, return_dict=True)
    after = float(layer.penalty())
    assert logs["sharing_penalty"] == pytest.approx(after, rel=1e-5)
    # One batch: loss = sum_t w_t L_t + penalty.
    tasks = sum(model.loss_weights[n] * logs[f"{n}_loss"] for n in model.task_names)
    assert logs["loss"] == pytest.approx(tasks + after, rel=1e-5)


def test_no_sharing_penalty_log_without_penalty_layers(penguins_fitted):
    _, features, tasks = penguins_fitted
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,))
    model.compile()
    logs = model.evaluate(_data(penguins_fitted), verbose=0, return_dict=True)
    assert "sharing_penalty" not in logs


@pytest.mark.parametrize("weighting", [None, "mgda"])
def test_penalty_gradient_reaches_the_towers(penguins_fitted, weighting):
    """One SGD step with strength s differs from the step with strength 0 by
    -lr * s * dP/dW, dP/dW_a = 2 T (W_a - mean_b W_b), in the loss-weighting
    path and in the per-task gradient path (where the task gradients do not
    depend on s)."""
    lr, strength = 0.1, 0.2
    models = [_model(penguins_fitted, s) for s in (0.0, strength)]
    models[1].set_weights(models[0].get_weights())
    kernels = []
    for model in models:
        # Eagerly: one step does not pay for tracing the train function.
        model.compile(optimizer=keras.optimizers.SGD(lr), weighting=weighting,
                      run_eagerly=True)
        kernel = model.get_layer("soft_sharing").kernels[0]
        start = to_numpy(kernel)
        model.fit(_data(penguins_fitted), epochs=1, verbose=0, shuffle=False)
        kernels.append(to_numpy(kernel))
    expected = -lr * strength * 2 * 3 * (start - start.mean(axis=0))
    np.testing.assert_allclose(kernels[1] - kernels[0], expected, rtol=1e-3,
                               atol=1e-6)


def test_penalty_pulls_the_towers_together(penguins_fitted):
    distances = {}
    for strength in (0.0, 1.0):
        model = _model(penguins_fitted, strength)
        model.compile(optimizer=keras.optimizers.Adam(0.03), run_eagerly=True)
        layer = model.get_layer("soft_sharing")
        start = to_numpy(layer.diagnostics(None)["tower_distance_0"][0])
        model.fit(_data(penguins_fitted).repeat(8), verbose=0, shuffle=False)
        end = to_numpy(layer.diagnostics(None)["tower_distance_0"][0])
        off_diagonal = ~np.eye(3, dtype=bool)
        distances[strength] = (start[off_diagonal].mean(), end[off_diagonal].mean())
    assert distances[0.0][0] == pytest.approx(distances[1.0][0])  # same start
    # Measured: 1.38 -> 1.36 without the penalty, 1.38 -> 0.68 with it.
    assert distances[1.0][1] < 0.6 * distances[0.0][1]
