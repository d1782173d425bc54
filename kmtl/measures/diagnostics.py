"""Sharing diagnostics: what a trained model shares between its tasks.

Architectures that share in an inspectable way (MMoE's gates, cross-stitch
units, ...) implement `Architecture.diagnostics(inputs)`, which maps the layer's
own `(batch, features)` input to `{name: (matrix, row_labels, column_labels)}`;
layers whose sharing does not depend on the input ignore it. This module takes
the model's architecture (`model.architecture`), feeds it real batches through
the model's own preprocessing, averages the matrices into labelled DataFrames,
and plots them as heatmaps:

Examples:
    >>> frames = kmtl.measures.sharing(model, validation_data, batches=4)
    >>> frames["expert_utilisation"]            # tasks x experts, rows sum to 1
    >>> kmtl.measures.plot_sharing(frames, "plots/")   # plots/expert_utilisation.png

`kmtl.callbacks.SharingDiagnostics` logs the same numbers every epoch.
"""

import os
import re
import weakref

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from kmtl import architectures
from kmtl.plotting.heatmap import plot_heatmap

# model -> (architecture layer, sub-model from the raw inputs to its input).
_ENCODERS = weakref.WeakKeyDictionary()


def _inspectable_architectures():
    return [name for name in architectures.list_architectures()
            if architectures.ARCHITECTURES.get_class(name).inspectable]


def architecture_layer(model):
    """The architecture of `model` when it has sharing diagnostics to show.

    Args:
        model: a `kmtl.MultiTaskModel`, e.g. from `kmtl.build_model`.

    Returns:
        `model.architecture`, a `kmtl.architectures.Architecture` that is
        `inspectable`.

    Raises:
        ValueError: the model has no architecture layer, or its architecture
            shares nothing inspectable (`shared_bottom`); the message names the
            architectures that do.
    """
    layer = getattr(model, "architecture", None)
    names = _inspectable_architectures()
    which = f"one of {names}" if names else "one that implements `diagnostics`"
    fix = (f"Build it with an architecture that shares inspectably, {which}, e.g. "
           f"`kmtl.build_model(features, tasks, architecture='mmoe')`.")
    if layer is None:
        raise ValueError(
            f"Model {model.name!r} has no architecture layer (a "
            f"`kmtl.architectures.Architecture`), so there is no sharing to "
            f"inspect. {fix}")
    if not layer.inspectable:
        raise ValueError(
            f"The architecture {layer.name!r} of model {model.name!r} "
            f"({type(layer).__name__}) has no sharing diagnostics: what it "
            f"shares is not inspectable. {fix}")
    return layer


def _encoder(model, x):
    """`(layer, encoder)`, the encoder a sub-model from the inputs the batch
    `x` uses (raw values or encoded blocks) to the architecture layer's input;
    built once per model and input kind."""
    if hasattr(model, "submodel"):
        layer = architecture_layer(model)
        return layer, model.submodel(layer.input, x)
    if model not in _ENCODERS:
        layer = architecture_layer(model)
        encoder = keras.Model(model.input, layer.input,
                              name=f"{model.name}_{layer.name}_input")
        _ENCODERS[model] = (layer, encoder)
    return _ENCODERS[model]


def _feature_batches(data, batches):
    """The features `x` of up to `batches` batches of `data`."""
    if isinstance(data, tf.data.Dataset):
        for element in data.take(batches):
            yield keras.utils.unpack_x_y_sample_weight(element)[0]
    elif isinstance(data, dict):
        yield data
    elif isinstance(data, (tuple, list)):
        yield keras.utils.unpack_x_y_sample_weight(tuple(data))[0]
    else:
        raise TypeError(
            f"data must be a tf.data.Dataset of (x, y, w), (x, y) or x batches, a "
            f"dict of feature arrays, or None. Received: {type(data).__name__}"
        )


def _select(x, encoder):
    """Keeps the features the encoder takes (a dataset may carry more)."""
    wanted = encoder.input
    if not (isinstance(x, dict) and isinstance(wanted, dict)):
        return x
    missing = sorted(set(wanted) - set(x))
    if missing:
        raise ValueError(f"data lacks the model's feature(s) {missing}. Received "
                         f"features: {sorted(x)}")
    return {name: x[name] for name in wanted}


def _as_numpy(matrix):
    return np.asarray(keras.ops.convert_to_numpy(matrix), dtype=np.float64)


def _frames(sums, labels, rows):
    return {name: pd.DataFrame(total / rows, index=list(labels[name][0]),
                               columns=list(labels[name][1]))
            for name, total in sums.items()}


