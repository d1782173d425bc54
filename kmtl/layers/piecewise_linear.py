"""Piecewise linear encoding of numeric features, on quantile bins.

Gorishniy, Rubachev and Babenko, "On Embeddings for Numerical Features in
Tabular Deep Learning", NeurIPS 2022, arXiv:2203.05556, Section 3.2.
"""

import keras
import numpy as np
from keras import activations
from keras import ops


def quantile_bin_edges(values, bins):
    """Quantile bin edges of one numeric feature, for `PiecewiseLinearEncoding`.

    The edges are the quantiles of `values` at `0, 1/bins, ..., 1` (numpy's
    default linear interpolation, as `torch.quantile` in the authors' code),
    rounded to float32 (the precision the layer computes in) and with
    duplicates removed, so a feature with few distinct values gets fewer bins.
    This is the paper's Section 3.2.1 (duplicates are removed after computing
    the quantiles, as in the paper, not by capping the number of quantiles).

    Non-finite values (NaN, missing; and +-inf) are ignored. A column with
    one distinct value `v` gets one bin `[v, v + max(1, |v|)]`, and a column
    with no finite value gets `[0.0, 1.0]` (after mean imputation all its
    values are 0): a training value then encodes to 0 and any other value
    to its distance from `v` (the encoding of a single bin is not clipped).

    Args:
        values: 1-D array-like of floats, one feature's values on the
            training split (normalized, in kmtl).
        bins: int, at least 1. The largest number of bins.

    Returns:
        A sorted list of at least 2 and at most `bins + 1` distinct Python
        floats, each exactly a float32 value.

    Raises:
        ValueError: `values` is not 1-D, or `bins` is not a positive integer.

    Example:
        >>> quantile_bin_edges([0.0, 1.0, 2.0, 3.0, 4.0, np.nan], bins=4)
        [0.0, 1.0, 2.0, 3.0, 4.0]
        >>> quantile_bin_edges([0.0, 0.0, 0.0, 1.0], bins=8)
        [0.0, 0.25, 0.625, 1.0]
        >>> quantile_bin_edges([2.0, 2.0], bins=8)
        [2.0, 4.0]
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(
            f"quantile_bin_edges: bins must be a positive integer. Received: "
            f"bins={bins!r}")
    values = np.asarray(values, dtype="float64")
    if values.ndim != 1:
        raise ValueError(
            f"quantile_bin_edges: values must be 1-D (one feature's values). "
            f"Received: values with shape {values.shape}")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 1.0]
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, int(bins) + 1))
    edges = np.unique(quantiles.astype("float32"))
    if edges.size == 1:
        value = float(edges[0])
        edges = np.array([value, value + max(1.0, abs(value))], dtype="float32")
    return [float(edge) for edge in edges]


def _check_edges(edges):
    """Validated edges as a list of float64 arrays; raises ValueError."""
    if isinstance(edges, str) or not hasattr(edges, "__len__") or not len(edges):
        raise ValueError(
            f"PiecewiseLinearEncoding: edges must be a non-empty list with one "
            f"list of bin edges per feature (see quantile_bin_edges). Received: "
            f"edges={edges!r}")
    checked = []
    for index, feature_edges in enumerate(edges):
        try:
            array = np.asarray(feature_edges, dtype="float64")
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim != 1 or array.size < 2:
            raise ValueError(
                f"PiecewiseLinearEncoding: feature {index} needs a flat list of at "
                f"least 2 bin edges. Received: edges[{index}]={feature_edges!r}")
        if not np.isfinite(array).all():
            raise ValueError(
                f"PiecewiseLinearEncoding: feature {index} has a non-finite bin "
                f"edge. Received: edges[{index}]={feature_edges!r}")
        narrow = array.astype("float32")
        steps = np.flatnonzero(narrow[1:] <= narrow[:-1])
        if steps.size:
            t = int(steps[0])
            raise ValueError(
                f"PiecewiseLinearEncoding: the bin edges of feature {index} must "
                f"be strictly increasing (in float32), but edges[{index}][{t + 1}]="
                f"{float(array[t + 1])!r} is not above edges[{index}][{t}]="
                f"{float(array[t])!r}. Sort them and drop duplicates, or fit them "
                f"with quantile_bin_edges. Received: edges[{index}]={feature_edges!r}")
        checked.append(array)
    return checked


@keras.saving.register_keras_serializable(package="kmtl")
class PiecewiseLinearEncoding(keras.layers.Layer):
    """Piecewise linear encoding (PLE) of numeric features, optionally embedded.

    Implements the piecewise linear encoding of Gorishniy, Rubachev and
    Babenko, "On Embeddings for Numerical Features in Tabular Deep Learning",
    NeurIPS 2022, arXiv:2203.05556 (Eq. 1). Feature `i` with bin edges
    `b_0 < b_1 < ... < b_T` (`T` bins) is encoded as `T` numbers; component
    `t` (1-based) is

    - `0` if `x < b_{t-1}` and `t > 1`,
    - `1` if `x >= b_t` and `t < T`,
    - `(x - b_{t-1}) / (b_t - b_{t-1})` otherwise,

    so `x` inside bin `t` reads `[1, ..., 1, fraction of bin t, 0, ..., 0]`.
    The encoding is continuous in `x`: on an edge `x = b_t` component `t` is
    1 and component `t + 1` is 0 under either branch, so the half-open bins
    `[b_{t-1}, b_t)` of the paper only pick which branch computes the value.
    The outer sides are not clipped, as in the paper and the authors'
    `rtdl_num_embeddings`: below `b_0` the first component is negative,
    above `b_T` the last one exceeds 1, and a feature with a single bin is
    encoded as the affine `(x - b_0) / (b_1 - b_0)`.

    With `output_dim`, each feature's encoding goes through its own linear
    layer (weights not shared between features) and `activation`: the
    paper's "Q-LR" embedding (Q: quantile PLE, L: linear, R: ReLU), which
    the authors suggest as the starting point over the bare encoding when
    there is enough data for the extra weights. It has `(sum(T_i) +
    features) * output_dim` weights, as one `Dense(output_dim)` per feature
    on that feature's `T_i` components, initialized as in the authors'
    implementation (PyTorch's `Linear`): uniform in `+-1 / sqrt(T_i)`.

    Precision: the encoding is computed in float32 (float64 when the layer's
    variable dtype is float64), whatever the input dtype or dtype policy, so
    that bin fractions keep their precision under mixed precision; the
    output, and the linear layer, use the layer's compute dtype (float16
    under `"mixed_float16"`). Inputs must be finite (NaN propagates): kmtl
    normalizes and imputes them before this layer.

    Args:
        edges: list of lists of floats, one list per feature: the sorted bin
            edges, at least 2 (one bin), e.g. from `quantile_bin_edges` on
            the training split. Features may have different numbers of bins.
        output_dim: int or None, default None. If set, the size of each
            feature's embedding after the per-feature linear layer.
        activation: activation applied after the linear layer, default
            `"relu"` (the paper's "Q-LR"); `"linear"` gives "Q-L". Only used
            with `output_dim`.
        seed: int or None, default None. Seed of the linear layer's
            initializers.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, features)` floats, `features == len(edges)`.

    Output shape:
        `(batch, sum(len(e) - 1 for e in edges))` without `output_dim`: each
        feature's components in bin order, features side by side in input
        order; `(batch, features * output_dim)` with `output_dim`.

    Raises:
        ValueError: when created, `edges` is empty, a feature has fewer than 2
            edges, a non-finite edge, or edges that are not strictly
            increasing in float32 (the message names the feature and the
            edges); `output_dim` is not a positive integer. When built, the
            input does not have `len(edges)` columns.

    Example:
        >>> layer = PiecewiseLinearEncoding([[0.0, 1.0, 3.0], [-1.0, 1.0]])
        >>> layer(np.array([[2.0, 0.0]], "float32")).numpy().tolist()
        [[1.0, 0.5, 0.5]]
        >>> embed = PiecewiseLinearEncoding([[0.0, 1.0, 3.0]], output_dim=4)
        >>> tuple(embed(np.zeros((2, 1), "float32")).shape)
        (2, 4)
    """

    def __init__(self, edges, output_dim=None, activation="relu", seed=None,
                 **kwargs):
        # The encoding is computed in float32 from the un-cast input; `call`
        # casts to the compute dtype itself (no autocasting of inputs or
        # variables by Keras).
        super().__init__(autocast=False, **kwargs)
        checked = _check_edges(edges)
        if output_dim is not None and (
                isinstance(output_dim, bool) or not isinstance(output_dim, int)
                or output_dim < 1):
            raise ValueError(
                f"PiecewiseLinearEncoding: output_dim must be a positive integer or "
                f"None. Received: output_dim={output_dim!r}")
        self.edges = [[float(edge) for edge in array] for array in checked]
        self.output_dim = output_dim
        self.activation = activations.get(activation)
        self.seed = seed

        self.bin_counts = [len(array) - 1 for array in checked]
        features, slots = len(checked), max(self.bin_counts)
        # Per-feature components padded to `slots`; padding has left 0,
        # right 1 and bounds [0, 0], so it encodes to 0.
        self._left = np.zeros((features, slots))
        self._right = np.ones((features, slots))
        self._lower = np.zeros((features, slots))
        self._upper = np.zeros((features, slots))
        for i, (array, count) in enumerate(zip(checked, self.bin_counts)):
            self._left[i, :count] = array[:-1]
            self._right[i, :count] = array[1:]
            self._upper[i, :count] = 1.0
            self._lower[i, 0] = -np.inf
            self._upper[i, count - 1] = np.inf
        valid = np.arange(slots)[None, :] < np.array(self.bin_counts)[:, None]
        # Positions of the real components in the flattened (features * slots)
        # encoding; None when no feature is padded.
        self._valid = None if valid.all() else np.flatnonzero(valid)
        # Row of the (sum of bins, output_dim) kernel that each slot reads;
        # padding reads an extra zero row.
        total = sum(self.bin_counts)
        rows = np.full(features * slots, total)
        rows[np.flatnonzero(valid)] = np.arange(total)
        self._kernel_rows = rows

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != len(self.edges):
            raise ValueError(
                f"PiecewiseLinearEncoding: the input has {input_shape[-1]} columns "
                f"but edges has {len(self.edges)} features. Give one list of bin "
                f"edges per column.")
        if self.output_dim is None:
            return
        counts = np.array(self.bin_counts, "float64")
        row_bounds = np.repeat(1.0 / np.sqrt(counts), self.bin_counts)
        feature_bounds = 1.0 / np.sqrt(counts)
        self.kernel = self.add_weight(
            shape=(sum(self.bin_counts), self.output_dim), name="kernel",
            initializer=_ScaledUniform(row_bounds, self.seed))
        self.bias = self.add_weight(
            shape=(len(self.edges), self.output_dim), name="bias",
            initializer=_ScaledUniform(
                feature_bounds, None if self.seed is None else self.seed + 1))

    def call(self, inputs):
        dtype = "float64" if self.variable_dtype == "float64" else "float32"
        x = ops.cast(inputs, dtype)[:, :, None]
        left = self._left.astype(dtype)
        # The width in the compute dtype, so that x on an edge gives exactly
        # 0 and 1.
        width = self._right.astype(dtype) - left
        fraction = (x - left) / width
        encoded = ops.minimum(ops.maximum(fraction, self._lower.astype(dtype)),
                              self._upper.astype(dtype))
        encoded = ops.cast(encoded, self.compute_dtype)
        if self.output_dim is None:
            flat = ops.reshape(encoded, (-1, encoded.shape[1] * encoded.shape[2]))
            return flat if self._valid is None else ops.take(flat, self._valid, axis=1)
        kernel = ops.cast(self.kernel, self.compute_dtype)
        kernel = ops.concatenate([kernel, ops.zeros_like(kernel[:1])], axis=0)
        kernel = ops.reshape(
            ops.take(kernel, self._kernel_rows, axis=0),
            (len(self.edges), max(self.bin_counts), self.output_dim))
        outputs = ops.einsum("bnt,ntd->bnd", encoded, kernel)
        outputs = self.activation(outputs + ops.cast(self.bias, self.compute_dtype))
        return ops.reshape(outputs, (-1, len(self.edges) * self.output_dim))

    def compute_output_shape(self, input_shape):
        if self.output_dim is None:
            return (input_shape[0], sum(self.bin_counts))
        return (input_shape[0], len(self.edges) * self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "edges": [list(feature_edges) for feature_edges in self.edges],
            "output_dim": self.output_dim,
            "activation": activations.serialize(self.activation),
            "seed": self.seed,
        }


class _ScaledUniform:
    """Uniform in `+-bounds[row]` for each row of a 2-D weight (seedable)."""

    def __init__(self, bounds, seed):
        self.bounds = np.asarray(bounds, "float64")
        self.seed = seed

    def __call__(self, shape, dtype=None):
        unit = keras.random.uniform(shape, minval=-1.0, maxval=1.0, dtype=dtype,
                                    seed=self.seed)
        return unit * ops.cast(self.bounds[:, None], unit.dtype)
