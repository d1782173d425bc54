"""`plot_heatmap`: an annotated heatmap of a labelled matrix."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Column labels longer than this are drawn slanted so they do not overlap.
_SLANT_AFTER = 6


def _cell_text(value, value_format):
    if callable(value_format):
        return value_format(value)
    return format(value, value_format)


def _labels(given, frame_labels, count, what):
    if given is None:
        given = frame_labels if frame_labels is not None else range(count)
    labels = [str(label) for label in given]
    if len(labels) != count:
        raise ValueError(
            f"{what} must have one label per matrix {what.split('_')[0]} ({count}). "
            f"Received: {what}={labels}"
        )
    return labels


def plot_heatmap(matrix, row_labels=None, column_labels=None, title=None, ax=None,
                 value_format=".2f", cmap="viridis", vmin=None, vmax=None):
    """Draws a matrix as a heatmap with each cell annotated by its value.

    Uses the object API (`matplotlib.figure.Figure` on an Agg canvas), never
    pyplot, so it is safe in scripts, servers and callbacks and leaves no global
    figure state behind. Cells that are NaN or infinite are left blank.

    Args:
        matrix: a `(rows, columns)` array-like (NumPy array, tensor, nested list
            or `pandas.DataFrame`).
        row_labels: list of str, one per row. Default: the DataFrame's index, else
            `0, 1, ...`.
        column_labels: list of str, one per column. Default: the DataFrame's
            columns, else `0, 1, ...`.
        title: str or None. The axes title.
        ax: a `matplotlib.axes.Axes` to draw on, or None for a new figure sized to
            the matrix.
        value_format: a format spec (default `".2f"`; `".0%"`, `".1e"`, ...) or a
            callable `value -> str` for the cell annotations.
        cmap: a matplotlib colormap name or object, default `"viridis"`.
        vmin: float or None. The colour scale's lower limit (default: the
            data's minimum). Give `vmin` and `vmax` for matrices that must be
            compared on one scale, e.g. `vmin=-1, vmax=1` for cosines.
        vmax: float or None. The colour scale's upper limit (default: the
            data's maximum).

    Returns:
        The `matplotlib.figure.Figure` drawn on (the new one, or `ax`'s).

    Raises:
        ValueError: the matrix is not 2-D, or a label list does not match its
            shape.

    Examples:
        >>> fig = plot_heatmap([[0.9, 0.1], [0.3, 0.7]], ["income", "marital"],
        ...                    ["expert_0", "expert_1"], title="expert_utilisation")
        >>> fig.savefig("experts.png")
    """
    frame_rows = getattr(matrix, "index", None)
    frame_columns = getattr(matrix, "columns", None)
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"matrix must be 2-D (rows, columns). Received: shape "
                         f"{values.shape}")
    rows, columns = values.shape
    row_labels = _labels(row_labels, frame_rows, rows, "row_labels")
    column_labels = _labels(column_labels, frame_columns, columns, "column_labels")

    if ax is None:
        figure = Figure(figsize=(max(3.5, 0.9 * columns + 2.5),
                                 max(2.5, 0.5 * rows + 1.5)),
                        layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                      aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=ax)

    ax.set_xticks(range(columns), labels=column_labels)
    ax.set_yticks(range(rows), labels=row_labels)
    if max(map(len, column_labels), default=0) > _SLANT_AFTER:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    if title is not None:
        ax.set_title(title)

    # Dark text on light cells, light text on dark cells.
    for i in range(rows):
        for j in range(columns):
            value = values[i, j]
            if not np.isfinite(value):
                continue
            red, green, blue, _ = image.cmap(image.norm(value))
            luminance = 0.299 * red + 0.587 * green + 0.114 * blue
            ax.text(j, i, _cell_text(value, value_format), ha="center", va="center",
                    color="black" if luminance > 0.5 else "white")
    return figure
