"""Dynamic loss weighting (uncertainty, GradNorm, DWA, RLW, GLS): the numbers each
method must give, derived by hand from its paper's formulas, masking of
unlabelled tasks, graph/XLA execution, config round trips with non-default
arguments, fits whose outcome each method's formula predicts, and the steps under
tf.distribute. The checks every method shares (short fit, `.keras` round trip)
are in `test_registered_weightings.py`."""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from weighting_case import check_config_round_trip

import kmtl
from kmtl.data import make_dataset
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import penguin_tasks
from kmtl.features import resolve_features
from kmtl.tasks import Task
from kmtl.weighting.dwa import DWA
from kmtl.weighting.gls import GLS
from kmtl.weighting.gradnorm import GradNorm
from kmtl.weighting.rlw import RLW
from kmtl.weighting.uncertainty import UncertaintyWeighting

METHODS = ("uncertainty", "gradnorm", "dwa", "rlw", "gls")
NAMES = ("a", "b", "c")


def _built(spec, names=NAMES):
    weighting = kmtl.weighting.get(spec)
    weighting.build_tasks(list(names))
    return weighting


def _f32(values):
    return tf.convert_to_tensor(values, tf.float32)


def _step(weighting, losses, labelled, gradients=None):
    """`(total or direction, weights)` of one step of a weighting."""
    losses, labelled = _f32(losses), tf.convert_to_tensor(labelled)
    if weighting.gradient_based:
        if gradients is None:
            gradients = np.ones((len(labelled), 3)) * np.asarray(labelled)[:, None]
        return weighting.aggregate_gradients(_f32(gradients), losses, labelled)
    return weighting.combine_losses(losses, labelled)


# === Uncertainty weighting ===


def test_uncertainty_total_and_weights_by_hand():
    weighting = _built("uncertainty")
    s = [0.0, math.log(2.0), -1.0]
    weighting.log_variances.assign(s)
    losses = [1.5, 2.0, 0.7]
    total, weights = _step(weighting, losses, [True, True, True])
    # sum_t exp(-s_t) L_t + s_t
    expected = 1.5 + (1.0 + math.log(2.0)) + (0.7 * math.e - 1.0)
    assert float(total) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(weights, [1.0, 0.5, math.e], rtol=1e-6)


def test_uncertainty_leaves_an_unlabelled_task_out_of_both_terms():
    weighting = _built("uncertainty")
    weighting.log_variances.assign([0.5, 2.0, -1.0])
    with tf.GradientTape() as tape:
        total, weights = _step(weighting, [1.0, 0.0, 0.7], [True, False, True])
    gradient = tape.gradient(total, weighting.log_variances)
    expected = math.exp(-0.5) + 0.5 + 0.7 * math.e - 1.0
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert float(weights[1]) == 0.0
    # d/ds_t = 1 - exp(-s_t) L_t for a labelled task, 0 for the unlabelled one.
    np.testing.assert_allclose(
        gradient, [1 - math.exp(-0.5), 0.0, 1 - 0.7 * math.e], rtol=1e-6)


def test_uncertainty_log_variances_reach_the_noise_variances():
    """Two regression tasks y_t = x.w_t + noise, noise sd 0.5 and 2.0, labels not
    standardized. For a fixed loss, exp(-s) L + s is minimal at exp(s) = L, and a
    fitted linear model's mean squared error is the noise variance: exp(s_t) ->
    0.25 and 4.0."""
    rng = np.random.default_rng(0)
    rows = 2048
    x = rng.normal(size=(rows, 4)).astype("float32")
    y = {"a": x @ rng.normal(size=(4, 1)) + 0.5 * rng.normal(size=(rows, 1)),
         "b": x @ rng.normal(size=(4, 1)) + 2.0 * rng.normal(size=(rows, 1))}
    y = {k: v.astype("float32") for k, v in y.items()}
    tasks = [Task(n, "regression", target_mean=0.0, target_std=1.0) for n in y]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    outputs = {n: keras.layers.Dense(1, name=n)(inputs) for n in y}
    model = kmtl.MultiTaskModel({"x": inputs}, outputs, tasks=tasks)
    model.compile(optimizer=keras.optimizers.Adam(0.05), weighting="uncertainty")
    assert model.weighting.log_variances.path in [
        v.path for v in model.trainable_variables]
    logs = model.fit({"x": x}, y, batch_size=64, epochs=6, verbose=0).history
    variances = np.exp(model.weighting.log_variances.numpy())
    np.testing.assert_allclose(variances, [0.25, 4.0], rtol=0.15)
    assert logs["a_weight"][-1] == pytest.approx(1 / 0.25, rel=0.2)
    assert logs["b_weight"][-1] == pytest.approx(1 / 4.0, rel=0.2)


