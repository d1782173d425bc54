"""Progressive training: `add_tasks` keeps the trained tasks' predictions and
the shared layers, new towers learn, frozen layers stay put."""

import keras
import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl import architectures
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.features import resolve_features
from kmtl.models import MultiTaskModel
from kmtl.models import add_tasks
from kmtl.models import freeze_layers
from kmtl.models import unfreeze_layers
from kmtl.tasks import Task

ROWS = 64
# Small layers, so every architecture builds in well under a second.
SMALL = {
    "shared_bottom": {"units": (4,)},
    "mmoe": {"num_experts": 2, "expert_units": (4,)},
    "cgc": {"expert_units": (4,)},
    "ple": {"expert_units": (4,)},
    "mtan": {"units": (4, 4), "shared_extractor": False},
    "soft_sharing": {"units": (4,)},
    "cross_stitch": {"units": (4, 4)},
}
# Architectures whose weights mix every task's part: a new task would change
# the old tasks' outputs, so add_tasks refuses them, naming the weight.
REFUSED = {
    "cross_stitch": "tower_kernel_0",  # the stitch units mix the towers
    "ple": "level_0_expert_kernel_0",  # the shared gate of level 0 weighs all
}


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "x1": rng.normal(size=ROWS),
        "x2": rng.normal(size=ROWS),
        "color": rng.choice(["red", "green", "blue"], ROWS),
    })
    frame["a"] = (frame.x1 > 0).astype(float)
    frame["b"] = ((frame.x2 > 0) | (frame.color == "red")).astype(float)
    frame["c"] = (frame.x1 + frame.x2 > 0).astype(float)
    return frame


@pytest.fixture(scope="module")
def fitted(frame):
    tasks = {name: Task(name, "binary").fit(frame) for name in ("a", "b", "c")}
    features = [f.fit(frame) for f in resolve_features(frame, exclude=list(tasks))]
    return features, tasks


