"""Every registered architecture, through the same checks: output shapes for 1, 2
and 5 tasks, config round trip, a short fit on the penguins that lowers every task
loss, `.keras` round trip, and an export served by a fresh TensorFlow process
without kmtl.

Layer-specific behaviour (weight-count formulas, hand-computed mixing, gates,
penalties) is tested in each architecture's own test file.
"""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import FRESH_PROCESS
from helpers import raw_columns

import kmtl
from kmtl import architectures
from kmtl.data import make_dataset
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import load_penguins
from kmtl.datasets import penguin_tasks
from kmtl.features import resolve_features

# Small options per variant: (registered name, options). Every registered name
# must appear (test_every_registered_architecture_is_covered).
VARIANTS = {
    "shared_bottom": ("shared_bottom", {"units": [8]}),
    "soft_sharing": ("soft_sharing", {"units": [8]}),
    "cross_stitch": ("cross_stitch", {"units": [8, 8]}),
    "mmoe": ("mmoe", {"num_experts": 3, "expert_units": [8]}),
    "mmoe_dselect_k": ("mmoe", {"num_experts": 5, "expert_units": [8],
                                "gate": "dselect_k", "top_k": 2}),
    "cgc": ("cgc", {"num_task_experts": 1, "num_shared_experts": 2,
                    "expert_units": [8]}),
    "ple": ("ple", {"num_levels": 2, "num_task_experts": 1, "num_shared_experts": 1,
                    "expert_units": [8]}),
    "ple_dselect_k": ("ple", {"num_levels": 2, "num_task_experts": 2,
                              "num_shared_experts": 2, "expert_units": [8],
                              "gate": "dselect_k", "top_k": 2}),
    "mtan": ("mtan", {"units": [8, 8]}),
}
LAST_UNITS = 8


def test_every_registered_architecture_is_covered():
    covered = {name for name, _ in VARIANTS.values()}
    assert covered == set(architectures.list_architectures())


