"""Which parameters the tasks share, and each task's gradient of them.

Gradient-based weightings (MGDA, PCGrad, CAGrad, ...) act on the parameters
that more than one task's loss reaches: the encoder and the shared part of the
architecture. Two things decide it, both read when a step is traced:

- the graph: a task's gradient of a variable its loss does not reach is None;
- owned slices: the model's architecture (`model.architecture`) declares in
  `owned_slices()` the slices of its stacked variables (MMoE gates,
  soft-sharing towers, PLE task experts) that only feed its output for one
  task. Which tasks' predictions depend on that output is read off the
  model's Functional graph, so a task derived from it (ESMM's CTCVR = CTR x
  CVR) or a head wired by hand to several of the layer's outputs counts too.
  A model without an architecture layer (wired by hand from other layers), or
  whose architecture's place in the graph cannot be read (called more than
  once), keeps every slice shared, the safe side.

A task without a target (ESMM's CVR) never has a loss, so it reaches nothing.

A variable is cut into *parts* along its first axis (one part when no slice of
it is declared); a part is shared when more than one task reaches it. A shared part's
gradient is the weighting's direction; any other part gets the gradient of the
one task that reaches it.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kmtl._keras_internals import own_nodes


class Part(NamedTuple):
    """Rows `start:stop` of variable `index` (the whole variable when `start` is
    None) and the indices of the tasks whose loss reaches them."""

    index: int
    start: int | None
    stop: int | None
    tasks: frozenset

    @property
    def shared(self):
        return len(self.tasks) > 1


def _ancestors(tensor):
    """The ids of `tensor` and of every symbolic tensor it is computed from."""
    seen, stack = set(), [tensor]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        history = getattr(current, "_keras_history", None)
        if history is not None:
            node = history.operation._inbound_nodes[history.node_index]
            stack.extend(node.input_tensors)
    return seen


def owner_runs(owners):
    """Groups consecutive equal owners: `[(owner, start, stop), ...]`.

    Examples:
        >>> owner_runs(("a", "a", "b", None))
        [('a', 0, 2), ('b', 2, 3), (None, 3, 4)]
    """
    runs = []
    for k, owner in enumerate(owners):
        if runs and runs[-1][0] == owner:
            runs[-1] = (owner, runs[-1][1], k + 1)
        else:
            runs.append((owner, k, k + 1))
    return runs


def owner_reach(model):
    """`{id(variable): (owners, {owner: frozenset of task indices})}` for the
    variables with owned slices (`model.architecture.owned_slices()`): the
    owner of each slice along the first axis, and for each owner (an output key
    of the architecture layer), the tasks whose prediction is computed from
    that output.

    Args:
        model: a Functional `kmtl.MultiTaskModel`, outputs keyed by task name.

    Returns:
        The dict; empty when the model has no architecture layer, when its
        place in the graph cannot be read, or when it owns no slice.

    Raises:
        ValueError: the architecture declares a variable it does not hold, or
            owners that do not match the variable's first axis.
    """
    layer = getattr(model, "architecture", None)
    nodes = [] if layer is None else own_nodes(model, layer)
    if len(nodes) != 1:
        return {}
    declared = dict(layer.owned_slices())
    if not declared:
        return {}
    node = nodes[0]
    try:
        by_key = keras.tree.pack_sequence_as({k: 0 for k in layer.task_names},
                                             node.outputs)
    except (TypeError, ValueError):
        return {}
    outputs = model._outputs_struct
    ancestors = [_ancestors(outputs[name]) for name in model.task_names]
    reaching = {key: frozenset(i for i, seen in enumerate(ancestors)
                               if id(tensor) in seen)
                for key, tensor in by_key.items()}
    reach = {}
    for variable in layer.weights:
        owners = declared.pop(variable.path, None)
        if owners is None:
            continue
        owners = tuple(owners)
        if not variable.shape or variable.shape[0] != len(owners):
            raise ValueError(
                f"{type(layer).__name__}.owned_slices() gives variable "
                f"'{variable.path}' of shape {tuple(variable.shape)} "
                f"{len(owners)} slice owners; its first axis must have one "
                f"entry per owner.")
        reach[id(variable)] = (owners, reaching)
    if declared:
        raise ValueError(
            f"{type(layer).__name__}.owned_slices() names variables the layer "
            f"does not hold: {sorted(declared)}.")
    return reach


def gradient_parts(per_task, variables, tasks, reach):
    """The parts of `variables`.

    Args:
        per_task: one list per task of gradients (or None), aligned with
            `variables`, as `tape.gradient(task_loss, variables)` returns.
        variables: the variables.
        tasks: the `kmtl.Task`s, in `per_task` order.
        reach: `owner_reach(model)`.

    Returns:
        list of `Part`, in variable order, the parts of one variable in row order.
    """
    with_loss = [t for t, task in enumerate(tasks) if task.has_labels]
    parts = []
    for i, variable in enumerate(variables):
        graph = frozenset(t for t in with_loss if per_task[t][i] is not None)
        if id(variable) not in reach:
            parts.append(Part(i, None, None, graph))
            continue
        owners, reaching = reach[id(variable)]
        for owner, start, stop in owner_runs(owners):
            tasks_here = (graph if owner not in reaching
                          else graph & reaching[owner])
            parts.append(Part(i, start, stop, tasks_here))
    return parts


def part_of(gradient, part):
    """A variable's `gradient` (or None) restricted to `part`'s rows; a
    whole-variable part returns it as is."""
    if gradient is None or part.start is None:
        return gradient
    return tf.convert_to_tensor(gradient)[part.start:part.stop]


def _shape(variable, part):
    shape = tuple(variable.shape)
    return shape if part.start is None else (part.stop - part.start, *shape[1:])


def _size(shape):
    return int(np.prod(shape, dtype="int64"))


def gradient_matrix(per_task, parts, variables):
    """`(tasks, parameters)` float32: each task's gradient of the shared parts,
    flattened side by side (zeros where a task's loss does not reach a part);
    `(tasks, 0)` when no part is shared."""
    rows = []
    for task_gradients in per_task:
        pieces = [ops.zeros((0,), "float32")]
        for part in parts:
            if not part.shared:
                continue
            g = task_gradients[part.index]
            piece = (ops.zeros(_shape(variables[part.index], part), "float32")
                     if g is None else ops.cast(
                         tf.convert_to_tensor(part_of(g, part)), "float32"))
            pieces.append(ops.reshape(piece, (-1,)))
        rows.append(ops.concatenate(pieces))
    return ops.stack(rows)


def assemble(parts, variables, piece):
    """One gradient per variable from one tensor (or None) per part.

    `piece(part)` gives the part's gradient, shaped like the part, or None for
    zeros. A variable made of one part gets its piece as is (None stays None,
    an `IndexedSlices` stays sparse); the pieces of a cut variable are
    concatenated along the first axis, in the variable's dtype.
    """
    by_variable = {}
    for part in parts:
        by_variable.setdefault(part.index, []).append(part)
    gradients = []
    for i, variable in enumerate(variables):
        own = by_variable[i]
        if len(own) == 1 and own[0].start is None:
            gradients.append(piece(own[0]))
            continue
        pieces = [piece(part) for part in own]
        if all(p is None for p in pieces):
            gradients.append(None)
            continue
        gradients.append(ops.concatenate(
            [ops.zeros(_shape(variable, part), variable.dtype) if p is None
             else ops.cast(p, variable.dtype) for part, p in zip(own, pieces)],
            axis=0))
    return gradients


def own_gradient(per_task, part):
    """The gradient of a part that at most one task reaches: that task's, or
    None."""
    if not part.tasks:
        return None
    (task,) = part.tasks
    return part_of(per_task[task][part.index], part)


def split_direction(direction, parts, variables):
    """`{part: tensor}`: the flat `direction` over the shared parts (in
    `gradient_matrix` column order) cut back into part-shaped pieces."""
    pieces, offset = {}, 0
    for part in parts:
        if not part.shared:
            continue
        shape = _shape(variables[part.index], part)
        size = _size(shape)
        pieces[part] = ops.reshape(direction[offset:offset + size], shape)
        offset += size
    return pieces
