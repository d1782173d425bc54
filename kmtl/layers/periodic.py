"""Periodic ("PLR") embeddings of numeric features."""

import math
import numbers

import keras
from keras import activations
from keras import initializers
from keras import ops


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"PeriodicEmbedding: {name} must be a positive integer. Received: "
            f"{name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="kmtl")
class PeriodicEmbedding(keras.layers.Layer):
    """Periodic embedding of numeric features ("PLR": periodic, linear, ReLU).

    Implements the periodic embedding of Gorishniy, Rubachev and Babenko, "On
    Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS
    2022, arXiv:2203.05556 (Section 3.3). Feature `i` has `frequencies`
    trainable coefficients `c_i`, initialized from `N(0, sigma)`; its value
    `x_i` becomes

        v_i = concat(cos(2 pi c_i x_i), sin(2 pi c_i x_i))   # 2 * frequencies
        e_i = activation(v_i @ W_i + b_i)                     # output_dim

    with a linear layer `(W_i, b_i)` of its own, or, with `lite=True`, one
    linear layer `(W, b)` shared by all features (the "lite" variant of the
    authors' later TabR paper, Gorishniy et al., ICLR 2024, arXiv:2307.14338,
    shipped in their `rtdl_num_embeddings` package). The frequencies stay per
    feature in both variants.

    Defaults: the paper tunes the sizes and `sigma` per dataset (`frequencies`
    and `output_dim` in [1, 128], `sigma` log-uniform in [0.01, 100]) and
    fixes no default; these are the defaults of the authors' package
    (`n_frequencies=48`, `d_embedding=24`, `frequency_init_scale=0.01`), set
    for MLP backbones. `sigma` matters most: the package's notes say that a
    value below the best one costs little while a value above it can hurt a
    lot, and that the best value is below 0.05 on half their datasets, so
    0.01 is a safe start to tune upwards from (e.g. log-uniform in [0.01, 1]).
    Values of `x` are the normalized features, so `sigma` is in cycles per
    standard deviation. The frequencies are drawn from the plain normal of
    the paper (the package truncates it at 3 sigma); the linear weights and
    biases are uniform in `+-1 / sqrt(2 * frequencies)`, as in the authors'
    implementation (PyTorch's `Linear`).

    Precision: the frequencies are kept and the angles, cosines and sines are
    computed in float32 (float64 when the layer's variable dtype is
    float64), whatever the input dtype or dtype policy, because `2 pi c x`
    in float16 loses the phase; the linear layer and the output use the
    layer's compute dtype (float16 under `"mixed_float16"`).

    Args:
        num_features: int. Number of numeric features (input columns).
        frequencies: int, default 48. Frequencies per feature (the paper's
            `k`); `v_i` has `2 * frequencies` entries.
        sigma: float, default 0.01. Standard deviation of the initial
            frequencies (the paper's `sigma`).
        output_dim: int, default 24. Size of each feature's embedding.
        lite: bool, default False. Share the linear layer between features.
        activation: default `"relu"` (the paper's "PLR"); `"linear"` gives
            the paper's "PL".
        seed: int or None, default None. Seed of the initializers (the
            frequencies use `seed`, the linear weights `seed + 1` and the
            biases `seed + 2`): equal seeds give equal initial weights.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, num_features)` floats.

    Output shape:
        `(batch, num_features * output_dim)`: the features' embeddings side
        by side, in input order.

    Raises:
        ValueError: when created, `num_features`, `frequencies` or
            `output_dim` is not a positive integer, or `sigma` is not a
            positive finite number. When built, the input does not have
            `num_features` columns.

    Example:
        >>> layer = PeriodicEmbedding(3, frequencies=8, output_dim=4, seed=0)
        >>> tuple(layer(np.zeros((2, 3), "float32")).shape)
        (2, 12)
        >>> layer.count_params()  # 3*8 frequencies + 3*(16*4 + 4) linear
        228
    """

    def __init__(self, num_features, frequencies=48, sigma=0.01, output_dim=24,
                 lite=False, activation="relu", seed=None, **kwargs):
        # Angles are computed in float32 from the un-cast input; `call` casts
        # to the compute dtype itself (no autocasting by Keras).
        super().__init__(autocast=False, **kwargs)
        self.num_features = _positive_int("num_features", num_features)
        self.frequencies = _positive_int("frequencies", frequencies)
        self.output_dim = _positive_int("output_dim", output_dim)
        if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
                or not math.isfinite(sigma) or sigma <= 0):
            raise ValueError(
                f"PeriodicEmbedding: sigma must be a positive number. Received: "
                f"sigma={sigma!r}")
        self.sigma = float(sigma)
        self.lite = bool(lite)
        self.activation = activations.get(activation)
        self.seed = seed

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_features:
            raise ValueError(
                f"PeriodicEmbedding: the input has {input_shape[-1]} columns but "
                f"num_features={self.num_features}.")
        seeds = [None] * 3 if self.seed is None else [self.seed + i for i in range(3)]
        bound = 1.0 / math.sqrt(2 * self.frequencies)
        # The frequencies are float32 even under mixed precision (see `call`).
        self.coefficients = self.add_weight(
            shape=(self.num_features, self.frequencies), name="coefficients",
            initializer=initializers.RandomNormal(stddev=self.sigma, seed=seeds[0]))
        per_feature = () if self.lite else (self.num_features,)
        self.kernel = self.add_weight(
            shape=(*per_feature, 2 * self.frequencies, self.output_dim),
            name="kernel",
            initializer=initializers.RandomUniform(-bound, bound, seed=seeds[1]))
        self.bias = self.add_weight(
            shape=(*per_feature, self.output_dim), name="bias",
            initializer=initializers.RandomUniform(-bound, bound, seed=seeds[2]))

    def call(self, inputs):
        dtype = "float64" if self.variable_dtype == "float64" else "float32"
        angles = (2.0 * math.pi) * ops.cast(self.coefficients, dtype) * ops.cast(
            inputs, dtype)[:, :, None]
        periodic = ops.concatenate([ops.cos(angles), ops.sin(angles)], axis=-1)
        periodic = ops.cast(periodic, self.compute_dtype)
        kernel = ops.cast(self.kernel, self.compute_dtype)
        equation = "bnf,fd->bnd" if self.lite else "bnf,nfd->bnd"
        outputs = ops.einsum(equation, periodic, kernel)
        outputs = self.activation(outputs + ops.cast(self.bias, self.compute_dtype))
        return ops.reshape(outputs, (-1, self.num_features * self.output_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features * self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "num_features": self.num_features,
            "frequencies": self.frequencies,
            "sigma": self.sigma,
            "output_dim": self.output_dim,
            "lite": self.lite,
            "activation": activations.serialize(self.activation),
            "seed": self.seed,
        }
