import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.callbacks import GradientStatistics
from kmtl.data import make_dataset
from kmtl.features import Feature

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup():
    """Three regression tasks on one linear shared bottom: y, an exact copy of
    y, and -y. The shared layer starts at zero and every head has the same
    kernel `w` (bias 0), so every prediction is 0 and, with `z` task y's
    standardized target and `x` the encoded inputs, task y's gradient of the
    shared kernel is `-2 mean_i(z_i x_i) w^T` and of its bias `-2 mean(z) w`.
    The copy has the same gradient (cosine 1), -y the opposite one (cosine
    -1, as `z` flips sign)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4))
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["y"] = x @ np.array([1.0, -2.0, 0.5, 0.0])
    frame["y_copy"] = frame["y"]
    frame["y_neg"] = -frame["y"]
    tasks = [kmtl.Task(n, "regression", target=n) for n in ("y", "y_copy", "y_neg")]
    for task in tasks:
        task.fit(frame)
    features = [Feature(c, "numeric").fit(frame) for c in "abcd"]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(8,),
                             activation="linear", tower_units=())
    shared = model.architecture
    for weight in shared.trainable_weights:
        weight.assign(np.zeros(weight.shape, "float32"))
    heads = [model.get_layer(f"{t.name}_head") for t in tasks]
    for head in heads[1:]:
        head.set_weights(heads[0].get_weights())
    model.compile(optimizer="sgd")
    return model, make_dataset(frame, features, tasks, 128), frame


def _hand_gradient(model, frame):
    """Task y's gradient of the shared bottom (kernel, then bias, flattened)
    over the rows of `frame`, from the formula in `setup`."""
    encoder = keras.Model(model.input, model.architecture.input)
    x = keras.ops.convert_to_numpy(encoder(
        {c: frame[c].to_numpy("float32")[:, None] for c in "abcd"}))
    task = model.tasks[0]
    z = (frame["y"].to_numpy() - task.target_mean[0]) / task.target_std[0]
    w = model.get_layer("y_head").get_weights()[0][:, 0]
    kernel = -2 * np.outer((z[:, None] * x).mean(axis=0), w)
    bias = -2 * z.mean() * w
    return np.concatenate([kernel.ravel(), bias])


def test_task_gradients_match_the_hand_derived_gradient(setup):
    model, data, frame = setup
    batch = next(iter(data.unbatch().batch(256)))
    gradients, labelled = model.task_gradients(batch)
    gradients = keras.ops.convert_to_numpy(gradients)
    assert bool(np.all(labelled))
    expected = _hand_gradient(model, frame)
    # 4 encoded inputs (the normalized values; no missing indicator, as no
    # value was missing in training) x 8 units + 8 biases: only the shared
    # bottom is shared (the numeric encoding has no weight, each head is its
    # own task's).
    assert gradients.shape == (3, 4 * 8 + 8)
    np.testing.assert_allclose(gradients[0], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gradients[1], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gradients[2], -expected, rtol=1e-4, atol=1e-6)
    # z is standardized on these rows: mean 0, so the bias gradient is 0.
    np.testing.assert_allclose(gradients[:, -8:], 0.0, atol=1e-5)


def test_gradient_statistics_log_hand_derived_cosines_and_norms(setup):
    model, data, frame = setup
    callback = GradientStatistics(data, every=2, batches=2)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs == {}  # only every second epoch
    callback.on_epoch_end(1, logs)
    # Two batches of 128 rows: their mean gradient is the gradient over all
    # 256 rows.
    norm = float(np.linalg.norm(_hand_gradient(model, frame)))
    assert norm > 0.1
    assert logs == pytest.approx({
        "y_grad_norm": norm, "y_copy_grad_norm": norm, "y_neg_grad_norm": norm,
        "grad_cosine_y_y_copy": 1.0, "grad_cosine_y_y_neg": -1.0,
        "grad_cosine_y_copy_y_neg": -1.0}, rel=1e-4)


@pytest.mark.parametrize("argument", [{"every": 0}, {"every": True},
                                      {"batches": 1.5}])
def test_bad_every_and_batches(argument):
    (key, value), = argument.items()
    with pytest.raises(ValueError, match=re.escape(
            f"{key} must be a positive integer. Received: {key}={value!r}")):
        GradientStatistics(None, **argument)


def test_training_run_logs_gradient_statistics(tmp_path):
    """The run adds the callback: one value per epoch for each task's norm and
    each pair's cosine, finite (the penguin tasks share the MMoE experts), and
    the norms change as the model trains."""
    from kmtl.runs.config import load_config
    from kmtl.runs.training import train

    config = load_config(str(REPO / "examples" / "penguins.yaml"))
    config["training"].update(epochs=2, verbose=0, gradient_statistics_every=1)
    config["export"]["enabled"] = False
    run = train(config, output_dir=str(tmp_path), log=lambda *_: None)
    history = run["history"]
    names = ["species", "sex", "body_mass_g"]
    logged = {key for key in history if "grad_" in key}
    assert logged == {f"{n}_grad_norm" for n in names} | {
        "grad_cosine_species_sex", "grad_cosine_species_body_mass_g",
        "grad_cosine_sex_body_mass_g"}
    for key in logged:
        assert len(history[key]) == 2 and np.isfinite(history[key]).all(), key
    for name in names:
        first, second = history[f"{name}_grad_norm"]
        assert first > 0 and second > 0 and first != second


@pytest.mark.parametrize("architecture, every, written", [
    ("mmoe", None, True), ("mmoe", 0, False), ("shared_bottom", None, False)])
def test_training_run_writes_sharing_diagnostics_by_default(tmp_path, architecture,
                                                            every, written):
    from kmtl.runs.config import load_config
    from kmtl.runs.training import train

    config = load_config(str(REPO / "examples" / "penguins.yaml"))
    config["model"]["architecture"] = architecture
    config["model"]["options"] = {"units": [8]} if architecture == "shared_bottom" \
        else {"num_experts": 2, "expert_units": [8]}
    config["training"].update(epochs=1, verbose=0, diagnostics_every=every)
    config["export"]["enabled"] = False
    run = train(config, output_dir=str(tmp_path), log=lambda *_: None)
    events = list((Path(run["run_dir"]) / "logs" / "diagnostics").glob("events.*"))
    assert bool(events) == written


def test_diagnostics_every_must_be_a_count(tmp_path):
    from kmtl.runs.config import load_config
    from kmtl.runs.config import resolve_config

    config = load_config(str(REPO / "examples" / "penguins.yaml"))
    config["training"]["diagnostics_every"] = "often"
    with pytest.raises(kmtl.ConfigError,
                       match=r"training.diagnostics_every must be an integer >= 0 "
                             r"\(0: off\). Received: 'often'"):
        resolve_config(config)
