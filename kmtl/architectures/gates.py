"""Gates of the mixture-of-experts family (MMoE, CGC, PLE).

A gate maps an input `(batch, d)` to mixture weights over `num_experts` experts,
non-negative and summing to 1 per example. A mixture-of-experts layer has several
gates reading the same kind of input (one per task), so a gate object here
stands for `count` gates evaluated side by side, with stacked weights as the
experts have (`kmtl.architectures.experts`), and returns
`(count, batch, num_experts)` weights.

Gates are options of the architecture layers (`gate="softmax"` or
`gate="dselect_k"`), not layers of their own: a gate creates its weights on the
architecture layer that owns it, so a model saved with MMoE's softmax gates keeps
the weight layout it always had. They are registered in `GATES`; look one up by
name with `get`, list them with `list_gates`:

Examples:
    >>> get("dselect_k", top_k=3)
    <kmtl.architectures.gates.DSelectKGate object at ...>
    >>> list_gates()
    ['dselect_k', 'softmax']
"""

import math

import numpy as np
from keras import activations
from keras import initializers
from keras import ops
from keras import regularizers

from kmtl._checks import check_float
from kmtl._checks import check_positive_int
from kmtl._checks import check_units
from kmtl.architectures.experts import add_stack
from kmtl.architectures.experts import apply_stack
from kmtl.errors import ConfigError
from kmtl.registry import Registry
from kmtl.registry import parse_spec

# Keeps logarithms and divisions finite (the value of the authors' code).
EPSILON = 1e-6


def _softmax(logits):
    """Softmax over the last axis; a single entry is exactly 1 (no warning)."""
    if logits.shape[-1] == 1:
        return ops.ones_like(logits)
    return ops.softmax(logits, axis=-1)


