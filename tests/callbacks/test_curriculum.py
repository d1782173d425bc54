"""Curriculum callbacks (`TaskCurriculum`, `SelfPacedLearning`) and the model's
`TrainSchedule`: schedules by hand, their effect on the train step's loss and
gradients, a `.keras` round trip mid-run, and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.callbacks import SelfPacedLearning
from kmtl.callbacks import TaskCurriculum
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.features import resolve_features
from kmtl.models.schedule import TrainSchedule
from kmtl.tasks import Task


@pytest.fixture
def fitted(tiny_frame):
    tasks = [Task("clicked", "binary").fit(tiny_frame),
             Task("price", "regression").fit(tiny_frame)]
    features = resolve_features(tiny_frame, exclude=["clicked", "price", "kind"])
    return [f.fit(tiny_frame) for f in features], tasks


def _model(fitted, learning_rate=0.01, optimizer=None):
    features, tasks = fitted
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, units=(8,), tower_units=(4,))
    model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate))
    return model


def _data(fitted, frame):
    features, tasks = fitted
    return make_dataset(frame, features, tasks, batch_size=len(frame))


def test_task_curriculum_scales_by_hand():
    curriculum = TaskCurriculum([["a", "b"], "c"], interval=2, ramp_epochs=3)
    assert curriculum.scales(0) == {"a": 1 / 3, "b": 1 / 3, "c": 0.0}
    assert curriculum.scales(2) == {"a": 1.0, "b": 1.0, "c": 1 / 3}
    assert curriculum.scales(4) == {"a": 1.0, "b": 1.0, "c": 1.0}
    by_loss = TaskCurriculum.by_loss({"hard": 0.7, "easy": 0.1, "mid": 0.3})
    assert by_loss.order == [["easy"], ["mid"], ["hard"]]


def test_self_paced_fraction_by_hand():
    pacing = SelfPacedLearning(start_fraction=0.6, epochs=4)
    assert [pacing.fraction(e) for e in range(6)] == [0.6, 0.7, 0.8, 0.9, 1.0, 1.0]


def test_paced_weights_keep_the_easiest_share_of_labelled_rows():
    schedule = TrainSchedule(["t"])
    schedule.use_row_fraction().assign(0.5)
    losses = {"t": tf.constant([0.1, 0.5, 0.3, 0.0, 0.9])}
    weights = {"t": tf.constant([2.0, 1.0, 1.0, 0.0, 1.0])}  # row 3 unlabelled
    # 4 labelled rows, keep ceil(0.5 * 4) = 2 with the lowest loss: rows 0, 2;
    # the kept row 0 keeps its class weight 2.
    paced = schedule.paced_weights(losses, weights)
    np.testing.assert_array_equal(paced["t"].numpy(), [2.0, 0.0, 1.0, 0.0, 0.0])
    # No labelled row: nothing kept, no NaN.
    empty = schedule.paced_weights(losses, {"t": tf.zeros(5)})
    np.testing.assert_array_equal(empty["t"].numpy(), np.zeros(5))


def test_a_task_that_has_not_joined_gets_no_gradient(fitted, tiny_frame):
    model = _model(fitted)
    head = model.get_layer("price_tower_0").kernel.numpy().copy()
    clicked_head = model.get_layer("clicked_tower_0").kernel.numpy().copy()
    curriculum = TaskCurriculum(["clicked", "price"], interval=2)
    history = model.fit(_data(fitted, tiny_frame), epochs=2, verbose=0,
                        callbacks=[curriculum])
    # price joins at epoch 2: its head is untouched (Adam with zero gradients
    # moves nothing), the other head trained.
    np.testing.assert_array_equal(model.get_layer("price_tower_0").kernel.numpy(), head)
    assert not np.array_equal(model.get_layer("clicked_tower_0").kernel.numpy(),
                              clicked_head)
    assert history.history["price_scale"] == [0.0, 0.0]
    assert model.schedule is None  # detached when fit ends
    model.fit(_data(fitted, tiny_frame), epochs=1, verbose=0)
    assert not np.array_equal(model.get_layer("price_tower_0").kernel.numpy(), head)


def test_scaled_loss_is_the_hand_weighted_sum(fitted, tiny_frame):
    # Learning rate 0: fit's loss on the one batch is the loss of the weights
    # evaluate sees; price at half weight in epoch 0 (ramp over 2 epochs).
    model = _model(fitted, optimizer=keras.optimizers.SGD(0.0))
    data = _data(fitted, tiny_frame)
    losses = model.evaluate(data, return_dict=True, verbose=0)
    curriculum = TaskCurriculum([["clicked", "price"]], ramp_epochs=2)
    logs = model.fit(data, epochs=1, verbose=0, callbacks=[curriculum]).history
    expected = 0.5 * (losses["clicked_loss"] + losses["price_loss"])
    np.testing.assert_allclose(logs["loss"][0], expected, rtol=1e-5)
    # The logged task losses are the tasks' own, unscaled.
    np.testing.assert_allclose(logs["price_loss"][0], losses["price_loss"],
                               rtol=1e-5)


def test_self_paced_loss_is_the_mean_over_the_easiest_rows(fitted, tiny_frame):
    model = _model(fitted, optimizer=keras.optimizers.SGD(0.0))
    data = _data(fitted, tiny_frame)
    x, y, weights = next(iter(data))
    rows = model.row_losses(y, model.forward(x))
    expected = 0.0
    for name in ("clicked", "price"):
        labelled = weights[name].numpy() > 0
        values = np.sort(rows[name].numpy()[labelled])
        keep = int(np.ceil(0.5 * labelled.sum()))
        expected += values[:keep].mean()
    pacing = SelfPacedLearning(start_fraction=0.5, epochs=2)
    logs = model.fit(data, epochs=1, verbose=0, callbacks=[pacing]).history
    np.testing.assert_allclose(logs["loss"][0], expected, rtol=1e-5)
    assert logs["self_paced_fraction"] == [0.5]


def test_metrics_count_labelled_rows_once_whatever_their_weight(fitted, tiny_frame):
    # Class or self-paced weights change the loss, not the metrics.
    model = _model(fitted)
    x, y, weights = next(iter(_data(fitted, tiny_frame)))
    heavy = {k: v * tf.constant([3.0, 1.0, 1.0, 5.0, 1.0, 1.0]) for k, v in
             weights.items()}
    plain = model.evaluate(x, y, sample_weight=weights, return_dict=True, verbose=0)
    weighted = model.evaluate(x, y, sample_weight=heavy, return_dict=True,
                              verbose=0)
    assert weighted["clicked_auc"] == pytest.approx(plain["clicked_auc"])
    assert weighted["price_mae"] == pytest.approx(plain["price_mae"])
    assert weighted["clicked_loss"] != pytest.approx(plain["clicked_loss"])


def test_schedules_survive_a_keras_round_trip_mid_run(fitted, tiny_frame, tmp_path):
    def callbacks():
        return [TaskCurriculum(["clicked", "price"], interval=1, ramp_epochs=2),
                SelfPacedLearning(start_fraction=0.5, epochs=3)]

    features, tasks = fitted

    def data(first_epoch=0):  # each dataset counts its own epochs
        return make_dataset(tiny_frame, features, tasks, batch_size=3,
                            shuffle=True, seed=1, first_epoch=first_epoch)

    whole = _model(fitted)
    full = whole.fit(data(), epochs=4, verbose=0, callbacks=callbacks()).history

    first = _model(fitted)
    first.fit(data(), epochs=2, verbose=0, callbacks=callbacks())
    first.save(tmp_path / "mid.keras")
    again = keras.saving.load_model(tmp_path / "mid.keras")
    rest = again.fit(data(first_epoch=2), epochs=4, initial_epoch=2, verbose=0,
                     callbacks=callbacks()).history
    for key in ("price_scale", "self_paced_fraction"):
        assert rest[key] == full[key][2:]
    np.testing.assert_allclose(rest["loss"], full["loss"][2:], rtol=1e-5)
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: TaskCurriculum([]), "non-empty list"),
    (lambda: TaskCurriculum(["a", "a"]), "more than once"),
    (lambda: TaskCurriculum(["a"], interval=0), "interval"),
    (lambda: TaskCurriculum(["a"], ramp_epochs=1.5), "ramp_epochs"),
    (lambda: TaskCurriculum.by_loss({"a": float("nan")}), "task 'a'"),
    (lambda: SelfPacedLearning(start_fraction=0), "start_fraction"),
    (lambda: SelfPacedLearning(epochs=0), "epochs"),
])
def test_bad_schedules_are_refused(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("order, message", [
    (["clicked", "price", "typo"], r"\['typo'\], which are not tasks"),
    (["clicked"], r"leaves out \['price'\]"),
])
def test_curriculum_must_list_the_model_tasks(fitted, tiny_frame, order, message):
    model = _model(fitted)
    with pytest.raises(ConfigError, match=message):
        model.fit(_data(fitted, tiny_frame), epochs=1, verbose=0,
                  callbacks=[TaskCurriculum(order)])
