"""Gradient cosines and lookahead inter-task affinity on toy problems where the
answer is known, against a hand-made lookahead step, and the `TaskInterference`
callback."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import fitted_penguins

import kmtl
from kmtl.callbacks.task_interference import TaskInterference
from kmtl.data import make_dataset
from kmtl.features import Feature
from kmtl.measures.interference import gradient_cosines
from kmtl.measures.interference import lookahead_affinity

ROWS = 64
NAMES = ("y", "y_copy", "y_neg")


def _toy_frame():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3))
    frame = pd.DataFrame(x, columns=list("abc"))
    frame["y"] = x @ np.array([1.0, -2.0, 0.5])
    frame["y_copy"] = frame["y"]
    frame["y_neg"] = -frame["y"]
    return frame


def _toy_model(frame, activation="relu", units=8):
    """A shared bottom and bare heads for `y`, a copy of it and its negation;
    every head starts with the same weights."""
    tasks = [kmtl.Task(n, "regression", target=n) for n in NAMES]
    for task in tasks:
        task.fit(frame)
    features = [Feature(c, "numeric").fit(frame) for c in "abc"]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(units,),
                             activation=activation, tower_units=())
    heads = [model.get_layer(f"{n}_head") for n in NAMES]
    for head in heads[1:]:
        head.set_weights(heads[0].get_weights())
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model, features, tasks


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _assert_unchanged(model, before):
    after = _weights(model)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def zero_prediction():
    """A linear shared bottom whose first unit is 0 on every row and heads that
    read only that unit: every prediction is the label mean (0 standardized)."""
    frame = _toy_frame()
    model, features, tasks = _toy_model(frame, activation="linear", units=2)
    kernel, bias = model.get_layer("shared_bottom").get_weights()
    kernel[:, 0] = 0.0
    model.get_layer("shared_bottom").set_weights([kernel, np.zeros_like(bias)])
    for name in NAMES:
        model.get_layer(f"{name}_head").set_weights(
            [np.array([[1.0], [0.0]], "float32"), np.zeros((1,), "float32")])
    data = make_dataset(frame, features, tasks, ROWS)
    # The shared layer's input u (normalized features and missing indicators),
    # and the standardized labels t: the loss is mean((p - t)^2).
    x = next(iter(data))[0]
    encoder = model.submodel(model.get_layer("numeric_impute").output, x)
    u = encoder(x).numpy().astype("float64")
    targets = {t.name: np.asarray(t.standardize(frame[t.name].to_numpy("float32")),
                                  "float64") for t in tasks}
    return model, data, u, targets


def test_cosines_of_copied_and_negated_tasks(zero_prediction):
    model, data, _, _ = zero_prediction
    before = _weights(model)
    cosines = gradient_cosines(model, data)
    # p = 0: the residuals are -t, -t and +t, so the gradients are g, g, -g.
    expected = np.array([[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    np.testing.assert_allclose(cosines, expected, atol=1e-5)
    _assert_unchanged(model, before)


def test_lookahead_affinity_by_hand(zero_prediction):
    model, data, u, targets = zero_prediction
    before = _weights(model)
    rate = 0.05
    affinity = lookahead_affinity(model, data, learning_rate=rate)
    # With p = 0 only the first shared unit's kernel column w and bias c move:
    # g_i = (2/N) sum_n (0 - t_i,n) (u_n, 1); after the step on task i,
    # p_n = -rate * (g_w . u_n + g_c), and Z[i, j] = 1 - L_j(after) / L_j(before).
    expected = np.zeros((3, 3))
    for i, stepped in enumerate(NAMES):
        residual = -targets[stepped]
        g_w = 2.0 / ROWS * residual @ u
        g_c = 2.0 / ROWS * residual.sum()
        p = -rate * (u @ g_w + g_c)
        for j, measured in enumerate(NAMES):
            t = targets[measured]
            expected[i, j] = 1.0 - np.mean((p - t) ** 2) / np.mean(t ** 2)
    np.testing.assert_allclose(affinity, expected, rtol=1e-4, atol=1e-6)
    # y_neg's target is -y's: a step for y helps y and hurts y_neg, and back.
    assert affinity[0, 0] > 0 and affinity[2, 2] > 0
    assert affinity[2, 0] < 0 and affinity[0, 2] < 0
    _assert_unchanged(model, before)


def test_identical_tasks_have_identical_affinity():
    frame = _toy_frame()
    model, features, tasks = _toy_model(frame)
    data = make_dataset(frame, features, tasks, 32)
    before = _weights(model)
    affinity = lookahead_affinity(model, data, batches=2)
    cosines = gradient_cosines(model, data, batches=2)
    _assert_unchanged(model, before)
    # y and y_copy: same labels, same head weights.
    np.testing.assert_allclose(affinity[0, 1], affinity[0, 0], rtol=1e-5)
    np.testing.assert_allclose(affinity[1, 0], affinity[1, 1], rtol=1e-5)
    np.testing.assert_allclose(affinity[0], affinity[1], rtol=1e-5)
    assert cosines[0, 1] == pytest.approx(1.0, abs=1e-5)
    # The negated task pulls the other way.
    assert cosines[0, 2] < 0 and affinity[2, 0] < 0 < affinity[0, 0]
    # Default step size: the optimizer's learning rate (SGD(0.1)).
    np.testing.assert_allclose(
        affinity, lookahead_affinity(model, data, learning_rate=0.1, batches=2),
        rtol=1e-6)
    # A smaller step moves the losses less.
    small = lookahead_affinity(model, data, learning_rate=0.01, batches=2)
    assert 0 < small[0, 0] < affinity[0, 0]


@pytest.fixture(scope="module")
def penguins_mmoe():
    frame, features, tasks = fitted_penguins(rows=48)
    keras.utils.set_random_seed(1)
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=2,
                             expert_units=(4,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(0.2))
    return model, make_dataset(frame, features, tasks, 48)


def _reference_affinity(model, batch, rate):
    """Z by stepping the real variables (assign, evaluate, restore): every
    variable outside the towers, the heads and MMoE's gates (gate t belongs to
    task t) is shared."""
    x, y, sample_weight = batch
    names = model.task_names
    own = tuple(f"{n}{part}" for n in names for part in ("_tower", "_head", "/"))
    shared = [v for v in model.trainable_variables
              if not v.path.startswith(own) and "/gate_" not in v.path]
    assert any("/gate_" in v.path for v in model.trainable_variables)

    def losses():
        task_losses = model.compute_task_losses(y, model.forward(x, training=False),
                                                sample_weight)
        return np.array([float(task_losses[n]) for n in names])

    start = [v.numpy() for v in shared]
    base = losses()
    z = np.zeros((len(names), len(names)))
    for i, name in enumerate(names):
        with tf.GradientTape() as tape:
            loss = model.compute_task_losses(y, model.forward(x, training=False),
                                             sample_weight)[name]
        for v, g in zip(shared, tape.gradient(loss, shared)):
            v.assign(v.numpy() - rate * tf.convert_to_tensor(g).numpy())
        z[i] = 1.0 - losses() / base
        for v, value in zip(shared, start):
            v.assign(value)
    return z


def test_lookahead_matches_a_real_step_on_mmoe(penguins_mmoe):
    # Categorical embeddings (sparse gradients), three task types, and 11
    # unlabelled `sex` rows in the table.
    model, data = penguins_mmoe
    before = _weights(model)
    affinity = lookahead_affinity(model, data)
    _assert_unchanged(model, before)
    reference = _reference_affinity(model, next(iter(data)), 0.2)
    np.testing.assert_allclose(affinity, reference, rtol=1e-3, atol=1e-5)
    assert np.all(np.diag(affinity) > 0)


def test_unlabelled_pairs_are_left_out():
    frame = _toy_frame()
    model, features, tasks = _toy_model(frame)
    # No y_neg labels in the first batch of 32 rows.
    blank = frame.copy()
    blank.loc[:31, "y_neg"] = np.nan
    data = make_dataset(blank, features, tasks, 32)
    second = data.skip(1)
    first_cosines = gradient_cosines(model, data)
    first_affinity = lookahead_affinity(model, data)
    assert np.isnan(first_cosines[2]).all() and np.isnan(first_cosines[:, 2]).all()
    assert np.isnan(first_affinity[2]).all()
    assert np.isnan(first_affinity[:, 2]).all()
    assert not np.isnan(first_affinity[:2, :2]).any()
    # Over both batches, pairs with y_neg average over the second batch only.
    both = gradient_cosines(model, data, batches=2)
    only_second = gradient_cosines(model, second)
    np.testing.assert_allclose(both[2], only_second[2], rtol=1e-5)
    np.testing.assert_allclose(
        both[0, 1], (first_cosines[0, 1] + only_second[0, 1]) / 2, rtol=1e-5)
    both = lookahead_affinity(model, data, batches=2)
    only_second = lookahead_affinity(model, second)
    np.testing.assert_allclose(both[:, 2], only_second[:, 2], rtol=1e-5)
    np.testing.assert_allclose(
        both[1, 0], (first_affinity[1, 0] + only_second[1, 0]) / 2, rtol=1e-5)


def test_task_interference_callback():
    frame = _toy_frame()
    model, features, tasks = _toy_model(frame)
    data = make_dataset(frame, features, tasks, 32)
    probe = data.take(1)
    callback = TaskInterference(probe, every=2)
    assert callback.affinity is None and callback.cosines is None
    history = model.fit(data, epochs=4, verbose=0, shuffle=False,
                        callbacks=[callback]).history
    assert callback.epochs == [1, 3]
    assert len(callback.cosines_history) == len(callback.affinity_history) == 2
    assert len(history["affinity_y_y_neg"]) == 2
    assert "affinity_y_y" not in history
    np.testing.assert_allclose(callback.affinity,
                               np.mean(callback.affinity_history, axis=0))
    np.testing.assert_allclose(callback.cosines,
                               np.mean(callback.cosines_history, axis=0))
    assert history["affinity_y_neg_y"][-1] == pytest.approx(
        callback.affinity_history[-1][2, 0])
    # The last record is the trained model's affinity at the optimizer's rate.
    np.testing.assert_allclose(callback.affinity_history[-1],
                               lookahead_affinity(model, probe), rtol=1e-5)
    np.testing.assert_allclose(callback.cosines_history[-1],
                               gradient_cosines(model, probe), rtol=1e-5,
                               atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="every must be a positive integer"):
        TaskInterference(None, every=0)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        TaskInterference(None, learning_rate=0.0)
    frame = _toy_frame()
    model, features, tasks = _toy_model(frame)
    data = make_dataset(frame, features, tasks, 32)
    with pytest.raises(ValueError, match="batches must be a positive integer"):
        gradient_cosines(model, data, batches=0)
    uncompiled = kmtl.build_model(features, tasks, "shared_bottom", units=(4,))
    with pytest.raises(ValueError, match="Compile the model or pass learning_rate"):
        lookahead_affinity(uncompiled, data)


def test_nothing_shared_gives_nan_not_zero():
    """Soft sharing over numeric features: each tower is its task's own and the
    encoder has no trainable weight, so there is nothing to measure."""
    frame = _toy_frame()
    tasks = [kmtl.Task(n, "regression", target=n) for n in NAMES]
    for task in tasks:
        task.fit(frame)
    features = [Feature(c, "numeric").fit(frame) for c in "abc"]
    model = kmtl.build_model(features, tasks, "soft_sharing", units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    data = make_dataset(frame, features, tasks, 32)
    assert model.task_gradients(next(iter(data)))[0].shape == (3, 0)
    assert np.isnan(gradient_cosines(model, data)).all()
    assert np.isnan(lookahead_affinity(model, data)).all()
