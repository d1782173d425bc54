"""Progressive Layered Extraction (PLE) and its one-level form, Customized Gate
Control (CGC)."""

import numpy as np
from keras import ops

from kmtl._checks import check_positive_int
from kmtl.architectures import gates as gates_module
from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.experts import MixtureOfExperts
from kmtl.architectures.experts import add_stack
from kmtl.architectures.experts import apply_stack


def _check_count(value, argument):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{argument} must be a non-negative integer. Received: "
                         f"{argument}={value!r}")
    return value


class _Level:
    """One extraction level's weights: its experts' stack and its gates."""

    def __init__(self, kernels, biases, task_gate, shared_gate):
        self.kernels = kernels
        self.biases = biases
        self.task_gate = task_gate
        self.shared_gate = shared_gate


@ARCHITECTURES.register("ple")
class PLE(MixtureOfExperts):
    """Progressive Layered Extraction: stacked levels of task-specific and shared
    experts with per-task gates.

    Tang, Liu, Zhao and Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task
    Learning (MTL) Model for Personalized Recommendations", RecSys 2020
    (doi:10.1145/3383313.3412236; no arXiv version). Each level has `num_task_experts`
    experts per task and `num_shared_experts` shared experts. Task t's gate mixes task
    t's own experts and the shared experts; its output is task t's input to the next
    level (and task t's representation after the last level). Every level but the last
    also has a shared gate over all the level's experts, whose output is the input of
    the next level's shared experts (and of its shared gate). At the first level every
    expert and gate reads the layer's input.

    The experts of a level are evaluated side by side (one stacked kernel per
    layer, as in MMoE): one matmul at the first level, where they share an input,
    and one batched matmul at later levels. Gates are softmax gates, as in the
    paper, or DSelect-k gates (`gate="dselect_k"`, Hazimeh et al., NeurIPS 2021,
    arXiv:2106.03760; see `kmtl.architectures.gates.DSelectKGate`). The paper
    tunes sizes per data set. The default counts (2 levels, 1 task-specific and
    1 shared expert per level, linear softmax gates) are DeepCTR 0.9.4's PLE;
    the expert units (256, 128) are kmtl's, as for `MMoE` (DeepCTR's are (256,)).

    Args:
        task_names: list of str. The tasks.
        num_levels: int, default 2. Extraction levels (1 is CGC).
        num_task_experts: int >= 0, default 1. Experts per task per level.
        num_shared_experts: int >= 0, default 1. Shared experts per level. At
            least one of the two must be positive. Without shared experts there is
            no shared gate.
        expert_units: list of int, default `(256, 128)`. Hidden units of each
            expert; experts after the first level read `expert_units[-1]`
            features.
        gate_units: list of int, default `()`. Hidden units of each gate before
            its output layer (empty: a linear gate, as in the paper).
        gate: `"softmax"` (default) or `"dselect_k"`.
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
        With T tasks, s task-specific and S shared experts, `d_0 = features` and
        `d_l = expert_units[-1]` after: the sum over levels l of
        `(T * s + S) * X(d_l) + T * G(d_l, s + S)`, plus `G(d_l, T * s + S)` on
        levels before the last when S > 0. `X(d) = sum(d_in * u + u)` over
        `expert_units` from `d`; `G(d, n)` is one gate over n experts:
        `sum(d_in * u + u)` over `gate_units` from `d`, then `h * n + n`
        (softmax) or `(h + 1) * top_k * (ceil(log2 n) + 1)` (dselect_k), `h` the
        last gate hidden size (or `d`).

    Raises:
        ValueError: empty `task_names`, `num_levels < 1`, negative expert counts
            or none at all, non-positive units, dropout outside [0, 1), unknown
            `gate`, bad DSelect-k options.

    Examples:
        >>> layer = PLE(["a", "b"], num_levels=2, expert_units=(8,))
        >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
        {'a': (2, 8), 'b': (2, 8)}
    """

    def __init__(self, task_names, num_levels=2, num_task_experts=1,
                 num_shared_experts=1, expert_units=(256, 128), gate_units=(),
                 gate="softmax", activation="relu", dropout=0.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 top_k=2, gamma=1.0, entropy_weight=0.0, **kwargs):
        super().__init__(task_names, expert_units, gate_units, activation, dropout,
                         kernel_initializer, kernel_regularizer, top_k, gamma,
                         entropy_weight, **kwargs)
        self.num_levels = check_positive_int(num_levels, "num_levels")
        self.num_task_experts = _check_count(num_task_experts, "num_task_experts")
        self.num_shared_experts = _check_count(num_shared_experts,
                                               "num_shared_experts")
        if not num_task_experts + num_shared_experts:
            raise ValueError(
                "PLE needs at least one expert per level. Received: "
                "num_task_experts=0, num_shared_experts=0")
        # Checks the gate name and options now, not at build time.
        self.gate = gates_module.get(gate, **self.gate_options).registered_name
        self.check_top_k(self.num_task_experts + self.num_shared_experts)
        num_tasks, s, shared = (len(self.task_names), self.num_task_experts,
                                self.num_shared_experts)
        self.num_level_experts = num_tasks * s + shared
        # Which expert each task gate sees: its own, then the shared ones.
        self._visible = np.array(
            [[*range(t * s, (t + 1) * s), *range(num_tasks * s,
                                                 self.num_level_experts)]
             for t in range(num_tasks)], "int32").reshape(num_tasks, s + shared)
        # Which input each expert reads at levels after the first: task t's
        # input for task t's experts, then the shared input (index num_tasks).
        self._expert_inputs = np.array(
            [t for t in range(num_tasks) for _ in range(s)] + [num_tasks] * shared,
            "int32")

    def build(self, input_shape):
        num_tasks = len(self.task_names)
        self.levels = []
        for level in range(self.num_levels):
            width = input_shape[-1] if level == 0 else self.expert_units[-1]
            kernels, biases = add_stack(
                self, f"level_{level}_expert", self.num_level_experts,
                (width, *self.expert_units), self.kernel_initializer,
                self.kernel_regularizer)
            task_gate = gates_module.get(self.gate, **self.gate_options)
            task_gate.build(self, f"level_{level}_task_gate", num_tasks, width,
                            self._visible.shape[1])
            shared_gate = None
            if level < self.num_levels - 1 and self.num_shared_experts:
                shared_gate = gates_module.get(self.gate, **self.gate_options)
                shared_gate.build(self, f"level_{level}_shared_gate", 1, width,
                                  self.num_level_experts)
            self.levels.append(_Level(kernels, biases, task_gate, shared_gate))

    def owned_slices(self):
        """Task t's slices of the level experts and task gates that feed task
        t's output alone.

        The shared gate of a level before the last mixes every expert of that
        level into the shared path, which reaches every task. So task t's
        experts are its own only at the last level (or without shared experts),
        and its gate, which feeds the next level's task-t experts and task-t
        gate, only at the last two levels (or without shared experts, or
        without task experts for the shared gate to mix). Shared experts and
        shared gates are shared.
        """
        if not self.built:
            return {}
        declared = {}
        last = self.num_levels - 1
        for number, level in enumerate(self.levels):
            if number == last or not self.num_shared_experts:
                declared.update(self.slices_owned_by(
                    [*level.kernels, *level.biases], self._expert_owners()))
            if (number >= last - 1 or not self.num_shared_experts
                    or not self.num_task_experts):
                declared.update(self.slices_owned_by(
                    [*level.task_gate.kernels, *level.task_gate.biases],
                    self.task_names))
        return declared

    def _expert_owners(self):
        """The owner of each expert of a level: its task, None if shared."""
        owners = [name for name in self.task_names
                  for _ in range(self.num_task_experts)]
        return owners + [None] * self.num_shared_experts

    def _forward(self, inputs, training=None):
        """`(task outputs (T, batch, units), per-level gate weights, penalties)`.

        Gate weights per level: `(task gate weights (T, batch, s + S), shared gate
        weights (batch, T * s + S) or None)`."""
        task_inputs, shared_input = inputs, inputs
        gate_weights, penalties = [], []
        for i, level in enumerate(self.levels):
            if i == 0:
                expert_inputs = inputs
            else:
                per_input = (ops.concatenate([task_inputs, shared_input[None]], 0)
                             if shared_input is not None else task_inputs)
                expert_inputs = ops.take(per_input, self._expert_inputs, axis=0)
            experts = apply_stack(expert_inputs, level.kernels, level.biases,
                                  self.activation_fn)
            if self.dropout_layer is not None:
                experts = self.dropout_layer(experts, training=training)
            task_weights, penalty = level.task_gate(task_inputs)
            penalties.append(penalty)
            visible = ops.take(experts, self._visible, axis=0)
            task_outputs = ops.einsum("tbe,tebu->tbu", task_weights, visible)
            shared_weights, shared_output = None, None
            if level.shared_gate is not None:
                shared_weights, penalty = level.shared_gate(shared_input)
                penalties.append(penalty)
                shared_weights = shared_weights[0]
                shared_output = ops.einsum("be,ebu->bu", shared_weights, experts)
            gate_weights.append((task_weights, shared_weights))
            task_inputs, shared_input = task_outputs, shared_output
        return task_inputs, gate_weights, [p for p in penalties if p is not None]

    def call(self, inputs, training=None):
        outputs, _, penalties = self._forward(inputs, training=training)
        if training and penalties:
            self.add_loss(ops.sum(ops.stack(penalties)))
        return {name: outputs[t] for t, name in enumerate(self.task_names)}

    def diagnostics(self, inputs):
        """Expert utilisation per level:
        `{"expert_utilisation_level_<l>": (matrix, rows, columns)}`.

        `matrix` holds the gate weights averaged over the rows of `inputs`
        `(batch, features)`: one row per task gate (and a `"shared"` row for the
        shared gate of levels before the last), one column per expert of the
        level (`"<task>_expert_<i>"`, then `"shared_expert_<i>"`), 0 where a gate
        does not see an expert."""
        inputs = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if not self.built:
            self.build(inputs.shape)
        _, gate_weights, _ = self._forward(inputs)
        # (T, s + S, E): places task t's j-th weight in its expert's column.
        placement = np.zeros((*self._visible.shape, self.num_level_experts),
                             "float32")
        for t, columns in enumerate(self._visible):
            placement[t, np.arange(len(columns)), columns] = 1.0
        columns = [f"{name}_expert_{i}" for name in self.task_names
                   for i in range(self.num_task_experts)]
        columns += [f"shared_expert_{i}" for i in range(self.num_shared_experts)]
        result = {}
        for level, (task_weights, shared_weights) in enumerate(gate_weights):
            mean = ops.mean(task_weights, axis=1)
            matrix = ops.einsum("tj,tje->te", mean,
                                ops.cast(placement, mean.dtype))
            rows = list(self.task_names)
            if shared_weights is not None:
                shared = ops.mean(shared_weights, axis=0)[None]
                matrix = ops.concatenate([matrix, shared], axis=0)
                rows.append("shared")
            result[f"expert_utilisation_level_{level}"] = (matrix, rows,
                                                           list(columns))
        return result

    def get_config(self):
        return {
            **super().get_config(),
            "num_levels": self.num_levels,
            "num_task_experts": self.num_task_experts,
            "num_shared_experts": self.num_shared_experts,
        }


