"""Multi-Task Attention Network (MTAN) for dense features."""

import keras
from keras import ops

from kmtl._checks import check_bool
from kmtl._checks import check_rate
from kmtl._checks import check_units
from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.base import Architecture
from kmtl.architectures.experts import stacked_initializer


@ARCHITECTURES.register("mtan")
class MTAN(Architecture):
    """Multi-Task Attention Network: one shared MLP trunk, and per task a soft
    attention mask over the trunk's features at every level.

    Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention",
    CVPR 2019 (arXiv:1803.10704). In the paper the task-specific feature of task
    `i` at block `j` is the shared feature `p^(j)` masked element-wise,

        `a^_i^(j) = a_i^(j) * p^(j)`,
        `a_i^(j) = h_i^(j)(g_i^(j)([u^(j); f^(j)(a^_i^(j-1))]))`,

    where `u^(j)` is the block's first (inner) shared feature, `[;]` is
    concatenation, `g_i^(j)` (ReLU) and `h_i^(j)` (sigmoid) are the task's
    1x1-convolution attention module, and `f^(j)` is a 3x3 convolution, one per
    level shared by every task, that brings the previous attended feature to
    block `j`'s size. The first block has no previous feature:
    `a_i^(1) = h_i^(1)(g_i^(1)(u^(1)))`.

    Adapted to dense features (`(batch, features)`, not images), level `l` of
    `L = len(units)`:

    - trunk: `p_l = activation(p_{l-1} W_l + b_l)`, `p_0` the input. A trunk
      level is one Dense layer, so `u^(l) = p^(l) = p_l`;
    - mask: `a_t^l = sigmoid(activation(z_t^l G_t^l + c_t^l) H_t^l + d_t^l)`
      with `z_t^1 = p_1` and `z_t^l = [p_l ; f_l(a^_t^{l-1})]` for `l >= 2`;
      `G_t^l` is `(d_l, k_l)` or `(2 d_l, k_l)`, `H_t^l` is `(k_l, d_l)`;
    - attended feature: `a^_t^l = a_t^l * p_l` (element-wise);
    - extractor: `f_l(v) = activation(v F_l + e_l)`, `F_l` `(d_{l-1}, d_l)`,
      one for every task as in the paper (`shared_extractor=True`), or one per
      task (`False`);
    - output: `a^_t^L` for each task `t`.

    Here `d_l = units[l-1]` and `k_l` is the attention module's hidden size
    (`attention_units`; default `d_l`, as the paper's modules keep the block's
    channel count). Not done here: batch normalization inside `f`, `g` and `h`
    (the paper's convolutions have it), and the decoder half of the paper's
    SegNet: the output is the last encoder-style level. The task modules are
    evaluated side by side: stacked kernels `(T, d_in, d_out)`, one einsum per
    level, not `T` separate Dense layers.

    Args:
        task_names: list of str. The tasks; one attention module per task and
            level.
        units: list of int, default `(256, 128)`. Units of the trunk's levels.
        attention_units: None (default: `units`), an int (every level) or a list
            with one int per level. Hidden units `k_l` of the attention modules.
        activation: str, default `"relu"`. Activation of the trunk, of `g` and of
            `f` (the mask itself always uses a sigmoid).
        dropout: float in [0, 1), default 0. Dropout on the trunk's outputs.
        shared_extractor: bool, default True. One `f_l` for every task (the
            paper) or one per task.
        kernel_initializer: default `"glorot_uniform"`, applied per task module.
        kernel_regularizer: Keras regularizer identifier or None.

    Input shape:
        `(batch, features)`.

    Output shape:
        dict `{task_name: (batch, units[-1])}`.

    Trainable weights:
        trunk: `sum(d_{l-1} * d_l + d_l)` over levels, `d_0 = features`;
        extractors: `E * sum(d_{l-1} * d_l + d_l)` over levels `l >= 2`, with
        `E = 1` (shared) or `num_tasks`;
        attention: `num_tasks * sum(m_l * k_l + k_l + k_l * d_l + d_l)` over
        levels, `m_1 = d_1` and `m_l = 2 * d_l` for `l >= 2`.

    Raises:
        ValueError: empty or repeated `task_names`, non-positive units, an
            `attention_units` list of the wrong length, dropout outside [0, 1).

    Examples:
        >>> layer = MTAN(["a", "b"], units=(8, 4))
        >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
        {'a': (2, 4), 'b': (2, 4)}
    """

    def __init__(self, task_names, units=(256, 128), attention_units=None,
                 activation="relu", dropout=0.0, shared_extractor=True,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 **kwargs):
        super().__init__(task_names, **kwargs)
        self.units = check_units(units, "units")
        if attention_units is None:
            self.attention_units = None
            self.hidden_units = self.units
        else:
            self.attention_units = check_units(attention_units, "attention_units")
            if isinstance(attention_units, int):
                self.attention_units = self.attention_units * len(self.units)
            if len(self.attention_units) != len(self.units):
                raise ValueError(
                    f"attention_units must be an int or have one entry per level "
                    f"of units={list(self.units)}. Received: "
                    f"attention_units={attention_units!r}"
                )
            self.hidden_units = self.attention_units
        self.activation = activation
        self.activation_fn = keras.activations.get(activation)
        self.dropout = check_rate(dropout, "dropout")
        self.shared_extractor = check_bool(shared_extractor, "shared_extractor")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.dropout_layer = (
            keras.layers.Dropout(self.dropout) if self.dropout else None
        )

    # === Weights ===

    def _dense(self, name, count, fan_in, fan_out):
        """A kernel and a bias: `(fan_in, fan_out)` and `(fan_out,)` when `count`
        is None, else `count` of them stacked on a first axis."""
        stack = () if count is None else (count,)
        # A fresh draw per weight: one initializer instance reused for two
        # kernels of the same shape would start them equal.
        stacked = stacked_initializer(self.kernel_initializer, count or 1)

        def initializer(shape, dtype=None):
            values = stacked((1, *shape) if count is None else shape, dtype)
            return values[0] if count is None else values

        kernel = self.add_weight(
            shape=(*stack, fan_in, fan_out), name=f"{name}_kernel",
            initializer=initializer, regularizer=self.kernel_regularizer)
        bias = self.add_weight(shape=(*stack, fan_out), name=f"{name}_bias",
                               initializer="zeros")
        return kernel, bias

    def build(self, input_shape):
        num_tasks = len(self.task_names)
        extractors = None if self.shared_extractor else num_tasks
        sizes = (input_shape[-1], *self.units)
        self.trunk, self.extractors, self.attention_g, self.attention_h = (
            [], [], [], [])
        for level, (fan_in, width) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.trunk.append(self._dense(f"trunk_{level}", None, fan_in, width))
            if level:
                self.extractors.append(self._dense(
                    f"extractor_{level}", extractors, fan_in, width))
            mask_in = width if level == 0 else 2 * width
            hidden = self.hidden_units[level]
            self.attention_g.append(self._dense(
                f"attention_g_{level}", num_tasks, mask_in, hidden))
            self.attention_h.append(self._dense(
                f"attention_h_{level}", num_tasks, hidden, width))

    def owned_slices(self):
        """Task t's slices of the attention modules (and of the extractors,
        one per task when `shared_extractor=False`): they only feed task t's
        features. The trunk and a shared extractor reach every task."""
        if not self.built:
            return {}
        owned = [*self.attention_g, *self.attention_h]
        if not self.shared_extractor:
            owned += self.extractors
        return self.slices_owned_by([w for pair in owned for w in pair],
                                    self.task_names)

    # === Forward pass ===

    def _trunk(self, inputs, training=None):
        """The shared features `[p_1, ..., p_L]`, each `(batch, d_l)`."""
        features, x = [], inputs
        for kernel, bias in self.trunk:
            x = self.activation_fn(ops.matmul(x, kernel) + bias)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
            features.append(x)
        return features

    def _levels(self, inputs, training=None):
        """`(masks, attended)`: per level, `(T, batch, d_l)` tensors."""
        masks, attended = [], []
        previous = None
        for level, shared in enumerate(self._trunk(inputs, training)):
            g_kernel, g_bias = self.attention_g[level]
            h_kernel, h_bias = self.attention_h[level]
            width = shared.shape[-1]
            # [p_l ; f_l(a^)] G = p_l G[:d_l] + f_l(a^) G[d_l:], so the shared
            # part is one matmul for every task rather than T copies of p_l.
            hidden = ops.einsum("bd,tdk->tbk", shared, g_kernel[:, :width])
            if level:
                f_kernel, f_bias = self.extractors[level - 1]
                if self.shared_extractor:
                    extracted = ops.einsum("tbd,de->tbe", previous, f_kernel)
                    extracted = extracted + f_bias
                else:
                    extracted = ops.einsum("tbd,tde->tbe", previous, f_kernel)
                    extracted = extracted + f_bias[:, None, :]
                extracted = self.activation_fn(extracted)
                hidden = hidden + ops.einsum("tbd,tdk->tbk", extracted,
                                             g_kernel[:, width:])
            hidden = self.activation_fn(hidden + g_bias[:, None, :])
            mask = ops.sigmoid(ops.einsum("tbk,tkd->tbd", hidden, h_kernel)
                               + h_bias[:, None, :])
            previous = mask * shared[None]
            masks.append(mask)
            attended.append(previous)
        return masks, attended

    def attention_masks(self, inputs):
        """The sigmoid attention masks.

        Args:
            inputs: `(batch, features)` tensor, the layer's input.

        Returns:
            list with one `(num_tasks, batch, units[l])` tensor per level `l`,
            values in (0, 1).
        """
        return self._levels(inputs)[0]

    def call(self, inputs, training=None):
        last = self._levels(inputs, training)[1][-1]
        return {name: last[t] for t, name in enumerate(self.task_names)}

    def diagnostics(self, inputs):
        """`{"attention": (matrix, task_names, ["level_0", ...])}`: the mean mask
        value of each task at each level, `(num_tasks, num_levels)`, over the
        batch and the level's units. 1 means the task reads the shared feature
        as it is; lower values mean the task filters it out."""
        means = [ops.mean(mask, axis=(1, 2)) for mask in self.attention_masks(inputs)]
        labels = [f"level_{level}" for level in range(len(self.units))]
        return {"attention": (ops.stack(means, axis=1), list(self.task_names),
                              labels)}

    def compute_output_shape(self, input_shape):
        return {name: (*input_shape[:-1], self.units[-1])
                for name in self.task_names}

    # === Config ===

    def get_config(self):
        return {
            **super().get_config(),
            "units": list(self.units),
            "attention_units": (None if self.attention_units is None
                                else list(self.attention_units)),
            "activation": self.activation,
            "dropout": self.dropout,
            "shared_extractor": self.shared_extractor,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }
