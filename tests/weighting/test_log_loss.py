"""`log_loss`, an option of every weighting: the train step hands the method
`log(L_t + 1e-8)` for each labelled task (DB-MTL's loss-scale balancing), so the
task gradients it sees are `grad L_t / L_t`; unlabelled tasks stay 0 without a
NaN; specs, configs and `.keras` files keep the option; `val_loss` is on the
same scale as `loss`; methods for which it is meaningless refuse it."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from weighting_case import TASKS
from weighting_case import tiny_data
from weighting_case import tiny_model

import kmtl
from kmtl.errors import ConfigError
from kmtl.models import steps
from kmtl.weighting import Weighting


class _Tasks:
    task_names = ["a", "b"]


def test_log_losses_divide_each_task_gradient_by_its_loss():
    # L_a = 2 + 6 p + 8 q and L_b = 0.5 + 0.5 p at (p, q) = 0: losses (2, 0.5),
    # gradient rows [[6, 8], [0.5, 0]] -> [[3, 4], [1, 0]] under the log.
    theta = tf.Variable([0.0, 0.0])
    with tf.GradientTape(persistent=True) as tape:
        losses = {"a": 2.0 + 6.0 * theta[0] + 8.0 * theta[1],
                  "b": 0.5 + 0.5 * theta[0]}
        logs = steps.log_task_losses(_Tasks(), losses, tf.constant([True, True]))
    rows = [tape.gradient(logs[name], theta).numpy() for name in ("a", "b")]
    np.testing.assert_allclose(rows, [[3.0, 4.0], [1.0, 0.0]], rtol=1e-6)
    # Static (equal) weights: log 2 + log 0.5 = 0.
    static = kmtl.weighting.get("static")
    static.build_tasks(["a", "b"])
    total, _ = static.combine_losses(
        tf.stack([logs["a"], logs["b"]]), tf.constant([True, True]))
    assert float(total) == pytest.approx(0.0, abs=1e-6)


def test_an_unlabelled_task_stays_zero_with_a_zero_gradient():
    loss = tf.Variable(0.0)
    with tf.GradientTape(persistent=True) as tape:
        logs = steps.log_task_losses(_Tasks(), {"a": loss * 3.0, "b": loss},
                                     tf.constant([False, True]))
    assert float(logs["a"]) == 0.0
    assert float(tape.gradient(logs["a"], loss)) == 0.0
    # A labelled loss of 0: log(1e-8), a finite gradient of 1e8.
    assert float(logs["b"]) == pytest.approx(math.log(1e-8), rel=1e-6)
    assert float(tape.gradient(logs["b"], loss)) == pytest.approx(1e8, rel=1e-6)


def test_log_losses_compile_with_xla():
    def log_losses(a, b, labelled):
        logs = steps.log_task_losses(_Tasks(), {"a": a, "b": b}, labelled)
        return logs["a"], logs["b"]

    compiled = tf.function(log_losses, jit_compile=True)
    for values in ((2.0, 0.5, [True, True]), (0.0, 3.0, [False, True]),
                   (-1.0, 0.0, [True, True])):
        args = (tf.constant(values[0]), tf.constant(values[1]),
                tf.constant(values[2]))
        np.testing.assert_allclose(compiled(*args), log_losses(*args), rtol=1e-6)


class _Recorder(Weighting):
    """Sums the task gradients and keeps the last rows and losses it saw."""

    gradient_based = True

    def aggregate_gradients(self, gradients, losses, labelled):
        self.seen = (np.asarray(gradients), np.asarray(losses))
        weights = tf.cast(labelled, gradients.dtype)
        return tf.reduce_sum(gradients * weights[:, None], axis=0), weights


def test_the_train_step_hands_a_gradient_method_log_loss_rows():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  weighting=_Recorder(log_loss=True), run_eagerly=True)
    batch = next(iter(tiny_data(batch_size=32)))
    raw_rows, _ = model.task_gradients(batch)
    logs = model.train_on_batch(*batch, return_dict=True)
    rows, losses = model.weighting.seen
    raw_losses = np.array([logs[f"{name}_loss"] for name in TASKS])
    np.testing.assert_allclose(losses, np.log(raw_losses + 1e-8), rtol=1e-5)
    np.testing.assert_allclose(rows, np.asarray(raw_rows) / raw_losses[:, None],
                               rtol=1e-4, atol=1e-7)
    assert logs["loss"] == pytest.approx(np.log(raw_losses).sum(), rel=1e-5)


def test_a_task_ramped_in_by_a_curriculum_trains_on_its_scaled_log_loss():
    # The log comes before the schedule's scale s: s log L, gradient
    # s grad L / L (a scale after the log would only add a constant).
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  weighting=_Recorder(log_loss=True), run_eagerly=True)
    model.attach_schedule().use_task_scales().assign([1.0, 0.5])
    batch = next(iter(tiny_data(batch_size=32)))
    raw_rows, _ = model.task_gradients(batch)
    logs = model.train_on_batch(*batch, return_dict=True)
    rows, losses = model.weighting.seen
    raw_losses = np.array([logs[f"{name}_loss"] for name in TASKS])
    scales = np.array([1.0, 0.5])
    np.testing.assert_allclose(losses, scales * np.log(raw_losses), rtol=1e-5)
    np.testing.assert_allclose(
        rows, np.asarray(raw_rows) * (scales / raw_losses)[:, None],
        rtol=1e-4, atol=1e-7)


def test_val_loss_uses_the_log_losses_and_task_losses_stay_raw():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer="adam", weighting="static(log_loss=True)")
    logs = model.evaluate(tiny_data(batch_size=32), verbose=0, return_dict=True)
    raw = [logs[f"{name}_loss"] for name in TASKS]
    assert min(raw) > 0
    assert logs["loss"] == pytest.approx(sum(math.log(v) for v in raw), rel=1e-5)


def test_a_masked_fit_under_log_loss_has_no_nan():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer="adam", weighting="pcgrad(log_loss=True, seed=0)")
    logs = model.fit(tiny_data(unlabelled="price"), epochs=1, verbose=0).history
    assert logs["price_loss"] == [0.0] and logs["price_weight"] == [0.0]
    assert np.isfinite(logs["loss"]).all()
    for variable in model.trainable_variables:
        assert np.isfinite(np.asarray(variable)).all(), variable.path


def test_specs_configs_and_keras_files_keep_log_loss(tmp_path):
    for name in kmtl.weighting.list_weightings():
        assert "log_loss" in kmtl.weighting.WEIGHTINGS.options(name)
    weighting = kmtl.weighting.get("cagrad(c=0.4, log_loss=True)")
    assert weighting.log_loss is True and weighting.c == 0.4
    assert kmtl.weighting.get("cagrad").log_loss is False
    clone = kmtl.weighting.deserialize(kmtl.weighting.serialize(weighting))
    assert clone.log_loss is True
    with pytest.raises(ConfigError, match="log_loss must be True or False"):
        kmtl.weighting.get("static(log_loss=1)")
    with pytest.raises(ConfigError, match="does not take option"):
        kmtl.weighting.get("static(log_losses=True)")

    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer="adam", weighting="imtl(log_loss=True)")
    model.fit(tiny_data(), epochs=1, verbose=0)
    path = str(tmp_path / "log.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.weighting.log_loss is True
    assert restored.get_compile_config() == model.get_compile_config()


@pytest.mark.parametrize("spec", [
    "famo", "gls", "uncertainty", "dwa", "gradnorm", "mgda(normalization='loss'",
    "mgda(normalization='loss+'"])
def test_methods_for_which_log_losses_are_meaningless_refuse_them(spec):
    spec = f"{spec}, log_loss=True)" if "(" in spec else f"{spec}(log_loss=True)"
    with pytest.raises(ConfigError, match="log_loss"):
        kmtl.weighting.get(spec)


class _Refusing(Weighting):
    log_loss_refusal = "it works on log losses already."


def test_a_method_can_refuse_log_loss():
    _Refusing()
    with pytest.raises(ConfigError, match="already. Leave log_loss out"):
        _Refusing(log_loss=True)
