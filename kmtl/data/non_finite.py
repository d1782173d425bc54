"""Values that are numbers but not finite float32s (inf, or beyond +-3.4e38):
found, then refused, dropped or treated as missing (`data.non_finite`)."""

import numpy as np
import pandas as pd

from kmtl._checks import non_finite

NON_FINITE_ACTIONS = ("error", "drop", "impute")
"""What `handle_non_finite` does with non-finite values: leave them, so the
features and tasks refuse them with an error naming the column (`error`), drop
their rows (`drop`), or make them missing (`impute`: NaN, which a numeric
feature imputes and a task masks)."""


def non_finite_counts(frame, columns=None):
    """`{column: count}` of the non-finite values of each float column of
    `frame` (or of those among `columns`) that has any (a NaN is missing, not
    counted)."""
    counts = {}
    for column in frame.columns if columns is None else (
            c for c in frame.columns if c in set(columns)):
        if pd.api.types.is_float_dtype(frame[column]):
            count = int(non_finite(frame[column].to_numpy()).sum())
            if count:
                counts[column] = count
    return counts


def handle_non_finite(frame, action="error", columns=None):
    """`frame` with its non-finite float values handled as `action` says.

    Args:
        frame: a DataFrame.
        action: one of `NON_FINITE_ACTIONS`: `"error"` (return `frame`
            unchanged: converting it then raises a `DataError` naming the
            column), `"drop"` (drop every row with a non-finite value in a
            float column) or `"impute"` (those values become NaN: a missing
            feature value, imputed by the model, or a missing label, masked).
        columns: the columns to look at (the features and labels a model
            reads), or None for every column.

    Returns:
        `(frame, counts)`: the handled frame (a copy when changed, with its
        index kept) and `{column: count}` of the values found.

    Raises:
        ValueError: an unknown action.

    Examples:
        >>> frame = pd.DataFrame({"x": [1.0, np.inf, 2.0], "y": [0.0, 1.0, 1e39]})
        >>> handle_non_finite(frame, "drop")[0]["x"].tolist()
        [1.0]
    """
    if action not in NON_FINITE_ACTIONS:
        raise ValueError(f"action must be one of {NON_FINITE_ACTIONS}. Received: "
                         f"action={action!r}")
    counts = non_finite_counts(frame, columns)
    if not counts or action == "error":
        return frame, counts
    masks = {c: non_finite(frame[c].to_numpy()) for c in counts}
    if action == "drop":
        bad = np.logical_or.reduce(list(masks.values()))
        return frame[~bad], counts
    frame = frame.copy()
    for column, mask in masks.items():
        frame.loc[mask, column] = np.nan
    return frame, counts
