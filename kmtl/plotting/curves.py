"""Curves and bars of a multi-task comparison: per-epoch logs of several models
over seeds, the Δm of each variant with its spread over seeds, and the task-weight
trajectories of a weighting method.

Object API only (`matplotlib.figure.Figure` on an Agg canvas), never pyplot.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _padded(series):
    """Lists of different lengths -> `(runs, longest)` float array, NaN-padded."""
    longest = max(len(s) for s in series)
    values = np.full((len(series), longest), np.nan)
    for i, s in enumerate(series):
        values[i, :len(s)] = np.asarray(s, dtype=float)
    return values


def seed_band(series):
    """`(mean, low, high)` per epoch over the runs that reached that epoch.

    Early stopping ends runs at different epochs, so epoch `e` is summarized over
    the runs that have it: the mean, and the minimum and maximum as the band.

    Args:
        series: list of per-epoch value lists, one per seed.

    Returns:
        Three `(epochs,)` arrays.

    Raises:
        ValueError: `series` is empty or every list is empty.
    """
    series = [s for s in series if len(s)]
    if not series:
        raise ValueError("seed_band needs at least one non-empty series.")
    values = _padded(series)
    return (np.nanmean(values, axis=0), np.nanmin(values, axis=0),
            np.nanmax(values, axis=0))


def plot_curves(histories, key, title=None, ylabel=None, ax=None):
    """Plots one log (e.g. `val_income_auc`) per epoch for several models.

    Each model is one line, the mean over its seeds at each epoch, with a shaded
    band from the seeds' minimum to their maximum (see `seed_band`); a model
    whose histories lack `key` is left out.

    Args:
        histories: dict `{label: [history, ...]}`, one Keras history dict
            (`{log: [value per epoch]}`) per seed.
        key: str, the log to plot.
        title: str or None, default `key`.
        ylabel: str or None, default `key`.
        ax: a `matplotlib.axes.Axes`, or None for a new figure.

    Returns:
        The `matplotlib.figure.Figure` drawn on.

    Raises:
        ValueError: no history holds `key`.

    Examples:
        >>> fig = plot_curves({"mmoe": [{"val_loss": [0.9, 0.7, 0.6]}],
        ...                    "single_task": [{"val_loss": [1.0, 0.8]}]}, "val_loss")
        >>> fig.savefig("val_loss.png")
    """
    figure, ax = _axes(ax, (6.0, 3.8))
    drawn = 0
    for label, runs in histories.items():
        series = [run[key] for run in runs if key in run and len(run[key])]
        if not series:
            continue
        mean, low, high = seed_band(series)
        epochs = np.arange(1, len(mean) + 1)
        (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=label)
        if len(series) > 1:
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2,
                            linewidth=0)
        drawn += 1
    if not drawn:
        found = sorted({k for runs in histories.values() for r in runs for k in r})
        raise ValueError(f"No history holds the log {key!r}. Logs found: {found}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel or key)
    ax.set_title(title or key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def plot_delta_m(names, means, stds, title="Δm against single-task baselines",
                 ax=None):
    """A bar per variant: its mean Δm (percent) with the seed std as error bar.

    Bars above 0 (multi-task better than the single-task baselines) are green,
    those below red; a line marks 0.

    Args:
        names: list of str, the variants.
        means: list of float, Δm in percent, one per variant.
        stds: list of float, the std over seeds, one per variant.
        title: str, the axes title.
        ax: a `matplotlib.axes.Axes`, or None for a new figure.

    Returns:
        The `matplotlib.figure.Figure` drawn on.

    Raises:
        ValueError: the three lists differ in length or are empty.

    Examples:
        >>> fig = plot_delta_m(["mmoe_ew", "mmoe_pcgrad"], [0.4, -0.2], [0.1, 0.3])
    """
    if not names or not len(names) == len(means) == len(stds):
        raise ValueError(f"names, means and stds must be non-empty and of equal "
                         f"length. Received lengths: {len(names)}, {len(means)}, "
                         f"{len(stds)}")
    figure, ax = _axes(ax, (max(4.0, 1.1 * len(names) + 2.0), 3.8))
    means = np.asarray(means, dtype=float)
    colors = ["tab:green" if m >= 0 else "tab:red" for m in means]
    positions = np.arange(len(names))
    ax.bar(positions, means, yerr=np.asarray(stds, dtype=float), color=colors,
           capsize=6, alpha=0.8)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, labels=list(names))
    if max(len(n) for n in names) > 8:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_ylabel("Δm (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return figure


def plot_task_weights(histories, task_names, title=None, ax=None):
    """Each task's weight per epoch (the `<task>_weight` logs), mean over seeds
    with a min-max band, for one model.

    Args:
        histories: list of Keras history dicts, one per seed.
        task_names: list of str.
        title: str or None, default `"task weights"`.
        ax: a `matplotlib.axes.Axes`, or None for a new figure.

    Returns:
        The `matplotlib.figure.Figure` drawn on.

    Raises:
        ValueError: no history holds a `<task>_weight` log.

    Examples:
        >>> fig = plot_task_weights([{"a_weight": [1.0, 1.2], "b_weight": [1.0, 0.8]}],
        ...                         ["a", "b"])
    """
    weights = {task: [{"weight": h[f"{task}_weight"]} for h in histories
                      if f"{task}_weight" in h] for task in task_names}
    if not any(weights.values()):
        raise ValueError(f"No history holds a <task>_weight log for the tasks "
                         f"{list(task_names)}.")
    return plot_curves(weights, "weight", title=title or "task weights",
                       ylabel="task weight", ax=ax)