def _perturb(model, seed=1):
    """Random trainable weights (biases included), so that a weight copied to
    the wrong place or left at its initial value changes the predictions."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))


def _predict(model, x):
    return {k: keras.ops.convert_to_numpy(v)
            for k, v in model(x, training=False).items()}


def _batches(frame, features, tasks):
    encoded = next(iter(make_dataset(frame, features, tasks, batch_size=ROWS)))
    raw = next(iter(make_dataset(frame, features, batch_size=ROWS,
                                 encoded=False)))
    return encoded[0], raw


@pytest.mark.parametrize("name", architectures.list_architectures())
def test_add_tasks_keeps_the_old_predictions(name, frame, fitted):
    features, tasks = fitted
    keras.utils.set_random_seed(0)
    old = kmtl.build_model(features, [tasks["a"]], architecture=name,
                           tower_units=(3,), **SMALL.get(name, {}))
    _perturb(old)
    if name in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[name]):
            add_tasks(old, [tasks["b"]])
        return
    new = add_tasks(old, [tasks["b"]])
    assert new.task_names == ["a", "b"]
    assert new.architecture.task_names == ["a", "b"]
    for x in _batches(frame, features, [tasks["a"]]):
        before, after = _predict(old, x), _predict(new, x)
        np.testing.assert_array_equal(after["a"], before["a"])
        assert after["b"].shape == (ROWS, 1)
    # The shared layers and a's tower and head are the very same objects.
    for layer in old.layers:
        if layer is not old.architecture:
            assert new.get_layer(layer.name) is layer


@pytest.mark.parametrize("options", [{"num_levels": 1}, {"num_shared_experts": 0}])
def test_ple_without_a_mixing_shared_gate_takes_new_tasks(options, frame, fitted):
    features, tasks = fitted
    old = kmtl.build_model(features, [tasks["a"]], architecture="ple",
                           tower_units=(), expert_units=(4,), **options)
    _perturb(old)
    new = add_tasks(old, [tasks["b"]])
    x, _ = _batches(frame, features, [tasks["a"]])
    np.testing.assert_array_equal(_predict(new, x)["a"], _predict(old, x)["a"])


def test_stacked_weights_are_copied_slice_by_slice(fitted):
    features, tasks = fitted
    old = kmtl.build_model(features, [tasks["a"]], architecture="mmoe",
                           num_experts=2, expert_units=(4,))
    _perturb(old)
    new = add_tasks(old, [tasks["b"]])
    source, target = old.architecture, new.architecture
    owned = target.owned_slices()
    for before, after in zip(source.weights, target.weights):
        before = keras.ops.convert_to_numpy(before)
        value = keras.ops.convert_to_numpy(after)
        if after.path in owned:  # the gates: (tasks, ...), a's slice copied
            assert owned[after.path] == ("a", "b")
            np.testing.assert_array_equal(value[0], before[0])
            assert value.shape[0] == 2
        else:  # the experts, shared whole
            np.testing.assert_array_equal(value, before)
    gate = keras.ops.convert_to_numpy(target.gate_kernels[0])
    assert not np.array_equal(gate[1], gate[0])  # b's gate: fresh


def test_derived_tasks_old_and_new(frame, fitted):
    features, tasks = fitted
    product = Task("ab", "binary", derived_from=["a", "b"])
    old = kmtl.build_model(features, [tasks["a"], tasks["b"], product],
                           architecture="mmoe", num_experts=2, expert_units=(4,),
                           tower_units=(3,))
    _perturb(old)
    new = add_tasks(old, [Task("ac", "binary", derived_from=["a", "c"]),
                          tasks["c"]])
    assert new.task_names == ["a", "b", "ab", "ac", "c"]
    x, _ = _batches(frame, features, [tasks["a"]])
    before, after = _predict(old, x), _predict(new, x)
    for name in ("a", "b", "ab"):
        np.testing.assert_array_equal(after[name], before[name])
    np.testing.assert_allclose(after["ac"], after["a"] * after["c"], rtol=1e-6)


def test_tower_options_default_to_the_old_towers(fitted):
    features, tasks = fitted
    old = kmtl.build_model(features, [tasks["a"]], units=(4,), tower_units=(3, 2),
                           tower_activation="tanh", tower_dropout=0.25)
    new = add_tasks(old, [tasks["b"]])
    assert [new.get_layer(f"b_tower_{i}").units for i in (0, 1)] == [3, 2]
    assert new.get_layer("b_tower_0").get_config()["activation"] == "tanh"
    assert new.get_layer("b_tower_dropout_1").rate == 0.25
    other = add_tasks(old, [tasks["c"]], tower_units=(5,), tower_dropout=0.0)
    assert other.get_layer("c_tower_0").units == 5
    assert "c_tower_1" not in [layer.name for layer in other.layers]
    assert "c_tower_dropout_0" not in [layer.name for layer in other.layers]
    bare = kmtl.build_model(features, [tasks["a"]], units=(4,), tower_units=())
    assert add_tasks(bare, [tasks["b"]]).get_layer("b").input.shape == (None, 4)


def test_frozen_shared_part_stays_while_new_towers_train(tmp_path, frame, fitted):
    features, tasks = fitted
    keras.utils.set_random_seed(0)
    old = kmtl.build_model(features, [tasks["a"]], architecture="mmoe",
                           num_experts=2, expert_units=(4,), tower_units=(3,))
    both = [tasks["a"], tasks["b"]]
    new = add_tasks(old, [tasks["b"]])
    frozen = freeze_layers(new, ["shared"])
    assert new.architecture in frozen
    # The categorical embedding is frozen too (a feature encoder).
    assert any(layer.weights and layer is not new.architecture for layer in frozen)
    assert not any(layer.name.startswith(("a_tower", "b_tower")) or
                   layer.name in ("a", "b") for layer in frozen)
    shared = {v.path: keras.ops.convert_to_numpy(v).copy()
              for layer in frozen for v in layer.weights}
    towers = {v.path: keras.ops.convert_to_numpy(v).copy()
              for v in new.trainable_weights}
    assert set(towers).isdisjoint(shared)
    new.compile(optimizer=keras.optimizers.Adam(0.05))
    data = make_dataset(frame, features, both, batch_size=16)
    history = new.fit(data, epochs=2, verbose=0)
    for layer in frozen:
        for v in layer.weights:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v),
                                          shared[v.path])
    for v in new.trainable_weights:
        assert not np.array_equal(keras.ops.convert_to_numpy(v), towers[v.path]), (
            v.path)
    assert history.history["b_loss"][-1] < history.history["b_loss"][0]
    unfreeze_layers(new, ["shared"])
    assert new.architecture.trainable


def test_new_model_trains_both_tasks_and_survives_a_keras_round_trip(
        tmp_path, frame, fitted):
    features, tasks = fitted
    keras.utils.set_random_seed(0)
    both = [tasks["a"], tasks["b"]]
    old = kmtl.build_model(features, [tasks["a"]], architecture="cgc",
                           expert_units=(4,), tower_units=(3,))
    old.compile(optimizer=keras.optimizers.Adam(0.05))
    old.fit(make_dataset(frame, features, [tasks["a"]], batch_size=16),
            epochs=2, verbose=0)
    new = add_tasks(old, [tasks["b"]])
    new.compile(optimizer=keras.optimizers.Adam(0.05))
    data = make_dataset(frame, features, both, batch_size=16)
    history = new.fit(data, epochs=6, verbose=0).history
    for name in ("a_loss", "b_loss", "loss"):
        assert history[name][-1] < history[name][0], (name, history[name])
    path = tmp_path / "both.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MultiTaskModel)
    assert loaded.task_names == ["a", "b"]
    x, raw = _batches(frame, features, both)
    for batch in (x, raw):
        expected, got = _predict(new, batch), _predict(loaded, batch)
        for name in ("a", "b"):
            np.testing.assert_array_equal(got[name], expected[name])


def test_errors_name_the_task_or_layer(fitted):
    features, tasks = fitted
    old = kmtl.build_model(features, [tasks["a"]], units=(4,), tower_units=(3,))
    with pytest.raises(ConfigError, match="at least one task"):
        add_tasks(old, [])
    with pytest.raises(ConfigError, match="Task 'a' is already in model"):
        add_tasks(old, [tasks["a"]])
    with pytest.raises(ConfigError, match="Task 'b' is already in model"):
        add_tasks(old, [tasks["b"], tasks["b"]])
    with pytest.raises(ConfigError, match="Task 'bc'.*unknown task 'z'"):
        add_tasks(old, [Task("bc", "binary", derived_from=["b", "z"]),
                        tasks["b"]])
    with pytest.raises(ConfigError, match="Task 'x1' is named like an input"):
        add_tasks(old, [{"name": "x1", "type": "regression"}])
    with pytest.raises(ConfigError, match="'a_tower_0'"):
        add_tasks(old, [{"name": "a_tower_0", "type": "binary", "positive": 1.0,
                         "classes": [0.0, 1.0]}])
    with pytest.raises(ConfigError, match="Unknown layer 'trunk' to freeze.*"
                                          "'a_tower_0'"):
        freeze_layers(old, ["trunk"])
    assert old.architecture.trainable  # nothing frozen before the check failed
    x = keras.Input((1,), name="x1")
    wired = MultiTaskModel(
        {"x1": x}, {"a": keras.layers.Dense(1, activation="sigmoid", name="a")(x)},
        tasks=[tasks["a"]])
    with pytest.raises(ConfigError, match="no architecture layer"):
        add_tasks(wired, [tasks["b"]])
    with pytest.raises(ConfigError, match="no architecture layer"):
        freeze_layers(wired, "shared")


def test_tasks_added_twice_and_to_a_loaded_model(tmp_path, frame, fitted):
    features, tasks = fitted
    first = kmtl.build_model(features, [tasks["a"]], architecture="mtan",
                             units=(4,), tower_units=(3,))
    _perturb(first)
    path = tmp_path / "first.keras"
    first.save(path)
    second = add_tasks(keras.models.load_model(path), [tasks["b"]])
    _perturb(second, seed=2)
    third = add_tasks(second, [tasks["c"]])
    assert third.architecture.task_names == ["a", "b", "c"]
    x, raw = _batches(frame, features, [tasks["a"]])
    np.testing.assert_array_equal(_predict(second, raw)["a"],
                                  _predict(second, x)["a"])
    before, after = _predict(second, x), _predict(third, x)
    for name in ("a", "b"):
        np.testing.assert_array_equal(after[name], before[name])
