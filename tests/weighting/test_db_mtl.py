"""DB-MTL: the moving averages, weights and direction of a two-task example
worked by hand, masking, the log-loss gradients the train step hands it, its
state in `.keras` files, and its refusals. The checks every method shares are in
`test_registered_weightings.py`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from weighting_case import check_config_round_trip
from weighting_case import tiny_data
from weighting_case import tiny_model

import kmtl
from kmtl.errors import ConfigError


def _built(spec="db_mtl", parameters=3):
    weighting = kmtl.weighting.get(spec)
    weighting.build_tasks(["a", "b"])
    weighting.build_gradients(parameters)
    return weighting


def _aggregate(weighting, gradients, labelled=(True, True)):
    direction, weights = weighting.aggregate_gradients(
        tf.constant(gradients, tf.float32), tf.ones((2,)), tf.constant(labelled))
    return direction.numpy(), weights.numpy()


def test_moving_averages_weights_and_direction_by_hand():
    db = _built()
    # Step 1: averages 0.1 h (norms 0.5, 0.1): alpha = (1, 5), d = (0.8, 0.4).
    direction, weights = _aggregate(db, [[3.0, 4.0], [1.0, 0.0]])
    np.testing.assert_allclose(weights, [1.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(direction, [0.8, 0.4], rtol=1e-6)
    # Step 2: averages ((0.27, 0.56), (-0.01, 0)), norms (0.621691, 0.01).
    direction, weights = _aggregate(db, [[0.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(weights, [1.0, 62.1691], rtol=1e-5)
    np.testing.assert_allclose(direction, [-0.351691, 0.56], rtol=1e-5)
    # Only the first 2 of the 3 allocated columns are the shared parameters.
    np.testing.assert_allclose(db.gradient_averages.numpy(),
                               [[0.27, 0.56, 0.0], [-0.01, 0.0, 0.0]], atol=1e-7)
    np.testing.assert_array_equal(db.steps.numpy(), [2.0, 2.0])


def test_an_unlabelled_task_keeps_its_average_and_gets_weight_zero():
    db = _built()
    _aggregate(db, [[3.0, 4.0], [1.0, 0.0]])
    direction, weights = _aggregate(db, [[0.0, 2.0], [0.0, 0.0]], (True, False))
    np.testing.assert_allclose(weights, [1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(direction, [0.27, 0.56], rtol=1e-6)
    np.testing.assert_allclose(db.gradient_averages.numpy()[1], [0.1, 0.0, 0.0],
                               rtol=1e-6)
    np.testing.assert_array_equal(db.steps.numpy(), [2.0, 1.0])


def test_an_overflowed_step_leaves_the_state_and_stays_non_finite():
    db = _built()
    _aggregate(db, [[3.0, 4.0], [1.0, 0.0]])
    averages, steps = db.gradient_averages.numpy(), db.steps.numpy()
    direction, _ = _aggregate(db, [[np.inf, 2.0], [-1.0, 0.0]])
    # The optimizer must still see the overflow, and the state must not keep it.
    assert not np.isfinite(direction).all()
    np.testing.assert_array_equal(db.gradient_averages.numpy(), averages)
    np.testing.assert_array_equal(db.steps.numpy(), steps)
    # The next finite step goes on from step 1's state (as in the test above).
    direction, weights = _aggregate(db, [[0.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(weights, [1.0, 62.1691], rtol=1e-5)
    np.testing.assert_allclose(direction, [-0.351691, 0.56], rtol=1e-5)


def test_beta_sigma_decays_beta_with_each_task_step():
    db = _built("db_mtl(beta_sigma=1.0)")
    _aggregate(db, [[3.0, 4.0], [1.0, 0.0]])  # beta_1 = 0.9
    _aggregate(db, [[0.0, 2.0], [-1.0, 0.0]])  # beta_2 = 0.45
    np.testing.assert_allclose(
        db.gradient_averages.numpy()[:, :2],
        [[0.45 * 0.3, 0.45 * 0.4 + 0.55 * 2.0], [0.45 * 0.1 - 0.55, 0.0]],
        rtol=1e-6, atol=1e-7)


def test_the_train_step_averages_log_loss_gradients(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), weighting="db_mtl")
    batch = next(iter(tiny_data(batch_size=32)))
    rows, _ = model.task_gradients(batch)
    logs = model.train_on_batch(*batch, return_dict=True)
    losses = np.array([logs["clicked_loss"], logs["price_loss"]])
    size = rows.shape[1]
    averages = model.weighting.gradient_averages.numpy()
    # The shared layer's 20 scalars of the model's 30; the rest stay 0.
    assert (size, averages.shape[1]) == (20, 30)
    np.testing.assert_allclose(averages[:, :size],
                               0.1 * np.asarray(rows) / losses[:, None],
                               rtol=1e-4, atol=1e-7)
    assert not averages[:, size:].any()

    model.compile(optimizer=keras.optimizers.Adam(0.01), weighting="db_mtl")
    model.fit(tiny_data(), epochs=1, verbose=0)
    path = str(tmp_path / "db.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    saved = model.weighting.gradient_averages.numpy()
    assert np.abs(saved).max() > 0
    np.testing.assert_array_equal(restored.weighting.gradient_averages.numpy(),
                                  saved)
    np.testing.assert_array_equal(restored.weighting.steps.numpy(), [2.0, 2.0])
    assert restored.weighting.log_loss is True
    restored.fit(tiny_data(), epochs=1, verbose=0)
    np.testing.assert_array_equal(restored.weighting.steps.numpy(), [4.0, 4.0])


def test_arguments_config_and_refusals():
    db = kmtl.weighting.get("db_mtl(beta=0.5, beta_sigma=0.5, log_loss=False)")
    assert (db.beta, db.beta_sigma, db.log_loss) == (0.5, 0.5, False)
    check_config_round_trip(db)
    assert kmtl.weighting.get("db_mtl").log_loss is True
    for spec in ("db_mtl(beta=1.0)", "db_mtl(beta=-0.1)", "db_mtl(beta_sigma=-1)"):
        with pytest.raises(ConfigError, match="db_mtl"):
            kmtl.weighting.get(spec)
    with pytest.raises(ConfigError, match="'db_mtl' does not take gradients='repr"):
        tiny_model().compile(optimizer="adam", weighting="db_mtl",
                             gradients="representation")


def test_the_update_compiles_with_xla():
    eager, graph = _built(parameters=5), _built(parameters=5)
    compiled = tf.function(graph.aggregate_gradients, jit_compile=True)
    rng = np.random.default_rng(0)
    for labelled in ([True, True], [True, False], [True, True]):
        gradients = tf.constant(rng.normal(size=(2, 4)), tf.float32)
        args = (gradients, tf.ones((2,)), tf.constant(labelled))
        for got, want in zip(compiled(*args), eager.aggregate_gradients(*args)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    for got, want in zip(graph.variables, eager.variables):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
