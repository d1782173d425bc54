"""Which slices of a stacked weight belong to one task.

Architectures keep per-task parts side by side in one variable with a leading
stack axis (MMoE's gates `(T, d, E)`, soft sharing's towers `(T, d, u)`,
PLE's task experts). Read off the graph, such a variable is reached by every
task's loss, so it would look shared; yet slice `k` only ever receives the
gradient of the task that owns it. The architecture marks those slices here,
and the train step (`MultiTaskModel`) gives an owned slice its task's own
gradient instead of passing it to a gradient-based weighting (MGDA, PCGrad,
...) as if it were shared, which would both change its update and dilute the
tasks' gradient similarity with exact zeros.
"""

_ATTRIBUTE = "_kmtl_slice_owners"


def set_slice_owners(variables, owners):
    """Marks the slices along the first axis of each of `variables`.

    Args:
        variables: iterable of Keras variables, each of shape `(len(owners), ...)`.
        owners: sequence of str or None, one per slice: the name of the task
            whose loss alone reaches that slice (its output depends on no
            other task's), or None for a slice several tasks share.

    Raises:
        ValueError: a variable whose first axis is not `len(owners)` long.
    """
    owners = tuple(owners)
    for variable in variables:
        if not variable.shape or variable.shape[0] != len(owners):
            raise ValueError(
                f"Variable '{variable.path}' of shape {tuple(variable.shape)} "
                f"cannot carry {len(owners)} slice owners {list(owners)}: its "
                f"first axis must have one entry per owner.")
        setattr(variable, _ATTRIBUTE, owners)


def slice_owners(variable):
    """The owners set by `set_slice_owners` (a tuple of str or None, one per
    slice along the first axis), or None for an unmarked variable."""
    return getattr(variable, _ATTRIBUTE, None)


def owner_runs(owners):
    """Groups consecutive equal owners: `[(owner, start, stop), ...]`.

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