def _create(variant, task_names):
    name, options = VARIANTS[variant]
    return architectures.get(name, task_names=task_names, **options)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_output_is_one_representation_per_task(variant, num_tasks):
    names = [f"task_{i}" for i in range(num_tasks)]
    layer = _create(variant, names)
    inputs = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    outputs = layer(inputs)
    assert list(outputs) == names
    for name in names:
        assert tuple(outputs[name].shape) == (3, LAST_UNITS)
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(outputs[name])))
    assert {k: tuple(v) for k, v in layer.compute_output_shape((3, 6)).items()} == {
        name: (3, LAST_UNITS) for name in names}
    assert layer.name == VARIANTS[variant][0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_round_trip_gives_the_same_outputs(variant):
    layer = _create(variant, ["a", "b", "c"])
    inputs = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    expected = layer(inputs)
    copy = architectures.deserialize(
        json.loads(json.dumps(architectures.serialize(layer))))
    assert type(copy) is type(layer)
    assert copy.get_config() == layer.get_config()
    copy(inputs)
    copy.set_weights(layer.get_weights())
    actual = copy(inputs)
    for name in ("a", "b", "c"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6,
                                   atol=1e-6)


# === Whole models on the penguins ===


@pytest.fixture(scope="module")
def penguins():
    return load_penguins()


@pytest.fixture(scope="module")
def prepared(penguins):
    tasks = penguin_tasks()
    for task in tasks:
        task.fit(penguins)
    targets = {c for t in tasks for c in t.target_columns}
    features = resolve_features(penguins, exclude=targets, **PENGUIN_FEATURES)
    for feature in features:
        feature.fit(penguins)
    return features, tasks


def _model_inputs(columns):
    """`(rows, 1)` tensors from `(rows,)` raw columns (strings stay strings)."""
    return {name: tf.constant(values[:, None]) for name, values in columns.items()}


def _task_losses(model, data):
    logs = model.evaluate(data, verbose=0, return_dict=True)
    return {name: logs[f"{name}_loss"] for name in model.task_names}


@pytest.fixture(scope="module")
def trained(penguins, prepared):
    """variant -> (model, per-task loss before, per-task loss after a short fit),
    trained on first use."""
    features, tasks = prepared
    data = make_dataset(penguins, features, tasks, 64, shuffle=True, seed=0)
    cache = {}

    def get(variant):
        if variant not in cache:
            name, options = VARIANTS[variant]
            keras.utils.set_random_seed(0)
            model = kmtl.build_model(features, tasks, name, tower_units=[4],
                                     **options)
            model.compile(optimizer=keras.optimizers.Adam(0.01))
            before = _task_losses(model, data)
            model.fit(data, epochs=8, verbose=0, shuffle=False)
            cache[variant] = (model, before, _task_losses(model, data))
        return cache[variant]

    return get


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_short_fit_lowers_every_task_loss(trained, variant):
    model, before, after = trained(variant)
    assert model.architecture is model.get_layer(VARIANTS[variant][0])
    for name in model.task_names:
        assert after[name] < 0.9 * before[name], (name, before, after)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_keras_file_round_trip(trained, penguins, variant, tmp_path):
    model = trained(variant)[0]
    path = tmp_path / f"{variant}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, kmtl.MultiTaskModel)
    assert loaded.get_layer(VARIANTS[variant][0]).get_config() == model.get_layer(
        VARIANTS[variant][0]).get_config()
    inputs = _model_inputs(raw_columns(model, penguins.iloc[:20]))
    expected = model.predict(inputs, verbose=0)
    actual = loaded.predict(inputs, verbose=0)
    for name in model.task_names:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("variants", [sorted(VARIANTS)], ids=["all"])
def test_exports_serve_in_a_fresh_process_without_kmtl(trained, penguins, variants,
                                                       tmp_path):
    rows = penguins.iloc[[0, 1, 3, 152, 276]]
    script = tmp_path / "serve.py"
    script.write_text(FRESH_PROCESS)
    args, expected = [], {}
    for variant in variants:
        model = trained(variant)[0]
        export = kmtl.export_saved_model(model, tmp_path / variant)
        columns = raw_columns(model, rows)
        inputs_file = tmp_path / f"{variant}_inputs.json"
        inputs_file.write_text(json.dumps({k: v.tolist() for k, v in
                                           columns.items()}))
        outputs_file = tmp_path / f"{variant}_outputs.npz"
        args += [str(export), str(inputs_file), str(outputs_file)]
        expected[variant] = (outputs_file, model.predict(
            _model_inputs(columns), verbose=0))
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True,
        text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["kmtl"] is False
    for variant, (outputs_file, predicted) in expected.items():
        served = np.load(outputs_file)
        assert sorted(served.files) == sorted(predicted)
        for name, value in predicted.items():
            np.testing.assert_allclose(served[name], value, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{variant}/{name}")


@pytest.mark.parametrize("architecture, options, message", [
    ("soft_sharing", {"strength": "abc"},
     "strength must be a number in [0, inf). Received: strength='abc'"),
    ("soft_sharing", {"strength": -1},
     "strength must be a number in [0, inf). Received: strength=-1.0"),
    ("cross_stitch", {"self_weight": "0.9"},
     "self_weight must be a number in [0, 1]. Received: self_weight='0.9'"),
    ("mmoe", {"dropout": "0.1"},
     "dropout must be a number in [0, 1). Received: dropout='0.1'"),
    ("mmoe", {"dropout": 1.0},
     "dropout must be a number in [0, 1). Received: dropout=1.0"),
    ("mmoe", {"gate": "dselect_k", "gamma": "1"},
     "gamma must be a number in (0, inf). Received: gamma='1'"),
    ("mmoe", {"gate": "dselect_k", "entropy_weight": -0.5},
     "entropy_weight must be a number in [0, inf). Received: entropy_weight=-0.5"),
    ("soft_sharing", {"strength": float("inf")},
     "strength must be a number in [0, inf). Received: strength=inf"),
    ("mmoe", {"gate": "dselect_k", "gamma": float("nan")},
     "gamma must be a number in (0, inf). Received: gamma=nan"),
    ("ple", {"num_task_experts": True},
     "num_task_experts must be a non-negative integer. Received: "
     "num_task_experts=True"),
    ("mtan", {"shared_extractor": "false"},
     "shared_extractor must be true or false. Received: shared_extractor='false'"),
    ("mmoe", {"num_experts": True},
     "num_experts must be a positive integer. Received: num_experts=True"),
])
def test_bad_option_values_name_the_option(architecture, options, message):
    with pytest.raises(kmtl.ConfigError) as error:
        architectures.get(architecture, task_names=["a", "b"], **options)
    assert str(error.value).startswith(f"Architecture {architecture!r}: ")
    assert message in str(error.value)


def test_more_selectors_than_experts_warns():
    with pytest.warns(UserWarning, match="top_k=8 exceeds the 2 experts each "
                                         "dselect_k gate chooses from"):
        architectures.get("mmoe", task_names=["a", "b"], gate="dselect_k",
                          num_experts=2, top_k=8)
    with pytest.warns(UserWarning, match="top_k=3 exceeds the 2 experts"):
        architectures.get("ple", task_names=["a", "b"], gate="dselect_k", top_k=3)
    # One expert: nothing to choose, the default top_k=2 is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        architectures.get("mmoe", task_names=["a", "b"], gate="dselect_k",
                          num_experts=1)