def sharing(model, data=None, batches=1):
    """The sharing diagnostics of `model`'s architecture layer, as DataFrames.

    Runs the model's preprocessing up to the architecture layer's input, calls
    `layer.diagnostics(inputs)` on each batch and averages the matrices over the
    rows seen (a batch counts by its number of rows, so a short last batch does
    not weigh as much as a full one).

    Args:
        model: a `kmtl.MultiTaskModel` whose architecture has diagnostics to
            show (see `architecture_layer`).
        data: a `tf.data.Dataset` of `(x, y, sample_weight)`, `(x, y)` or `x`
            batches (e.g. `make_dataset(validation, features, tasks, 256)`); a
            dict of feature arrays, or an `(x, y[, w])` tuple of them, used
            whole as one batch; or None for a layer whose diagnostics do not
            depend on its inputs (cross-stitch units, soft-sharing distances).
        batches: int, default 1. At most this many batches of a dataset are used.

    Returns:
        dict `{name: pandas.DataFrame}`, each indexed by the matrix's row labels
        with its column labels as columns, e.g. `"expert_utilisation"`: tasks x
        experts, the mean gate weight of each expert for each task.

    Raises:
        ValueError: the model has no architecture, or one without
            diagnostics; the layer needs inputs and `data` is None; `data` is
            empty or lacks features; `batches` is not a positive integer.
        TypeError: `data` is of an unsupported type.

    Examples:
        >>> frames = sharing(model, make_dataset(val, features, tasks, 256), 4)
        >>> frames["expert_utilisation"].round(2)
                  expert_0  expert_1  expert_2
        income        0.71      0.05      0.24
        marital       0.12      0.80      0.08
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive integer. Received: "
                         f"batches={batches!r}")
    if data is None:
        layer = architecture_layer(model)
        try:
            diagnostics = layer.diagnostics(None)
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(
                f"The diagnostics of layer {layer.name!r} depend on its inputs: "
                f"pass `data`, e.g. a dataset from `kmtl.data.make_dataset`."
            ) from error
        labels = {name: (r, c) for name, (_, r, c) in diagnostics.items()}
        sums = {name: _as_numpy(m) for name, (m, _, _) in diagnostics.items()}
        return _frames(sums, labels, 1)

    sums, labels, rows = {}, {}, 0
    for x in _feature_batches(data, batches):
        layer, encoder = _encoder(model, x)
        inputs = encoder(_select(x, encoder), training=False)
        count = int(keras.ops.shape(inputs)[0])
        for name, (matrix, row_labels, column_labels) in layer.diagnostics(
                inputs).items():
            weighted = count * _as_numpy(matrix)
            sums[name] = sums[name] + weighted if name in sums else weighted
            labels.setdefault(name, (row_labels, column_labels))
        rows += count
    if not rows:
        raise ValueError("data yielded no rows: pass a non-empty dataset or dict.")
    return _frames(sums, labels, rows)


def _file_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png"


def plot_sharing(diagnostics, path=None, **options):
    """One annotated heatmap per diagnostics matrix.

    Args:
        diagnostics: dict `{name: pandas.DataFrame}` from `sharing`, or a layer's
            raw `{name: (matrix, row_labels, column_labels)}`.
        path: str or None. A directory; when given, each figure is saved there as
            `<name>.png` (characters other than letters, digits, `_`, `.` and `-`
            become `_`). The directory is created if needed.
        **options: passed to `kmtl.plotting.heatmap.plot_heatmap` (`cmap`,
            `value_format`, `vmin`, `vmax`).

    Returns:
        dict `{name: matplotlib.figure.Figure}`, in the order of `diagnostics`.

    Examples:
        >>> figures = plot_sharing(sharing(model, data), "plots")
        >>> sorted(os.listdir("plots"))
        ['expert_utilisation.png']
    """
    figures = {}
    for name, matrix in diagnostics.items():
        if isinstance(matrix, pd.DataFrame):
            matrix, row_labels, column_labels = (
                matrix.to_numpy(), list(matrix.index), list(matrix.columns))
        else:
            matrix, row_labels, column_labels = matrix
            matrix = _as_numpy(matrix)
        figures[name] = plot_heatmap(matrix, row_labels, column_labels, title=name,
                                     **options)
    if path is not None:
        os.makedirs(path, exist_ok=True)
        for name, figure in figures.items():
            figure.savefig(os.path.join(path, _file_name(name)))
    return figures


__all__ = ["architecture_layer", "plot_sharing", "sharing"]
