"""Progressive training: new tasks on a trained model's shared part, and frozen
layers.

A model trained on some tasks takes new ones (`add_tasks`): the new model keeps
the old inputs, feature preprocessing, shared layers and the old tasks' towers
and heads as the very same layer objects, and adds a tower and a head per new
task. Training can then go on with the shared part frozen (`freeze_layers`:
feature extraction, only the new towers and heads learn) or trainable
(fine-tuning, the whole network adapts), the two ways of reusing a trained
network that Yosinski, Clune, Bengio and Lipson compare ("How transferable are
features in deep neural networks?", NeurIPS 2014, arXiv:1411.1792) and that
Li and Hoiem's "Learning without Forgetting" (TPAMI 2017, arXiv:1606.09282)
sets out for adding tasks to a shared trunk. It is not Rusu et al.'s
"Progressive Neural Networks" (arXiv:1606.04671), which adds a whole column
per task with lateral connections: here the trunk is one and new tasks only
get heads.
"""

import keras
import numpy as np

from kmtl import tasks as tasks_module
from kmtl._checks import check_rate
from kmtl._checks import check_units
from kmtl._keras_internals import own_nodes
from kmtl._keras_internals import replay_graph
from kmtl.errors import ConfigError
from kmtl.models.builder import _tower_and_head
from kmtl.models.multitask_model import MultiTaskModel
from kmtl.models.multitask_model import _functional
from kmtl.tasks.derived import build_product

SHARED = "shared"
"""The name `freeze_layers` reads as every layer that is not a task's tower or
head: the feature encoders and the architecture layer."""


def add_tasks(model, tasks, tower_units=None, tower_activation=None,
              tower_dropout=None):
    """A new model with `model`'s tasks and `tasks`, on the same shared part.

    The new `kmtl.MultiTaskModel` reuses `model`'s input tensors, feature
    preprocessing and encoders, and the old tasks' towers and heads (derived
    tasks' products included) as the same layer objects: training either model
    moves the other's weights. The architecture layer serves one
    representation per task, so it is rebuilt: a layer of the same class and
    config for the old task names followed by the new ones, on the same input
    tensor, with the old layer's weights copied in (`copy_architecture_weights`).
    Before any further training the old tasks' predictions are bit-identical
    to `model`'s. Each new task that is not derived gets a tower
    (`<task>_tower_<i>`, as in `kmtl.build_model`) and its head
    (`Task.build_head`), freshly initialized; a derived task (`derived_from`,
    ESMM's CTCVR) is the product of its sources, old or new.

    This is adding task heads on a shared trunk (Li and Hoiem, "Learning
    without Forgetting", TPAMI 2017, arXiv:1606.09282, set out the options):
    freeze the shared part (`freeze_layers(new, ["shared"])`) for feature
    extraction, or leave it trainable for fine-tuning. It is not Rusu et al.'s
    "Progressive Neural Networks" (2016), which adds a network column per task.

    Args:
        model: a `kmtl.MultiTaskModel` built by `kmtl.build_model` (it must hold
            an architecture layer, `model.architecture`).
        tasks: non-empty list of fitted `kmtl.Task` (or config dicts), named
            unlike the model's tasks, inputs and layers.
        tower_units: list of int, the hidden units of each new tower; None
            (default): the old towers' (the `<task>_tower_<i>` Dense layers of
            the model's first task with a tower; `()` when it has none).
        tower_activation: str; None (default): the old towers' activation
            (`"relu"` when they have none).
        tower_dropout: float in [0, 1); None (default): the old towers' rate
            (the `<task>_tower_dropout_<i>` layers; 0 when absent).

    Returns:
        A `kmtl.MultiTaskModel` named like `model`, with the same inputs and
        fitted features, outputs `{task: (batch, task.units)}` for the old
        tasks then the new ones, not compiled. Layers frozen in `model` stay
        frozen (the layers are shared; the rebuilt architecture layer copies
        the old one's `trainable`).

    Raises:
        ConfigError: no tasks; a task named like one of the model's tasks,
            inputs or layers, or two new tasks with one name; a derived task
            whose sources are unknown (or not binary); a model without an
            architecture layer; bad tower sizes; an architecture whose weights
            cannot be carried over (`copy_architecture_weights`).

    Examples:
        >>> first = kmtl.build_model(features, [married], architecture="mmoe")
        >>> first.compile(); first.fit(data_married, epochs=5)
        >>> both = kmtl.models.add_tasks(first, [income])
        >>> kmtl.models.freeze_layers(both, ["shared"])
        >>> both.compile(); both.fit(data_both, epochs=5)
    """
    new_tasks = _check_new_tasks(model, tasks)
    architecture = model.architecture
    if architecture is None:
        raise ConfigError(
            f"Model {model.name!r} has no architecture layer (wired by hand?); "
            f"add_tasks rebuilds the architecture for the new tasks "
            f"{[t.name for t in new_tasks]}. Build the model with "
            f"kmtl.build_model.")
    units, activation, dropout = _tower_options(
        model, tower_units, tower_activation, tower_dropout)
    all_tasks = tasks_module.derivation_order([*model.tasks, *new_tasks])

    # === Shared part ===
    node = own_nodes(model, architecture)[0]
    encoded = node.input_tensors[0]
    old_names = list(architecture.task_names)
    old_representations = keras.tree.pack_sequence_as(
        {n: None for n in old_names}, node.outputs)
    headed = [t.name for t in new_tasks if not t.derived_from]
    config = {**architecture.get_config(), "task_names": old_names + headed}
    rebuilt = type(architecture).from_config(config)
    representations = rebuilt(encoded)
    copy_architecture_weights(architecture, rebuilt)

    # === Old towers and heads, replayed on the rebuilt layer's outputs ===
    # A Functional from the old representations to the old outputs, run on
    # the new ones with each layer as it is (what `keras.models.clone_model`
    # does with `clone_function=lambda layer: layer`, whose model would hold
    # copies of the graph's tensors, not these).
    replay = _functional(old_representations, dict(model._outputs_struct))
    outputs = replay_graph(replay, {n: representations[n] for n in old_names})
    outputs = dict(outputs)

    # === New towers and heads ===
    for task in all_tasks:
        if task.name in outputs:
            continue
        if task.derived_from:
            outputs[task.name] = build_product(task, outputs)
        else:
            outputs[task.name] = _tower_and_head(
                task, representations[task.name], units, activation, dropout)
    ordered = [*model.tasks, *new_tasks]
    try:
        return MultiTaskModel(
            inputs=model._inputs_struct,
            outputs={t.name: outputs[t.name] for t in ordered},
            tasks=ordered, features=model._fitted_features, name=model.name)
    except ValueError as error:
        if "should be unique" not in str(error):
            raise
        raise ConfigError(
            f"{error} A new task is named like a layer of model "
            f"{model.name!r}; rename the task(s) {[t.name for t in new_tasks]}."
        ) from None