class Gate:
    """Base class: `count` gates over `num_experts` experts, side by side.

    Args:
        units: list of int, default `()`. Hidden units before the gate's output
            layer (empty: a linear gate).
        activation: str, default `"relu"`. Activation of the hidden layers.
        kernel_initializer: default `"glorot_uniform"`, for hidden kernels.
        kernel_regularizer: Keras regularizer identifier or None, for every
            kernel of the gate.

    Raises:
        ValueError: non-positive `units`.
    """

    def __init__(self, units=(), activation="relu",
                 kernel_initializer="glorot_uniform", kernel_regularizer=None):
        self.units = check_units(units, "gate_units", allow_empty=True)
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernels = []
        self.biases = []

    def build(self, layer, prefix, count, features, num_experts):
        """Creates the weights of `count` gates on `layer`, named `<prefix>_...`.

        Args:
            layer: the `keras.layers.Layer` that owns the weights (the
                architecture layer).
            prefix: str. The weights' name prefix.
            count: int. The number of gates evaluated side by side.
            features: int. The size `d` of each gate's input.
            num_experts: int. The number of experts each gate mixes.
        """
        raise NotImplementedError

    def __call__(self, inputs):
        """Returns `(weights, penalty)`: `(count, batch, num_experts)` mixture
        weights and a scalar loss to add while training, or None.

        `inputs` is `(batch, d)`, read by every gate, or `(count, batch, d)`, one
        input per gate."""
        raise NotImplementedError

    def get_config(self):
        """Every constructor argument, JSON-serializable."""
        return {
            "units": list(self.units),
            "activation": activations.serialize(self.activation),
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


GATES = Registry("gate", Gate, keras_serializable=False)
"""The registry of gates (`kmtl.registry.Registry`): `"softmax"`, `"dselect_k"`."""


@GATES.register("softmax")
class SoftmaxGate(Gate):
    """The softmax gate of MMoE and PLE: `g(x) = softmax(W x + b)`.

    Ma, Zhao, Yi, Chen, Hong and Chi, KDD 2018 (MMoE); Tang, Liu, Zhao and
    Gong, RecSys 2020 (PLE). With hidden `units`, `W x + b` reads the last
    hidden layer instead of `x`.

    Trainable weights per gate:
        `sum(d_in * u + u)` over `units`, then `h * n + n`, with `h` the last
        hidden size (or the input size) and `n` the number of experts.
    """

    def build(self, layer, prefix, count, features, num_experts):
        self.kernels, self.biases = add_stack(
            layer, prefix, count, (features, *self.units, num_experts),
            self.kernel_initializer, self.kernel_regularizer)

    def __call__(self, inputs):
        logits = apply_stack(inputs, self.kernels, self.biases, self.activation,
                             last_linear=True)
        return _softmax(logits), None


def smooth_step(t, gamma):
    """The cubic smooth-step of Hazimeh et al. (2020): 0 for `t <= -gamma / 2`,
    1 for `t >= gamma / 2`, `-2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2` between."""
    cubic = -2.0 / gamma**3 * t**3 + 1.5 / gamma * t + 0.5
    return ops.where(t <= -gamma / 2, ops.zeros_like(t),
                     ops.where(t >= gamma / 2, ops.ones_like(t), cubic))


def binary_codes(num_experts):
    """`(num_experts, m)` float array: row i is i in binary over
    m = ceil(log2 num_experts) bits, most significant bit first."""
    bits = math.ceil(math.log2(num_experts))
    return np.array([[(i >> (bits - 1 - j)) & 1 for j in range(bits)]
                     for i in range(num_experts)], "float32").reshape(
                         num_experts, bits)


@GATES.register("dselect_k")
class DSelectKGate(Gate):
    """The DSelect-k gate: a smooth, sparse choice of at most k experts.

    Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong and Chi,
    "DSelect-k: Differentiable Selection in the Mixture of Experts with
    Applications to Multi-Task Learning", NeurIPS 2021 (arXiv:2106.03760). The
    per-example gate: `k` single-expert selectors, each with `m = ceil(log2 n)`
    logits `z_i = Z_i x + b_i`. Selector i gives expert e (code `c(e)`, e in
    binary) the weight `r_i(e) = prod_j [S(z_ij) if c_j(e) = 1 else 1 - S(z_ij)]`,
    with `S` the cubic smooth-step of width `gamma`; once every `S(z_ij)` is 0 or
    1 the selector picks exactly one expert. The gate is
    `sum_i softmax(A x + a)_i r_i`: at most k non-zero weights once the smooth
    steps saturate.

    When n is not a power of two some codes name no expert; as in the paper, a
    penalty `1 / sum_e r_i(e)` per selector keeps each selector's mass on real
    experts (minus 1 here: the same gradients, and 0 rather than k per gate
    once the mass is 1, so loss logs stay comparable). Each `r_i` is also
    divided by that sum, so the weights sum to 1 exactly (the division is the
    identity once the penalty has done its work, the typical case); a selector
    entirely on non-existent codes spreads its share evenly. With
    `entropy_weight > 0` the entropy `-sum_e r_i(e) log r_i(e)` of every
    selector is added too, pushing the selectors to decide. Penalties are
    averaged over the batch, summed over gates and selectors, and added only
    while training.

    Initialization follows the authors' code: the selector logits' weights
    uniform in `(-gamma / 100, gamma / 100)` (every smooth step starts near 1/2,
    all experts reachable), the selector weights' logits uniform in
    `(-0.05, 0.05)`.

    Args:
        top_k: int, default 2. Number of selectors k (at most k experts). The
            paper sets k per experiment and has no default; 2 is kmtl's.
        gamma: float > 0, default 1.0 (the authors' code). Width of the smooth
            step: smaller saturates sooner.
        entropy_weight: float >= 0, default 0 (the regularizer is optional in the
            paper).
        **kwargs: the `Gate` arguments (`units`, `activation`,
            `kernel_initializer`, `kernel_regularizer`); hidden layers (if any)
            read the input, the selector logits read the last hidden layer.

    Trainable weights per gate:
        `sum(d_in * u + u)` over `units`, then `(h + 1) * k * (m + 1)`: selector
        logits `h * k * m + k * m`, selector weights `h * k + k`.

    Raises:
        ValueError: `top_k < 1`, `gamma <= 0` or `entropy_weight < 0`.
    """

    def __init__(self, top_k=2, gamma=1.0, entropy_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        self.top_k = check_positive_int(top_k, "top_k")
        self.gamma = check_float(gamma, "gamma", low=0, low_open=True)
        self.entropy_weight = check_float(entropy_weight, "entropy_weight", low=0)

    def build(self, layer, prefix, count, features, num_experts):
        self.num_experts = num_experts
        self.codes = binary_codes(num_experts)
        self.bits = self.codes.shape[1]
        self.power_of_two = num_experts == 2**self.bits
        self.hidden_kernels, self.hidden_biases = add_stack(
            layer, f"{prefix}_hidden", count, (features, *self.units),
            self.kernel_initializer, self.kernel_regularizer)
        width = self.units[-1] if self.units else features
        selector_init = initializers.RandomUniform(-self.gamma / 100,
                                                   self.gamma / 100)
        # One expert (m = 0): nothing to select, no selector logits.
        self.selector_kernels, self.selector_biases = add_stack(
            layer, f"{prefix}_selector", count,
            (width, self.top_k * self.bits) if self.bits else (width,),
            selector_init, self.kernel_regularizer, bias_initializer=selector_init)
        weight_init = initializers.RandomUniform(-0.05, 0.05)
        self.weight_kernels, self.weight_biases = add_stack(
            layer, f"{prefix}_selector_weight", count, (width, self.top_k),
            weight_init, self.kernel_regularizer, bias_initializer=weight_init)
        self.kernels = [*self.hidden_kernels, *self.selector_kernels,
                        *self.weight_kernels]
        self.biases = [*self.hidden_biases, *self.selector_biases,
                       *self.weight_biases]

    def selectors(self, inputs):
        """`(r, selector_weights)`: the selectors' raw outputs
        `(count, batch, k, num_experts)` over the real experts and their softmax
        weights `(count, batch, k)`."""
        h = inputs
        if self.hidden_kernels:
            h = apply_stack(inputs, self.hidden_kernels, self.hidden_biases,
                            self.activation)
        logits = apply_stack(h, self.weight_kernels, self.weight_biases, None,
                             last_linear=True)
        selector_weights = _softmax(logits)
        if not self.bits:
            return ops.ones_like(selector_weights)[..., None], selector_weights
        z = apply_stack(h, self.selector_kernels, self.selector_biases, None,
                        last_linear=True)
        count = z.shape[0]
        steps = smooth_step(ops.reshape(z, (count, -1, self.top_k, self.bits)),
                            self.gamma)
        codes = ops.cast(self.codes, steps.dtype)
        # (count, batch, k, 1, m) against (n, m): each factor is S or 1 - S.
        steps = steps[..., None, :]
        factors = codes * steps + (1.0 - codes) * (1.0 - steps)
        return ops.prod(factors, axis=-1), selector_weights

    def __call__(self, inputs):
        r, selector_weights = self.selectors(inputs)
        penalty = None
        if self.entropy_weight:
            entropy = -ops.sum(r * ops.log(r + EPSILON), axis=-1)
            penalty = self.entropy_weight * ops.sum(ops.mean(entropy, axis=1))
        if not self.power_of_two:
            reachable = ops.sum(r, axis=-1, keepdims=True)
            unreachable_penalty = ops.sum(ops.mean(
                1.0 / ops.maximum(reachable[..., 0], EPSILON) - 1.0, axis=1))
            penalty = (unreachable_penalty if penalty is None
                       else penalty + unreachable_penalty)
            some = reachable > 0
            r = ops.where(some, r / ops.where(some, reachable, 1.0),
                          1.0 / self.num_experts)
        weights = ops.sum(selector_weights[..., None] * r, axis=2)
        return weights, penalty

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k, "gamma": self.gamma,
                "entropy_weight": self.entropy_weight}


# The gate options a mixture-of-experts architecture passes to whichever gate
# it uses: a gate that does not take one ignores it.
ARCHITECTURE_GATE_OPTIONS = ("top_k", "gamma", "entropy_weight")


def list_gates():
    """The registered gate names, sorted.

    Returns:
        list of str: `["dselect_k", "softmax"]` and any registered since.
    """
    return GATES.names()


def get(identifier, **options):
    """A gate instance, e.g. `get("dselect_k", top_k=2)`.

    Args:
        identifier: a registered name or spec string (`"dselect_k(top_k=3)"`),
            a `Gate` instance (returned as is) or a config dict (`serialize`'s
            output).
        **options: the common `Gate` arguments (units, activation,
            kernel_initializer, kernel_regularizer) and the gate's own
            (DSelect-k: top_k, gamma, entropy_weight); a gate ignores the
            DSelect-k options it does not take (`ARCHITECTURE_GATE_OPTIONS`), so
            an architecture can pass them to any gate.

    Returns:
        A `Gate`.

    Raises:
        ConfigError: unknown gate name (a `ValueError`).
        ValueError: an option value the gate refuses, naming the option.
    """
    if not isinstance(identifier, str):
        return GATES.get(identifier)
    name, spec_options = parse_spec(identifier)
    if name not in GATES:
        raise ConfigError(f"Unknown gate. Received: gate={identifier!r}. "
                          f"Available: {list_gates()}.")
    cls = GATES.get_class(name)
    taken = GATES.options(name)
    options = {key: value for key, value in {**spec_options, **options}.items()
               if key in taken or key not in ARCHITECTURE_GATE_OPTIONS}
    # Built here rather than by `GATES.get`, so that a bad value raises the
    # gate's own ValueError, which the architecture reports as its option's.
    return cls(**options)


def serialize(gate):
    """A gate as a config dict.

    Args:
        gate: a `Gate`.

    Returns:
        dict: `{"class_name": <registered name>, "config": gate.get_config()}`.
    """
    return GATES.serialize(gate)


def deserialize(config):
    """The gate `serialize` described.

    Args:
        config: dict, `serialize`'s output.

    Returns:
        A `Gate`.

    Raises:
        ConfigError: not a serialized gate.
    """
    return GATES.deserialize(config)