@ARCHITECTURES.register("cgc")
class CGC(PLE):
    """Customized Gate Control: one level of task-specific and shared experts
    mixed by per-task gates.

    Tang, Liu, Zhao and Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task
    Learning (MTL) Model for Personalized Recommendations", RecSys 2020
    (doi:10.1145/3383313.3412236), Section 4.2. Task t's representation is its gate's
    mixture of task t's `num_task_experts` experts and the `num_shared_experts` shared
    experts. This is `PLE` with `num_levels=1` (no shared gate); see `PLE` for the gates
    and the side-by-side evaluation. Defaults as `PLE`'s (1 task-specific and 1 shared
    expert of (256, 128) units, linear softmax gates).

    Args:
        task_names: list of str. The tasks.
        num_task_experts: int >= 0, default 1. Experts per task.
        num_shared_experts: int >= 0, default 1. Shared experts; at least one of
            the two counts must be positive.
        expert_units: list of int, default `(256, 128)`.
        gate_units: list of int, default `()`.
        gate: `"softmax"` (default) or `"dselect_k"`.
        activation: str, default `"relu"`.
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
        `(T * s + S) * X(d) + T * G(d, s + S)` in `PLE`'s notation.

    Raises:
        ValueError: as `PLE`.

    Examples:
        >>> layer = CGC(["a", "b"], num_task_experts=2, expert_units=(8,))
        >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
        {'a': (2, 8), 'b': (2, 8)}
    """

    def __init__(self, task_names, num_task_experts=1, num_shared_experts=1,
                 expert_units=(256, 128), gate_units=(), gate="softmax",
                 activation="relu", dropout=0.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 top_k=2, gamma=1.0, entropy_weight=0.0, **kwargs):
        super().__init__(
            task_names, num_levels=1, num_task_experts=num_task_experts,
            num_shared_experts=num_shared_experts, expert_units=expert_units,
            gate_units=gate_units, gate=gate, activation=activation,
            dropout=dropout, kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer, top_k=top_k, gamma=gamma,
            entropy_weight=entropy_weight, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["num_levels"]
        return config
