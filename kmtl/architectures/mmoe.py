"""Multi-gate Mixture-of-Experts (MMoE)."""

from keras import ops

from kmtl._checks import check_positive_int
from kmtl.architectures import gates as gates_module
from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.experts import MixtureOfExperts
from kmtl.architectures.experts import add_stack
from kmtl.architectures.experts import apply_stack


@ARCHITECTURES.register("mmoe")
class MMoE(MixtureOfExperts):
    """Multi-gate Mixture-of-Experts.

    Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018
    (doi:10.1145/3219819.3220007; no arXiv version). `num_experts` expert
    MLPs read the input; each task has its own softmax gate over the experts, and
    the task's representation is the gate-weighted sum of expert outputs:
    `f_k(x) = sum_i softmax(W_gk x)_i * e_i(x)`. With `gate="dselect_k"` each
    task's gate is a DSelect-k gate instead (Hazimeh et al., NeurIPS 2021,
    arXiv:2106.03760; see `kmtl.architectures.gates.DSelectKGate`), which picks
    at most `top_k` experts per example once trained.

    The experts (and the gates) are evaluated side by side, one matmul per layer,
    not as separate Dense layers. The defaults (3 experts of (256, 128) units, linear
    gates) are DeepCTR's, which the kmtl Census-Income benchmark compares against;
    the paper tunes sizes per data set.

    Args:
        task_names: list of str. The tasks; one gate each.
        num_experts: int, default 3.
        expert_units: list of int, default `(256, 128)`. Hidden units of each expert.
        gate_units: list of int, default `()`. Hidden units of each gate before its
            output layer (empty: a linear gate, as in the paper).
        gate: `"softmax"` (default, the paper's) or `"dselect_k"`.
        activation: str, default `"relu"`. Activation of expert and gate hidden
            layers.
        dropout: float in [0, 1), default 0. Dropout on the experts' outputs.
        kernel_initializer: default `"glorot_uniform"`, applied per expert.
        kernel_regularizer: Keras regularizer identifier or None.
        top_k: int, default 2. DSelect-k only: number of selectors (at most k
            experts per example).
        gamma: float, default 1.0. DSelect-k only: width of the smooth step.
        entropy_weight: float, default 0. DSelect-k only: weight of the
            selectors' entropy penalty.

    Input shape:
        `(batch, features)`.

    Output shape:
        dict `{task_name: (batch, expert_units[-1])}`.

    Trainable weights:
        experts: `num_experts * sum(d_in * u + u)` over `expert_units`;
        gates: `num_tasks * (sum(d_in * u + u) over gate_units + G)` with `h` the
        last gate hidden size (or `d`) and `G = h * E + E` (softmax) or
        `G = (h + 1) * top_k * (m + 1)`, `m = ceil(log2 E)` (dselect_k).

    Raises:
        ValueError: empty `task_names`, `num_experts < 1`, non-positive units,
            unknown `gate`, bad DSelect-k options.

    Examples:
        >>> layer = MMoE(["a", "b"], num_experts=4, expert_units=(8,))
        >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
        {'a': (2, 8), 'b': (2, 8)}
    """

    def __init__(self, task_names, num_experts=3, expert_units=(256, 128),
                 gate_units=(), gate="softmax", activation="relu", dropout=0.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 top_k=2, gamma=1.0, entropy_weight=0.0, **kwargs):
        super().__init__(task_names, expert_units, gate_units, activation, dropout,
                         kernel_initializer, kernel_regularizer, top_k, gamma,
                         entropy_weight, **kwargs)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        # `count` gates side by side, one per task (built with the experts).
        self.gates = gates_module.get(gate, **self.gate_options)
        self.gate = self.gates.registered_name
        self.check_top_k(self.num_experts)

    def build(self, input_shape):
        features = input_shape[-1]
        self.expert_kernels, self.expert_biases = add_stack(
            self, "expert", self.num_experts, (features, *self.expert_units),
            self.kernel_initializer, self.kernel_regularizer)
        self.gates.build(self, "gate", len(self.task_names), features,
                         self.num_experts)
        self.gate_kernels, self.gate_biases = self.gates.kernels, self.gates.biases

    def owned_slices(self):
        """Gate t's slices are task t's (it only weighs the experts for task
        t); the experts are shared."""
        if not self.built:
            return {}
        return self.slices_owned_by([*self.gate_kernels, *self.gate_biases],
                                    self.task_names)

    def gate_weights(self, inputs):
        """The gates' mixture weights.

        Args:
            inputs: `(batch, features)` tensor, the layer's input.

        Returns:
            `(num_tasks, batch, num_experts)` weights, non-negative, summing to
            1 over the experts.
        """
        return self.gates(inputs)[0]

    def call(self, inputs, training=None):
        experts = apply_stack(inputs, self.expert_kernels, self.expert_biases,
                              self.activation_fn)
        if self.dropout_layer is not None:
            experts = self.dropout_layer(experts, training=training)
        gates, penalty = self.gates(inputs)
        if training and penalty is not None:
            self.add_loss(penalty)
        mixed = ops.einsum("tbe,ebu->tbu", gates, experts)
        return {name: mixed[t] for t, name in enumerate(self.task_names)}

    def diagnostics(self, inputs):
        """Expert utilisation: `{"expert_utilisation": (matrix, task_names,
        expert_labels)}`, `matrix` `(num_tasks, num_experts)` the gate weights
        averaged over the rows of `inputs` `(batch, features)`."""
        inputs = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if not self.built:
            self.build(inputs.shape)
        matrix = ops.mean(self.gate_weights(inputs), axis=1)
        return {"expert_utilisation": (
            matrix, list(self.task_names),
            [f"expert_{i}" for i in range(self.num_experts)])}

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts}
