"""The train step's two paths (loss weighting, per-task gradient aggregation)
agree where the math says they must."""

import io
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import ops

import kmtl
from kmtl.data import make_dataset
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import penguin_tasks
from kmtl.errors import ConfigError
from kmtl.features import resolve_features
from kmtl.models import steps
from kmtl.weighting import Weighting


class SumOfGradients(Weighting):
    """Gradient-based EW: the direction is the plain sum of the task gradients."""

    gradient_based = True

    def aggregate_gradients(self, gradients, losses, labelled):
        weights = ops.cast(labelled, gradients.dtype)
        return ops.sum(gradients * weights[:, None], axis=0), weights


@pytest.fixture(scope="module")
def fitted():
    frame = kmtl.datasets.load_penguins().dropna(subset=["bill_length_mm"])
    frame = frame.reset_index(drop=True)
    tasks = penguin_tasks()
    for task in tasks:
        task.fit(frame)
    features = resolve_features(frame, **PENGUIN_FEATURES)
    for feature in features:
        feature.fit(frame)
    return frame, features, tasks


def _one_step(fitted, weighting, architecture):
    frame, features, tasks = fitted
    keras.utils.set_random_seed(3)
    model = kmtl.build_model(features, tasks, architecture, tower_units=(4,),
                             **({"units": (8,)} if architecture == "shared_bottom"
                                else {"num_experts": 2, "expert_units": (8,)}))
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=weighting)
    data = make_dataset(frame.iloc[:64], features, tasks, 64)
    logs = model.fit(data, epochs=1, verbose=0, shuffle=False).history
    return [w.numpy() for w in model.trainable_weights], logs


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe"])
def test_summed_task_gradients_equal_the_equal_weighting_step(fitted, architecture):
    static, static_logs = _one_step(fitted, "ew", architecture)
    summed, summed_logs = _one_step(fitted, SumOfGradients(), architecture)
    assert len(static) == len(summed)
    for a, b in zip(static, summed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert static_logs["loss"] == pytest.approx(summed_logs["loss"], rel=1e-5)
    assert summed_logs["sex_weight"] == [1.0]
    assert "sex_weight" not in static_logs  # fixed weights are not logged


def test_fixed_task_weights_are_not_logged_dynamic_ones_are(fitted):
    """Static weights are the config's: no constant `<task>_weight` column.
    A dynamic method's weights are logged (DWA's are 1 per task, summing to
    the task count, in its first epochs)."""
    frame, features, tasks = fitted
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,))
    model.compile(optimizer="adam", loss_weights={"sex": 2.0},
                  loss_combination="mean")
    logs = model.fit(make_dataset(frame, features, tasks, 64), epochs=1,
                     verbose=0).history
    assert not [key for key in logs if key.endswith("_weight")]
    assert "sex_weight" not in model.metrics_names
    model.compile(optimizer="adam", weighting="dwa")
    logs = model.fit(make_dataset(frame, features, tasks, 64), epochs=1,
                     verbose=0).history
    weights = [logs[f"{t.name}_weight"][0] for t in tasks]
    assert sum(weights) == pytest.approx(len(tasks))


def test_representation_gradients_of_the_sum_equal_the_equal_weighting_step(fitted):
    frame, features, tasks = fitted

    def one_step(weighting, gradients):
        keras.utils.set_random_seed(3)
        model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,),
                                 tower_units=(4,))
        model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=weighting,
                      gradients=gradients)
        data = make_dataset(frame.iloc[:64], features, tasks, 64)
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        return [w.numpy() for w in model.trainable_weights]

    static = one_step("ew", "parameters")
    summed = one_step(SumOfGradients(), "representation")
    for a, b in zip(static, summed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_representation_gradients_need_one_shared_representation(fitted):
    frame, features, tasks = fitted
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=2,
                             expert_units=(4,))
    with pytest.raises(kmtl.ConfigError, match="one representation shared"):
        model.compile(weighting=SumOfGradients(), gradients="representation")
    with pytest.raises(kmtl.ConfigError, match="Unknown gradients='weights'"):
        model.compile(gradients="weights")


@pytest.mark.parametrize("weighting, gradients, strategy", [
    ("ew", "parameters", steps.LossWeightingStep),
    ("uncertainty", "representation", steps.LossWeightingStep),
    ("pcgrad", "parameters", steps.ParameterGradientStep),
    ("mgda", "representation", steps.RepresentationGradientStep),
])
def test_compile_picks_the_step_strategy(fitted, weighting, gradients, strategy):
    _, features, tasks = fitted
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,))
    model.compile(weighting=weighting, gradients=gradients)
    assert type(model.step_strategy) is strategy


def _saved_weight_paths(model, path):
    """The groups and datasets of the weights file inside a `.keras` file, but
    the optimizer's (built by a fit)."""
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        weights = archive.read("model.weights.h5")
    names = []
    with h5py.File(io.BytesIO(weights), "r") as handle:
        handle.visit(names.append)
    return [name for name in names if not name.startswith("optimizer")]


def test_the_representation_model_is_not_tracked(fitted, tmp_path):
    """The sub-model `inputs -> (outputs, representation)` shares the model's
    layers. Tracked by Keras, it would be saved a second time (a group of its
    own in the weights file); it must not be."""
    frame, features, tasks = fitted
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,))
    model.compile(weighting=SumOfGradients(), gradients="parameters")
    plain = _saved_weight_paths(model, str(tmp_path / "plain.keras"))
    model.compile(weighting=SumOfGradients(), gradients="representation")
    model.fit(make_dataset(frame.iloc[:64], features, tasks, 64), epochs=1,
              verbose=0)
    path = str(tmp_path / "model.keras")
    assert _saved_weight_paths(model, path) == plain
    restored = keras.saving.load_model(path, custom_objects={
        "SumOfGradients": SumOfGradients})
    assert type(restored.step_strategy) is steps.RepresentationGradientStep
    for got, saved in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(saved))


def test_xla_train_step_on_the_encoded_path(fitted):
    """`jit_compile=True` compiles the train step (Keras alone would refuse it
    for a model holding lookups): the same losses as without XLA; evaluation
    and prediction still take raw values; raw training batches and MGDA are
    refused with the reason."""
    frame, features, tasks = fitted
    data = make_dataset(frame.iloc[:64], features, tasks, 32)
    histories = []
    for jit_compile in ("auto", True):
        keras.utils.set_random_seed(0)
        model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,))
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
        histories.append(model.fit(data, epochs=2, verbose=0).history["loss"])
    assert model._jit_train and not model.jit_compile  # eval, predict: no XLA
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-4)
    raw = make_dataset(frame.iloc[:64], features, tasks, 32, encoded=False)
    model.evaluate(raw, verbose=0)
    model.predict(make_dataset(frame.iloc[:8], features, encoded=False), verbose=0)
    with pytest.raises(ConfigError, match="'mgda' does not compile with XLA"):
        model.compile(weighting="mgda", jit_compile=True)
    fresh = kmtl.build_model(features, tasks, "shared_bottom", units=(8,))
    fresh.compile(jit_compile=True)
    with pytest.raises(ConfigError, match="trains on encoded batches"):
        fresh.fit(raw, epochs=1, verbose=0)
