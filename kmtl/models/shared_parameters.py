"""Which parameters the tasks share, and each task's gradient of them.

Gradient-based weightings (MGDA, PCGrad, CAGrad, ...) act on the parameters
that more than one task's loss reaches: the encoder and the shared part of the
architecture. Two things decide it, both read when a step is traced:

- the graph: a task's gradient of a variable its loss does not reach is None;
- the architecture's slice owners (`kmtl.architectures.task_owned`): a stacked
  per-task variable (MMoE gates, soft-sharing towers, PLE task experts) is
  reached by every task's loss as a whole, but each of its owned slices only by
  the tasks whose output depends on the owner: the owner itself and the tasks
  derived from it (ESMM's CTCVR reaches both CTR's and CVR's slices).

A task without a target (ESMM's CVR) never has a loss, so it reaches nothing.

A variable is cut into *parts* along its first axis (one part when it is not
marked); a part is shared when more than one task reaches it. A shared part's
gradient is the weighting's direction; any other part gets the gradient of the
one task that reaches it.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf
from keras import ops

from kmtl.architectures.task_owned import owner_runs
from kmtl.architectures.task_owned import slice_owners


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


def tasks_reaching(tasks):
    """`{task name: frozenset of task indices}`: the tasks whose prediction
    depends on each task's output, itself and every task derived from it
    (directly or through other derived tasks)."""
    parents = {t.name: list(t.derived_from or ()) for t in tasks}

    def ancestors(name, seen=()):
        found = set()
        for parent in parents.get(name, ()):
            if parent not in seen:
                found |= {parent} | ancestors(parent, (*seen, name))
        return found

    reaching = {t.name: {i} for i, t in enumerate(tasks)}
    for i, task in enumerate(tasks):
        for ancestor in ancestors(task.name):
            reaching[ancestor].add(i)
    return {name: frozenset(indices) for name, indices in reaching.items()}


def gradient_parts(per_task, variables, tasks):
    """The parts of `variables`.

    Args:
        per_task: one list per task of gradients (or None), aligned with
            `variables`, as `tape.gradient(task_loss, variables)` returns.
        variables: the variables.
        tasks: the `kmtl.Task`s, in `per_task` order.

    Returns:
        list of `Part`, in variable order, the parts of one variable in row order.
    """
    reaching = tasks_reaching(tasks)
    with_loss = [t for t, task in enumerate(tasks) if task.has_labels]
    parts = []
    for i, variable in enumerate(variables):
        reach = frozenset(t for t in with_loss if per_task[t][i] is not None)
        owners = slice_owners(variable)
        if owners is None:
            parts.append(Part(i, None, None, reach))
            continue
        for owner, start, stop in owner_runs(owners):
            tasks = reach if owner is None else reach & reaching.get(owner, reach)
            parts.append(Part(i, start, stop, tasks))
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