def copy_architecture_weights(source, target):
    """Copies a trained architecture layer's weights into one of the same class
    built for more tasks (`add_tasks`).

    A weight of the same shape in both is copied whole. A weight that
    `owned_slices()` lists in both (stacked per task along axis 0, see
    `kmtl.architectures.Architecture`) is copied slice by slice: each task's
    slice of `source` to that task's slice of `target`, and the shared (None)
    slices in order; the slices of tasks that `source` does not serve keep
    their fresh initialization.

    Args:
        source: a built `kmtl.architectures.Architecture`.
        target: a built layer of the same class whose `task_names` start with
            `source`'s.

    Raises:
        ConfigError: a weight whose shape changes with the number of tasks
            but that is not stacked per task (cross-stitch units mix every
            task; PLE's shared gates before the last level weigh every
            expert), or whose slices differ in shape: new tasks would change
            the old tasks' outputs. The message names the weight and shapes.
    """
    owned_source = source.owned_slices()
    owned_target = target.owned_slices()
    pairs = list(zip(source.weights, target.weights))
    if len(source.weights) != len(target.weights):
        raise ConfigError(
            f"Architecture {source.name!r} has {len(source.weights)} weights "
            f"for tasks {source.task_names} but {len(target.weights)} for "
            f"{target.task_names}; add_tasks cannot carry them over.")
    values = []
    for old, new in pairs:
        value = keras.ops.convert_to_numpy(old)
        if old.path in owned_source and new.path in owned_target:
            value = _copy_slices(old, new, value, owned_source[old.path],
                                 owned_target[new.path])
        elif tuple(old.shape) != tuple(new.shape):
            raise ConfigError(
                f"Architecture {source.name!r} ({type(source).__name__}) cannot "
                f"take new tasks keeping the old tasks' outputs: its weight "
                f"{old.path!r} of shape {tuple(old.shape)} becomes "
                f"{tuple(new.shape)} for tasks {list(target.task_names)}, and "
                f"owned_slices() does not give it one slice per task (its "
                f"parts reach every task's output). Train all "
                f"tasks jointly, or use an architecture without such weights "
                f"(shared_bottom, mmoe, cgc, ple without shared experts, mtan, "
                f"soft_sharing).")
        values.append(value)
    for new, value in zip(target.weights, values):
        new.assign(value)


def _copy_slices(old, new, value, old_owners, new_owners):
    result = keras.ops.convert_to_numpy(new).copy()
    new_shared = [i for i, owner in enumerate(new_owners) if owner is None]
    shared = iter(new_shared)
    for index, owner in enumerate(old_owners):
        if owner is None:
            target = next(shared, None)
        else:
            target = (new_owners.index(owner) if owner in new_owners else None)
        if target is None or result[target].shape != value[index].shape:
            raise ConfigError(
                f"Cannot carry slice {index} (task {owner!r}) of weight "
                f"{old.path!r} {tuple(old.shape)} over to {tuple(new.shape)} "
                f"(owners {list(new_owners)}): the slices differ.")
        result[target] = value[index]
    return np.asarray(result)