# === GradNorm ===


def _gradnorm_reference(weights, norms, losses, initial, alpha, rate):
    """One GradNorm weight step, written out from the paper's equations."""
    weights, norms = np.asarray(weights, "float64"), np.asarray(norms, "float64")
    ratios = np.asarray(losses, "float64") / np.asarray(initial, "float64")
    rates = ratios / ratios.mean()
    g = weights * norms
    targets = g.mean() * rates ** alpha
    stepped = weights - rate * np.sign(g - targets) * norms
    return stepped * len(weights) / stepped.sum()


def test_gradnorm_weight_update_by_hand():
    weighting = _built("gradnorm", ("a", "b"))
    gradients = [[3.0, 4.0], [1.0, 0.0]]  # norms 5 and 1
    direction, used = _step(weighting, [1.0, 2.0], [True, True], gradients)
    # Step 1: L(0) = L, so r = (1, 1); G = (5, 1), mean 3, targets (3, 3);
    # w - 0.025 * sign(G - 3) * |g| = (0.875, 1.025), renormalized to sum 2.
    np.testing.assert_allclose(direction, [4.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(used, [1.0, 1.0])
    first = [0.875 * 2 / 1.9, 1.025 * 2 / 1.9]
    np.testing.assert_allclose(weighting.task_weights, first, rtol=1e-6)
    np.testing.assert_allclose(weighting.initial_losses, [1.0, 2.0])
    # Step 2: the losses fell to (0.5, 1.6): loss ratios (0.5, 0.8).
    direction, used = _step(weighting, [0.5, 1.6], [True, True], gradients)
    np.testing.assert_allclose(used, first, rtol=1e-6)
    np.testing.assert_allclose(direction, np.asarray(first) @ gradients, rtol=1e-6)
    second = _gradnorm_reference(first, [5.0, 1.0], [0.5, 1.6], [1.0, 2.0],
                                 alpha=1.5, rate=0.025)
    np.testing.assert_allclose(weighting.task_weights, second, rtol=1e-5)
    assert float(np.sum(weighting.task_weights)) == pytest.approx(2.0)


def test_gradnorm_skips_an_unlabelled_task_and_sets_its_first_loss_later():
    weighting = _built("gradnorm(alpha=0.5, learning_rate=0.1)")
    gradients = [[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    direction, used = _step(weighting, [1.0, 0.0, 3.0], [True, False, True],
                            gradients)
    # Labelled tasks: G = (2, 1), mean 1.5, r = 1: steps (+2, -1) * 0.1, then
    # rescaled to keep their sum 2; the unlabelled task keeps weight 1.
    stepped = np.array([0.8, 1.1])
    expected = [*(stepped[:1] * 2 / 1.9), 1.0, *(stepped[1:] * 2 / 1.9)]
    np.testing.assert_allclose(weighting.task_weights, expected, rtol=1e-6)
    np.testing.assert_allclose(used, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(direction, [2.0, 1.0])
    np.testing.assert_allclose(weighting.initialized, [1.0, 0.0, 1.0])
    _step(weighting, [1.0, 0.4, 3.0], [False, True, False], gradients)
    np.testing.assert_allclose(weighting.initial_losses, [1.0, 0.4, 3.0])
    assert float(np.sum(weighting.task_weights)) == pytest.approx(3.0)


# === DWA ===


def test_dwa_weights_by_hand_from_the_loss_history():
    weighting = _built("dwa", ("a", "b"))
    weighting.loss_history.assign([[1.0, 2.0], [0.5, 1.8]])  # L(e-2), L(e-1)
    weighting.epochs_recorded.assign(2.0)
    total, weights = _step(weighting, [0.4, 1.7], [True, True])
    # r = (0.5, 0.9); w = 2 exp(r / 2) / (exp(0.25) + exp(0.45)).
    denominator = math.exp(0.25) + math.exp(0.45)
    expected = [2 * math.exp(0.25) / denominator, 2 * math.exp(0.45) / denominator]
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert float(total) == pytest.approx(0.4 * expected[0] + 1.7 * expected[1])
    _, weights = _step(weighting, [0.0, 1.7], [False, True])
    np.testing.assert_allclose(weights, [0.0, expected[1]], rtol=1e-6)


def test_dwa_weights_are_equal_until_two_epochs_are_recorded():
    weighting = _built("dwa", ("a", "b"))
    weighting.loss_history.assign([[1.0, 2.0], [0.5, 1.8]])
    for epochs in (0.0, 1.0):
        weighting.epochs_recorded.assign(epochs)
        _, weights = _step(weighting, [0.4, 1.7], [True, True])
        np.testing.assert_array_equal(weights, [1.0, 1.0])


def test_dwa_callback_records_training_batches_and_rolls_the_history():
    weighting = _built("dwa", ("a", "b"))
    (callback,) = weighting.callbacks()
    _step(weighting, [9.0, 9.0], [True, True])  # outside fit: not recorded
    callback.on_epoch_begin(0)
    _step(weighting, [1.0, 4.0], [True, True])
    _step(weighting, [3.0, 0.0], [True, False])  # task b unlabelled: not counted
    callback.on_test_begin()
    _step(weighting, [50.0, 50.0], [True, True])  # validation: not recorded
    callback.on_epoch_end(0)
    np.testing.assert_allclose(weighting.loss_history, [[0.0, 0.0], [2.0, 4.0]])
    np.testing.assert_array_equal(weighting.loss_sums, [0.0, 0.0])
    np.testing.assert_array_equal(weighting.loss_counts, [0.0, 0.0])
    callback.on_epoch_begin(1)
    _step(weighting, [1.0, 1.0], [True, True])
    callback.on_epoch_end(1)
    np.testing.assert_allclose(weighting.loss_history, [[2.0, 4.0], [1.0, 1.0]])
    assert float(weighting.epochs_recorded) == 2.0
    _, weights = _step(weighting, [1.0, 1.0], [True, True])
    expected = 2 * np.exp([0.25, 0.125]) / np.exp([0.25, 0.125]).sum()
    np.testing.assert_allclose(weights, expected, rtol=1e-6)


# === RLW ===


def test_rlw_weights_sum_to_one_change_every_step_and_follow_the_seed():
    def draws(seed, steps=4):
        weighting = _built(RLW(seed=seed))
        return np.stack([_step(weighting, [1.0, 2.0, 3.0], [True] * 3)[1]
                         for _ in range(steps)])

    first = draws(seed=5)
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-6)
    assert (first > 0).all()
    assert not np.allclose(first[0], first[1])
    np.testing.assert_array_equal(first, draws(seed=5))
    assert not np.allclose(first, draws(seed=6))
    uniform = _built("rlw(distribution='uniform', seed=1)")
    total, weights = _step(uniform, [1.0, 2.0, 3.0], [True] * 3)
    assert float(np.sum(weights)) == pytest.approx(1.0)
    assert float(total) == pytest.approx(float(np.dot(weights, [1.0, 2.0, 3.0])))


def test_rlw_softmax_is_over_the_labelled_tasks():
    weighting = _built("rlw(seed=2)")
    total, weights = _step(weighting, [1.0, 0.0, 3.0], [True, False, True])
    assert float(weights[1]) == 0.0
    assert float(np.sum(weights)) == pytest.approx(1.0)
    assert float(total) == pytest.approx(float(weights[0] + 3 * weights[2]))


# === GLS ===


def test_gls_total_is_the_geometric_mean_and_weights_its_gradient():
    weighting = _built("gls")
    losses = _f32([1.0, 4.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(losses)
        total, weights = weighting.combine_losses(losses, tf.constant([True] * 3))
    # (1 * 4 * 2)^(1/3) = 2; d total / d L_t = total / (3 L_t).
    assert float(total) == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(weights, [2 / 3, 1 / 6, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, losses), weights, rtol=1e-6)


def test_gls_leaves_out_unlabelled_tasks():
    weighting = _built("gls")
    total, weights = _step(weighting, [2.0, 0.0, 8.0], [True, False, True])
    # sqrt(2 * 8) = 4; weights 4 / (2 L_t).
    assert float(total) == pytest.approx(4.0, rel=1e-6)
    np.testing.assert_allclose(weights, [1.0, 0.0, 0.25], rtol=1e-6)


# === Every method: masking, graph and XLA, config ===


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("labelled", [[True, False, True], [False, False, False]])
def test_unlabelled_tasks_get_weight_zero_and_nothing_is_nan(method, labelled):
    weighting = _built(method)
    if method == "dwa":
        weighting.loss_history.assign([[1.0, 1.0, 1.0], [0.5, 0.0, 2.0]])
        weighting.epochs_recorded.assign(2.0)
    losses = _f32([0.7 * f for f in labelled])
    trainable = weighting.trainable_variables
    with tf.GradientTape() as tape:
        tape.watch(losses)
        value, weights = _step(weighting, losses, labelled)
        scalar = tf.reduce_sum(value)
    gradients = tape.gradient(scalar, [losses, *trainable])
    for tensor in [value, weights, *[g for g in gradients if g is not None]]:
        assert np.isfinite(np.asarray(tensor)).all()
    np.testing.assert_array_equal(np.asarray(weights)[~np.asarray(labelled)], 0.0)
    if not any(labelled):
        assert float(scalar) == 0.0
    for variable in weighting.variables:
        assert np.isfinite(np.asarray(variable)).all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_every_method_runs_in_a_compiled_graph(method, jit_compile):
    eager, graph = _built(method), _built(method)
    for w in (eager, graph):
        if method == "dwa":
            w.loss_history.assign([[1.0, 2.0, 3.0], [0.5, 2.5, 3.0]])
            w.epochs_recorded.assign(2.0)
            w.recording.assign(1.0)
        if method == "uncertainty":
            w.log_variances.assign([0.3, -0.2, 1.0])
    losses, labelled = [0.5, 1.5, 0.0], [True, True, False]
    gradients = [[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    step = tf.function(lambda lo, la, g: _step(graph, lo, la, g),
                       jit_compile=jit_compile)
    for _ in range(2):  # a second call sees the state the first one left
        expected = _step(eager, losses, labelled, gradients)
        result = step(_f32(losses), tf.constant(labelled), _f32(gradients))
        if method == "rlw":
            assert float(np.sum(result[1])) == pytest.approx(1.0, rel=1e-6)
            assert float(result[1][2]) == 0.0
            continue
        for got, want in zip(result, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    for got, want in zip(graph.variables, eager.variables):
        if method != "rlw":
            np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("weighting", [
    UncertaintyWeighting(initial_log_variance=0.5),
    GradNorm(alpha=0.5, learning_rate=0.01),
    DWA(temperature=3.0),
    RLW(distribution="uniform", seed=4),
    GLS(epsilon=1e-6),
], ids=lambda w: type(w).__name__)
def test_config_round_trip(weighting):
    check_config_round_trip(weighting)


def test_spec_strings_and_bad_arguments():
    dwa = kmtl.weighting.get("dwa(temperature=3.0)")
    assert isinstance(dwa, DWA) and dwa.temperature == 3.0
    assert isinstance(kmtl.weighting.get("uncertainty"), UncertaintyWeighting)
    assert kmtl.weighting.get("gradnorm").alpha == 1.5
    assert {"uncertainty", "gradnorm", "dwa", "rlw", "gls"} <= set(
        kmtl.weighting.list_weightings())
    for spec in ("dwa(temperature=0)", "gradnorm(alpha=-1)",
                 "gradnorm(learning_rate=0)", "rlw(distribution='cauchy')",
                 "gls(epsilon=0)", "uncertainty(initial_log_variance=float('nan'))"):
        with pytest.raises(ValueError):
            kmtl.weighting.get(spec)


# === Fits of a penguin model ===


@pytest.fixture(scope="module")
def penguins_fitted():
    frame = kmtl.datasets.load_penguins().dropna().reset_index(drop=True)
    tasks = penguin_tasks()
    for task in tasks:
        task.fit(frame)
    features = resolve_features(frame, **PENGUIN_FEATURES)
    for feature in features:
        feature.fit(frame)
    return frame, features, tasks


def _penguin_model(penguins_fitted, weighting, learning_rate=0.02):
    _, features, tasks = penguins_fitted
    keras.utils.set_random_seed(1)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,),
                             tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  weighting=weighting)
    return model


def _penguin_data(penguins_fitted, rows=slice(None)):
    frame, features, tasks = penguins_fitted
    return make_dataset(frame.iloc[rows], features, tasks, 64, drop_remainder=True)


def test_dwa_history_holds_the_training_epoch_losses(penguins_fitted):
    model = _penguin_model(penguins_fitted, "dwa")
    data = _penguin_data(penguins_fitted, slice(0, 256))
    validation = _penguin_data(penguins_fitted, slice(256, None))
    logs = model.fit(data, validation_data=validation, epochs=2, verbose=0,
                     shuffle=False).history
    names = model.task_names
    for epoch in range(2):
        assert [logs[f"{n}_weight"][epoch] for n in names] == [1.0] * 3
    # Full batches, every row labelled: the epoch means are the logged losses;
    # validation batches are not recorded.
    history = model.weighting.loss_history.numpy()
    for epoch in range(2):
        np.testing.assert_allclose(
            history[epoch], [logs[f"{n}_loss"][epoch] for n in names], rtol=1e-5)
    logs = model.fit(data, epochs=1, verbose=0, shuffle=False).history
    ratios = history[1] / history[0]
    expected = 3 * np.exp(ratios / 2) / np.exp(ratios / 2).sum()
    np.testing.assert_allclose([logs[f"{n}_weight"][0] for n in names], expected,
                               rtol=1e-5)
    # Three epochs rolled into the history; recording is off outside `fit`.
    assert float(model.weighting.epochs_recorded) == 3.0
    assert float(model.weighting.recording) == 0.0


# === tf.distribute ===

MIRRORED_SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import kmtl
    from kmtl.data import make_dataset
    from kmtl.features import resolve_features

    frame = kmtl.datasets.load_penguins().dropna().sample(128, random_state=0)
    frame = frame.reset_index(drop=True)
    tasks = kmtl.datasets.penguin_tasks()
    for task in tasks:
        task.fit(frame)
    features = resolve_features(frame, **kmtl.datasets.PENGUIN_FEATURES)
    for feature in features:
        feature.fit(frame)
    # One MirroredStrategy for every run: a second one in the same process
    # reuses collective keys.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def run(strategy, weighting):
        with strategy.scope():
            keras.utils.set_random_seed(7)
            model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,),
                                     tower_units=(4,))
            model.compile(optimizer=keras.optimizers.SGD(0.05), weighting=weighting)
        initial = [np.asarray(w) for w in model.trainable_weights]
        model.fit(make_dataset(frame, features, tasks, 64), epochs=3, verbose=0,
                  shuffle=False)
        return {"model": [np.asarray(w).ravel().tolist()
                          for w in model.trainable_weights],
                "moved": max(float(np.max(np.abs(np.asarray(w) - i)))
                             for w, i in zip(model.trainable_weights, initial)),
                "state": [np.asarray(v).ravel().tolist()
                          for v in model.weighting.variables]}

    for weighting in sys.argv[1:]:
        print(json.dumps({"weighting": weighting,
                          "single": run(tf.distribute.get_strategy(), weighting),
                          "mirrored": run(mirrored, weighting)}), flush=True)
''')


def test_two_replicas_take_the_single_device_steps():
    """Two replicas of 32 rows each must match one device on 64 rows: the
    uncertainty regularizer is divided by the replica count like the losses, DWA's
    running sums add over replicas, GradNorm's losses and norms are averaged;
    log losses, FAMO's weights and logit steps and DB-MTL's moving averages use
    the replicas' mean losses and gradients. FairGrad and UPGrad aggregate each
    replica's own gradients (as MGDA does: not the single-device step), and must
    still train."""
    exact = ("uncertainty", "dwa", "famo", "db_mtl", "static(log_loss=True)")
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, *exact, "gradnorm", "fairgrad",
         "upgrad"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {r["weighting"]: r for r in map(json.loads, done.stdout.splitlines())}
    for method in ("fairgrad", "upgrad"):
        single, mirrored = runs[method]["single"], runs[method]["mirrored"]
        assert np.all(np.isfinite(np.concatenate(mirrored["model"])))
        assert mirrored["moved"] > 0.01 and single["moved"] > 0.01
    for method in exact:
        single, mirrored = runs[method]["single"], runs[method]["mirrored"]
        for key in ("model", "state"):
            for a, b in zip(single[key], mirrored[key]):
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    single, mirrored = runs["gradnorm"]["single"], runs["gradnorm"]["mirrored"]
    weights, initial_losses, flags = mirrored["state"]
    np.testing.assert_allclose(initial_losses, single["state"][1], rtol=1e-5)
    np.testing.assert_array_equal(flags, [1.0, 1.0, 1.0])
    assert sum(weights) == pytest.approx(3.0)
    # The norms are the replicas' mean local norms, not the global one: close.
    np.testing.assert_allclose(weights, single["state"][0], atol=0.05)
