"""The checks every registered architecture goes through (KerasHub's
`run_layer_test` / `run_model_saving_test` in spirit).

`run_architecture_test(name, **options)` builds the architecture for three
tasks on random inputs and checks:

- the contract: an `Architecture`, named by its registered name, one output
  per task in `task_names` order with the shape `compute_output_shape` gives,
  `penalty()` None or a scalar, `diagnostics()` labelled matrices when the
  layer is `inspectable`;
- a config round trip (JSON) and a `.keras` round trip: same outputs, same
  owned slices;
- the owned slices against the graph (`assert_owned_slices_match_graph`).

Imported from the test files of this folder as `from architecture_case import
...`.
"""

import json
import os
import tempfile

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from helpers import assert_export_serves
from keras import ops

import kmtl
from kmtl import architectures
from kmtl.architectures import ARCHITECTURES
from kmtl.architectures import Architecture
from kmtl.features import Feature
from kmtl.tasks import Task

TASKS = ("a", "b", "c")
FEATURES = 6
ROWS = 64


def random_inputs(rows=ROWS, features=FEATURES, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, features)).astype(
        "float32")


def _numpy(tensor):
    return np.asarray(ops.convert_to_numpy(tf.convert_to_tensor(tensor)))


def graph_reach(layer, inputs):
    """`{variable.path: [set of task names, one per slice]}`: which tasks'
    outputs depend on each slice along the first axis of each trainable weight
    (a weight without axes is one slice).

    Read off per-task gradients on `inputs`: the gradient of a random
    projection of task t's output (random, so that no sum cancels out) with
    respect to the weight; a slice is reached by t where that gradient has a
    non-zero entry.
    """
    weights = layer.trainable_weights
    rng = np.random.default_rng(1)
    with tf.GradientTape(persistent=True) as tape:
        outputs = layer(inputs, training=False)
        projections = {
            name: ops.sum(outputs[name] * rng.normal(
                size=tuple(outputs[name].shape)).astype("float32"))
            for name in layer.task_names}
    reach = {w.path: [set() for _ in range(w.shape[0] if w.shape else 1)]
             for w in weights}
    for name in layer.task_names:
        for weight, gradient in zip(weights, tape.gradient(projections[name],
                                                           weights)):
            if gradient is None:
                continue
            rows = _numpy(gradient).reshape(len(reach[weight.path]), -1)
            for k in np.flatnonzero(np.any(rows != 0, axis=1)):
                reach[weight.path][k].add(name)
    del tape
    return reach


def owned_slice_errors(layer, inputs):
    """What is wrong with `layer.owned_slices()`, as a list of sentences
    (empty when nothing is): a slice that one task's output alone reaches must
    be declared that task's; a declared owner must be the only task that
    reaches the slice; declared variables must be the layer's, with one owner
    per slice."""
    reach = graph_reach(layer, inputs)
    declared = dict(layer.owned_slices())
    errors = [f"{path} is declared but is not a trainable weight of the layer"
              for path in sorted(set(declared) - set(reach))]
    for path, slices in reach.items():
        owners = declared.get(path)
        if owners is not None and len(owners) != len(slices):
            errors.append(f"{path} has {len(slices)} slices but "
                          f"{len(owners)} owners {list(owners)}")
            continue
        for k, tasks in enumerate(slices):
            owner = None if owners is None else owners[k]
            if owner is not None and not tasks <= {owner}:
                errors.append(f"{path}[{k}] is declared owned by {owner!r}, but "
                              f"the outputs of {sorted(tasks)} depend on it")
            if len(tasks) == 1 and owner not in tasks:
                errors.append(f"{path}[{k}]: only the output of "
                              f"{sorted(tasks)[0]!r} depends on it, but it is "
                              f"declared owned by {owner!r}")
    return errors


def assert_owned_slices_match_graph(layer, inputs):
    errors = owned_slice_errors(layer, inputs)
    assert not errors, (f"{type(layer).__name__}.owned_slices() disagrees with "
                        f"the graph:\n" + "\n".join(errors))