def freeze_layers(model, names):
    """Freezes layers: `trainable = False` on each layer named in `names`.

    Keras reads `trainable` when the model is compiled: freeze, then
    `compile`, then `fit` (a model compiled before keeps training the layers
    until compiled again). Freezing the shared part while new task heads learn
    is feature extraction; leaving it trainable, fine-tuning (Yosinski et al.,
    "How transferable are features in deep neural networks?", NeurIPS 2014,
    arXiv:1411.1792).

    Args:
        model: a `kmtl.MultiTaskModel`.
        names: list of layer names (`[layer.name for layer in model.layers]`),
            or `"shared"`: every layer that is not a task's tower or head (the
            feature encoders, encoder models and the architecture layer).

    Returns:
        list of the layers frozen.

    Raises:
        ConfigError: an unknown layer name (the message lists the model's
            layer names), or `"shared"` in a model without an architecture
            layer.
    """
    return _set_trainable(model, names, False)


def unfreeze_layers(model, names):
    """Makes layers trainable again (`trainable = True`): the reverse of
    `freeze_layers`, with the same `names` (`"shared"` included). Compile the
    model afterwards.

    Args:
        model: a `kmtl.MultiTaskModel`.
        names: list of layer names, or `"shared"`.

    Returns:
        list of the layers unfrozen.

    Raises:
        ConfigError: as `freeze_layers`.
    """
    return _set_trainable(model, names, True)


def shared_layers(model):
    """The layers of `model` that are not a task's tower or head: everything
    from the inputs up to the architecture layer, inclusive.

    Args:
        model: a `kmtl.MultiTaskModel` with an architecture layer.

    Returns:
        list of layers (no `InputLayer`), in `model.layers` order.

    Raises:
        ConfigError: the model has no architecture layer.
    """
    architecture = model.architecture
    if architecture is None:
        raise ConfigError(
            f"Model {model.name!r} has no architecture layer, so {SHARED!r} "
            f"names nothing; name its layers instead: "
            f"{[layer.name for layer in model.layers]}.")
    node = own_nodes(model, architecture)[0]
    representations = keras.tree.pack_sequence_as(
        {n: None for n in architecture.task_names}, node.outputs)
    task_side = _functional(representations, dict(model._outputs_struct))
    heads = {id(layer) for layer in task_side.layers}
    return [layer for layer in model.layers
            if id(layer) not in heads
            and not isinstance(layer, keras.layers.InputLayer)]


def _set_trainable(model, names, trainable):
    if isinstance(names, str):
        names = [names]
    by_name = {layer.name: layer for layer in model.layers}
    chosen = []
    for name in names:
        if name == SHARED:
            chosen.extend(shared_layers(model))
        elif name in by_name:
            chosen.append(by_name[name])
        else:
            raise ConfigError(
                f"Unknown layer {name!r} to "
                f"{'unfreeze' if trainable else 'freeze'} in model "
                f"{model.name!r}. Use {SHARED!r} or one of its layers: "
                f"{sorted(by_name)}.")
    for layer in chosen:
        layer.trainable = trainable
    return chosen


def _check_new_tasks(model, tasks):
    tasks = [tasks_module.get(t) for t in tasks or ()]
    if not tasks:
        raise ConfigError(
            f"add_tasks needs at least one task to add to model "
            f"{model.name!r} (tasks {model.task_names}). Received: none.")
    seen = set(model.task_names)
    inputs = set(model._inputs_struct) if isinstance(
        model._inputs_struct, dict) else set()
    for task in tasks:
        if task.name in seen:
            raise ConfigError(
                f"Task '{task.name}' is already in model {model.name!r} "
                f"(tasks {model.task_names}) or given twice; give the new "
                f"task another name.")
        if task.name in inputs:
            raise ConfigError(
                f"Task '{task.name}' is named like an input of model "
                f"{model.name!r}; rename the task.")
        seen.add(task.name)
    return tasks


def _tower_options(model, units, activation, dropout):
    """The new towers' options: those given, else the old towers' (of the
    first task that has a tower)."""
    names = {layer.name: layer for layer in model.layers}
    dense, rates = [], []
    for task in model.tasks:
        while f"{task.name}_tower_{len(dense)}" in names:
            i = len(dense)
            dense.append(names[f"{task.name}_tower_{i}"])
            rate = names.get(f"{task.name}_tower_dropout_{i}")
            rates.append(0.0 if rate is None else rate.rate)
        if dense:
            break
    if units is None:
        units = tuple(layer.units for layer in dense)
    if activation is None:
        activation = (keras.activations.serialize(dense[0].activation)
                      if dense else "relu")
    if dropout is None:
        dropout = rates[0] if rates else 0.0
    try:
        units = check_units(units, "tower_units", True)
        dropout = check_rate(dropout, "tower_dropout")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return units, activation, dropout
