"""Derived tasks (ESMM): a task whose prediction is the product of other tasks'.

Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating
Post-Click Conversion Rate", SIGIR 2018 (arXiv:1804.07931): `pCTCVR = pCTR x pCVR`,
so a task labelled on a subset of rows (CVR, on clicked rows) is trained through a
task labelled on every row. Only task types whose class sets `derivable` (their
prediction is a probability: binary) may be derived or derived from.

`check_derived_from` checks what one task can (at construction);
`derivation_order` checks the names against the other tasks and orders them.
"""

import keras

from kmtl.errors import ConfigError


def check_derived_from(task, derived_from):
    """`derived_from` of `task` as a list of task names, or None.

    Raises:
        ConfigError: not a list, `task`'s type is not derivable, fewer than two
            distinct names, or the task's own name.
    """
    name = task.name
    if derived_from is None:
        return None
    if isinstance(derived_from, str) or not isinstance(
            derived_from, (list, tuple)) or not all(
            isinstance(p, str) for p in derived_from):
        raise ConfigError(
            f"Task '{name}': derived_from must be a list of task names, e.g. "
            f"['ctr', 'cvr']. Received: derived_from={derived_from!r}"
        )
    parents = list(derived_from)
    if not task.derivable:
        allowed = " or ".join(task.types_where("derivable"))
        raise ConfigError(
            f"Task '{name}': only a {allowed} task can be derived (its prediction "
            f"is the product of other tasks' probabilities); this one is "
            f"{task.type}. Received: derived_from={parents!r}"
        )
    if name in parents:
        raise ConfigError(
            f"Task '{name}' cannot derive from itself. Received: "
            f"derived_from={parents!r}"
        )
    if len(set(parents)) != len(parents) or len(parents) < 2:
        raise ConfigError(
            f"Task '{name}': derived_from needs at least two distinct task names. "
            f"Received: derived_from={parents!r}"
        )
    return parents


def derivation_order(tasks):
    """Orders tasks so that every derived task follows the tasks it derives from.

    Args:
        tasks: list of `Task`.

    Returns:
        A new list of the same tasks; tasks that derive from nothing keep their
        order and come first.

    Raises:
        ConfigError: `derived_from` names a task that is not in `tasks` or one
            whose type is not derivable (not binary), or the derivations form a
            cycle.
    """
    by_name = {t.name: t for t in tasks}
    for task in tasks:
        for parent in task.derived_from or ():
            if parent not in by_name:
                raise ConfigError(
                    f"Task '{task.name}': derived_from names unknown task "
                    f"{parent!r}. Tasks are {list(by_name)}."
                )
            if not by_name[parent].derivable:
                allowed = " or ".join(task.types_where("derivable"))
                raise ConfigError(
                    f"Task '{task.name}': derived_from names {parent!r}, a "
                    f"{by_name[parent].type} task; a derived task multiplies "
                    f"{allowed} tasks' probabilities."
                )
    order, state = [], {}

    def visit(task, path):
        if state.get(task.name) == "done":
            return
        if state.get(task.name) == "open":
            cycle = path[path.index(task.name):] + [task.name]
            raise ConfigError(
                f"Tasks derive from each other in a cycle: {' -> '.join(cycle)}. "
                f"Break it in `derived_from`."
            )
        state[task.name] = "open"
        for parent in task.derived_from or ():
            visit(by_name[parent], path + [task.name])
        state[task.name] = "done"
        order.append(task)

    for task in [t for t in tasks if not t.derived_from] + tasks:
        visit(task, [])
    return order


def build_product(task, outputs):
    """A derived task's model output: the `Multiply` (float32, named after the
    task) of the outputs of the tasks it derives from.

    Args:
        task: a `Task` with `derived_from`.
        outputs: dict `{task name: (batch, 1) probabilities}` holding its parents.

    Returns:
        `(batch, 1)` tensor, `prod_p outputs[p]`.
    """
    product = keras.layers.Multiply(dtype="float32", name=task.name)
    return product([outputs[p] for p in task.derived_from])