def _assert_outputs_equal(actual, expected, task_names):
    assert sorted(actual) == sorted(task_names)
    for name in task_names:
        np.testing.assert_allclose(_numpy(actual[name]), _numpy(expected[name]),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def make_architecture(name, task_names=TASKS, registry=ARCHITECTURES, **options):
    """The `name` architecture for `task_names`, from `registry` (by
    `kmtl.architectures.get` for the built-in registry)."""
    if registry is ARCHITECTURES:
        return architectures.get(name, task_names=list(task_names), **options)
    return registry.get(name, task_names=list(task_names),
                        name=registry.get_class(name).registered_name, **options)


def run_architecture_test(name, *, registry=ARCHITECTURES, task_names=TASKS,
                          **options):
    """Every check of this module on the `name` architecture with `options`.

    Args:
        name: a registered name.
        registry: the registry `name` is in (a test registers toy
            architectures in a registry of its own).
        task_names: the tasks, default three.
        **options: the architecture's own arguments (small sizes keep it fast).
    """
    # Fixed weights: the graph check reads gradients, which a unit that no
    # input activates would zero; with a seed such a draw is found once, not
    # at random.
    keras.utils.set_random_seed(0)
    layer = make_architecture(name, task_names, registry, **options)
    inputs = random_inputs()

    # === Contract ===
    assert isinstance(layer, Architecture)
    assert layer.name == registry.get_class(name).registered_name
    assert list(layer.task_names) == list(task_names)
    outputs = layer(inputs)
    assert list(outputs) == list(task_names)
    shapes = layer.compute_output_shape((None, FEATURES))
    for task in task_names:
        value = _numpy(outputs[task])
        assert value.shape == (ROWS, shapes[task][-1]), task
        assert tuple(shapes[task][:-1]) == (None,)
        assert np.isfinite(value).all(), task
    penalty = layer.penalty()
    assert penalty is None or tuple(ops.shape(penalty)) == ()
    if layer.inspectable:
        shown = layer.diagnostics(inputs)
        assert shown, "an inspectable architecture shows at least one matrix"
        for matrix, rows, columns in shown.values():
            assert tuple(ops.shape(matrix)) == (len(rows), len(columns))
    else:
        assert layer.diagnostics(inputs) == {}

    # === Owned slices ===
    assert_owned_slices_match_graph(layer, inputs)

    # === Config round trip ===
    config = json.loads(json.dumps(registry.serialize(layer)))
    copy = registry.deserialize(config)
    assert type(copy) is type(layer)
    assert copy.get_config() == layer.get_config()
    copy(inputs)
    copy.set_weights(layer.get_weights())
    _assert_outputs_equal(copy(inputs), outputs, task_names)

    # === .keras round trip ===
    model_inputs = keras.Input((FEATURES,), name="encoded")
    model = keras.Model(model_inputs, layer(model_inputs))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "architecture.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    revived = loaded.get_layer(layer.name)
    assert type(revived) is type(layer)
    assert revived.get_config() == layer.get_config()
    _assert_outputs_equal(loaded(inputs), outputs, task_names)
    assert {path: tuple(owners) for path, owners in
            revived.owned_slices().items()} == {
        path: tuple(owners) for path, owners in layer.owned_slices().items()}
    return layer


def check_export(name, folder, *, registry=ARCHITECTURES, task_names=TASKS,
                 **options):
    """A model built on the `name` architecture (`kmtl.build_model`, numeric
    features) exports for TF Serving, and the served outputs equal `predict`."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(ROWS, FEATURES)).astype("float32"),
                         columns=[f"x{i}" for i in range(FEATURES)])
    features = [Feature(column, "numeric").fit(frame) for column in frame]
    tasks = [Task(task, "regression", target_mean=[0.0], target_std=[1.0])
             for task in task_names]
    keras.utils.set_random_seed(0)
    layer = make_architecture(name, task_names, registry, **options)
    model = kmtl.build_model(features, tasks, layer, tower_units=(3,))
    assert model.architecture is layer
    assert_export_serves(model, {c: frame[c].to_numpy() for c in frame}, folder)
