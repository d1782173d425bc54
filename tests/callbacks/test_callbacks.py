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
                             tower_units=())
    # Same tower weights for every task, so the copies have identical gradients.
    heads = [model.get_layer(f"{t.name}_head") for t in tasks]
    for head in heads[1:]:
        head.set_weights(heads[0].get_weights())
    model.compile(optimizer="sgd")
    return model, make_dataset(frame, features, tasks, 128)


def test_task_gradients_shape_and_cosines(setup):
    model, data = setup
    callback = GradientStatistics(data, every=2, batches=2)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs == {}  # only every second epoch
    callback.on_epoch_end(1, logs)
    assert logs["grad_cosine_y_y_copy"] == pytest.approx(1.0, abs=1e-5)
    assert logs["y_grad_norm"] == pytest.approx(logs["y_copy_grad_norm"], rel=1e-5)
    # Hand check against the matrix: cosine of rows 0 and 2.
    gradients, labelled = model.task_gradients(next(iter(data)))
    assert gradients.shape[0] == 3 and bool(np.all(labelled))
    shared = sum(int(np.prod(w.shape)) for w in model.get_layer(
        "shared_bottom").trainable_weights)
    assert gradients.shape[1] == shared


def test_bad_every():
    with pytest.raises(ValueError, match="every must be a positive integer"):
        GradientStatistics(None, every=0)


def test_training_run_logs_gradient_statistics(tmp_path):
    from kmtl.runs.config import load_config
    from kmtl.runs.training import train

    config = load_config(str(REPO / "examples" / "penguins.yaml"))
    config["training"].update(epochs=2, verbose=0, gradient_statistics_every=1)
    config["export"]["enabled"] = False
    run = train(config, output_dir=str(tmp_path), log=lambda *_: None)
    history = run["history"]
    assert len(history["grad_cosine_species_sex"]) == 2
    assert all(-1.0 <= c <= 1.0 for c in history["grad_cosine_sex_body_mass_g"])
    assert all(n > 0 for n in history["body_mass_g_grad_norm"])


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
