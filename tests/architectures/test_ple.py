"""Tests for PLE and CGC: values against a numpy reference of the paper's
formulas, shapes, weight counts, configs, routing and diagnostics."""

import re

import keras
import numpy as np
import pytest
from helpers import assert_config_round_trip
from helpers import random_inputs
from helpers import relu
from helpers import softmax
from helpers import to_numpy
from helpers import trainable_count

from kmtl import architectures
from kmtl.architectures import CGC
from kmtl.architectures import PLE

D_IN = 5


def _reference(layer, x):
    """PLE by the paper, one expert and one gate at a time, in numpy (ReLU
    experts, linear softmax gates). Returns (task outputs, per-level
    (task gate weights, shared gate weights or None))."""
    w = {v.name: to_numpy(v) for v in layer.weights}
    names, s, shared = (layer.task_names, layer.num_task_experts,
                        layer.num_shared_experts)
    num_tasks, depth = len(names), len(layer.expert_units)

    def expert(h, level, i):
        for j in range(depth):
            h = relu(h @ w[f"level_{level}_expert_kernel_{j}"][i]
                      + w[f"level_{level}_expert_bias_{j}"][i])
        return h

    def gate(h, prefix, i):
        return softmax(h @ w[f"{prefix}_kernel_0"][i] + w[f"{prefix}_bias_0"][i])

    def mix(weights, experts):
        return sum(weights[:, i : i + 1] * e for i, e in enumerate(experts))

    task_inputs, shared_input, gates = [x] * num_tasks, x, []
    for level in range(layer.num_levels):
        own = [[expert(task_inputs[t], level, t * s + j) for j in range(s)]
               for t in range(num_tasks)]
        common = [expert(shared_input, level, num_tasks * s + j)
                  for j in range(shared)]
        task_gates = [gate(task_inputs[t], f"level_{level}_task_gate", t)
                      for t in range(num_tasks)]
        shared_gate = None
        if level < layer.num_levels - 1 and shared:
            shared_gate = gate(shared_input, f"level_{level}_shared_gate", 0)
            shared_input = mix(shared_gate, [e for es in own for e in es] + common)
        task_inputs = [mix(task_gates[t], own[t] + common) for t in range(num_tasks)]
        gates.append((task_gates, shared_gate))
    return dict(zip(names, task_inputs)), gates


# --- Shapes and weight counts -------------------------------------------------


@pytest.mark.parametrize("cls", [PLE, CGC])
@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_shapes(cls, num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    layer = cls(names, num_task_experts=2, num_shared_experts=1, expert_units=(6, 3))
    out = layer(random_inputs())
    assert list(out) == names
    assert all(tuple(v.shape) == (7, 3) for v in out.values())
    assert layer.compute_output_shape((None, D_IN)) == {n: (None, 3) for n in names}


def _experts(d, units=(6, 3)):
    """X(d) = sum(d_in * u + u) along (d, *units)."""
    sizes = (d, *units)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


@pytest.mark.parametrize("num_levels", [1, 2, 3])
@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_weight_count_matches_the_docstring(num_levels, num_tasks):
    """T tasks, s = 2, S = 1, expert_units (6, 3), linear softmax gates:
    per level (T s + S) X(d) + T (d (s + S) + s + S), plus the shared gate
    d (T s + S) + T s + S before the last level."""
    layer = PLE([f"t{i}" for i in range(num_tasks)], num_levels=num_levels,
                num_task_experts=2, num_shared_experts=1, expert_units=(6, 3))
    layer(random_inputs())
    total, experts = 0, 2 * num_tasks + 1
    for level in range(num_levels):
        d = D_IN if level == 0 else 3
        total += experts * _experts(d) + num_tasks * (d * 3 + 3)
        if level < num_levels - 1:
            total += d * experts + experts
    assert trainable_count(layer) == total
    # The same by hand, T = 2: level 0 is 5 * 57 + 2 * 18 + 30 = 351, a later
    # level 5 * 45 + 2 * 12 (+ 20 before the last).
    assert trainable_count(layer) == {
        (1, 1): 3 * 57 + 18, (1, 2): 351 - 30, (1, 5): 11 * 57 + 5 * 18,
        (2, 1): 3 * 57 + 18 + 18 + 3 * 45 + 12, (2, 2): 351 + 249,
        (2, 5): 11 * 57 + 5 * 18 + 66 + 11 * 45 + 5 * 12,
        (3, 1): 3 * 57 + 18 + 18 + 3 * 45 + 12 + 12 + 3 * 45 + 12,
        (3, 2): 351 + 269 + 249,
        (3, 5): 11 * 57 + 5 * 18 + 66 + 2 * (11 * 45 + 5 * 12) + 44,
    }[(num_levels, num_tasks)]


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_dselect_k_weight_count(num_levels):
    """Two tasks, s = 1, S = 2, gate_units (4,), top_k 2: a task gate sees
    n = 3 experts (m = 2), the shared gate n = 4 (m = 2); a gate is
    d * 4 + 4 + (4 + 1) * 2 * (2 + 1) = 4 d + 34."""
    layer = PLE(["a", "b"], num_levels=num_levels, num_task_experts=1,
                num_shared_experts=2, expert_units=(6, 3), gate_units=(4,),
                gate="dselect_k", top_k=2)
    layer(random_inputs())
    total = 0
    for level in range(num_levels):
        d = D_IN if level == 0 else 3
        gates = 3 if level < num_levels - 1 else 2
        total += 4 * _experts(d) + gates * (4 * d + 34)
    assert trainable_count(layer) == total
    assert trainable_count(layer) == {
        1: 4 * 57 + 2 * 54, 2: 4 * 57 + 3 * 54 + 4 * 45 + 2 * 46,
        3: 4 * 57 + 3 * 54 + 4 * 45 + 3 * 46 + 4 * 45 + 2 * 46}[num_levels]


# --- Values -------------------------------------------------------------------


@pytest.mark.parametrize("num_levels, s, shared", [
    (1, 2, 1), (2, 1, 1), (3, 2, 2), (2, 0, 2), (2, 2, 0)])
def test_values_match_the_paper_formulas(num_levels, s, shared):
    layer = PLE(["a", "b", "c"], num_levels=num_levels, num_task_experts=s,
                num_shared_experts=shared, expert_units=(4, 3))
    x = random_inputs()
    out = layer(x)
    expected, _ = _reference(layer, x)
    for name in ("a", "b", "c"):
        np.testing.assert_allclose(to_numpy(out[name]), expected[name], rtol=1e-5,
                                   atol=1e-6)


def test_one_own_expert_and_no_shared_experts_route_each_task_alone():
    """s = 1, S = 0: each gate sees one expert (weight 1), so task t's output is
    its own experts chained level by level, whatever the other tasks' weights."""
    layer = PLE(["a", "b"], num_levels=2, num_task_experts=1,
                num_shared_experts=0, expert_units=(4,))
    x = random_inputs()
    out = layer(x)
    w = {v.name: to_numpy(v) for v in layer.weights}
    for t, name in enumerate(["a", "b"]):
        h = relu(x @ w["level_0_expert_kernel_0"][t] + w["level_0_expert_bias_0"][t])
        h = relu(h @ w["level_1_expert_kernel_0"][t] + w["level_1_expert_bias_0"][t])
        np.testing.assert_allclose(to_numpy(out[name]), h, rtol=1e-5, atol=1e-6)
    before = to_numpy(out["a"])
    for v in layer.weights:
        if "expert" in v.name:
            value = to_numpy(v).copy()
            value[1] += 1.0  # task b's expert only
            v.assign(value)
    after = layer(x)
    np.testing.assert_array_equal(to_numpy(after["a"]), before)
    assert not np.allclose(to_numpy(after["b"]), to_numpy(out["b"]))
    utilisation = layer.diagnostics(x)
    for level in (0, 1):
        matrix, rows, columns = utilisation[f"expert_utilisation_level_{level}"]
        assert rows == ["a", "b"] and columns == ["a_expert_0", "b_expert_0"]
        np.testing.assert_allclose(to_numpy(matrix), np.eye(2), atol=1e-7)


def test_cgc_equals_one_level_ple():
    options = {"num_task_experts": 2, "num_shared_experts": 1, "expert_units": (4,),
               "gate_units": (3,)}
    cgc = CGC(["a", "b"], **options)
    ple = PLE(["a", "b"], num_levels=1, **options)
    x = random_inputs()
    cgc(x)
    ple(x)
    assert [v.name for v in cgc.weights] == [v.name for v in ple.weights]
    ple.set_weights(cgc.get_weights())
    cgc_out, ple_out = cgc(x), ple(x)
    for name in ("a", "b"):
        np.testing.assert_array_equal(to_numpy(cgc_out[name]), to_numpy(ple_out[name]))
    assert cgc.num_levels == 1 and "num_levels" not in cgc.get_config()


def test_dropout_only_in_training():
    layer = PLE(["a", "b"], expert_units=(16,), dropout=0.5)
    x = random_inputs()
    inference = [to_numpy(layer(x)["a"]) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.allclose(to_numpy(layer(x, training=True)["a"]), inference[0])


def test_dselect_k_penalty_only_in_training():
    """s = 1, S = 2: task gates over 3 experts, not a power of two, so the
    reachability penalty is added while training."""
    layer = PLE(["a", "b"], num_task_experts=1, num_shared_experts=2,
                expert_units=(4,), gate="dselect_k")
    x = random_inputs()
    layer(x)
    assert not layer.losses
    layer(x, training=True)
    assert len(layer.losses) == 1
    # 2 levels x 2 task gates x 2 selectors, each 1 / (1 - S1 S2) - 1 with the
    # smooth steps near 1/2: about 8 * (4/3 - 1).
    assert float(layer.losses[0]) == pytest.approx(8 / 3, rel=0.1)


# --- Diagnostics --------------------------------------------------------------


@pytest.mark.parametrize("gate", ["softmax", "dselect_k"])
def test_diagnostics_place_the_mean_gate_weights(gate):
    layer = PLE(["a", "b"], num_levels=2, num_task_experts=2, num_shared_experts=1,
                expert_units=(4,), gate=gate)
    x = random_inputs(rows=11)
    diagnostics = layer.diagnostics(x)
    assert list(diagnostics) == ["expert_utilisation_level_0",
                                 "expert_utilisation_level_1"]
    columns = ["a_expert_0", "a_expert_1", "b_expert_0", "b_expert_1",
               "shared_expert_0"]
    matrix, rows, labels = diagnostics["expert_utilisation_level_0"]
    assert rows == ["a", "b", "shared"] and labels == columns
    matrix = to_numpy(matrix)
    assert matrix.shape == (3, 5)
    np.testing.assert_array_equal(matrix[0, 2:4], 0.0)  # a cannot see b's experts
    np.testing.assert_array_equal(matrix[1, 0:2], 0.0)
    assert np.all(matrix[2] > 0)  # the shared gate sees every expert
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
    last, rows, labels = diagnostics["expert_utilisation_level_1"]
    assert rows == ["a", "b"] and labels == columns and to_numpy(last).shape == (2, 5)
    np.testing.assert_allclose(to_numpy(last).sum(axis=1), 1.0, rtol=1e-6)
    if gate == "softmax":
        _, gates = _reference(layer, x)
        for level, utilisation in enumerate([matrix, to_numpy(last)]):
            task_gates, shared_gate = gates[level]
            np.testing.assert_allclose(utilisation[0, [0, 1, 4]],
                                       task_gates[0].mean(0), rtol=1e-5)
            np.testing.assert_allclose(utilisation[1, [2, 3, 4]],
                                       task_gates[1].mean(0), rtol=1e-5)
            if shared_gate is not None:
                np.testing.assert_allclose(utilisation[2], shared_gate.mean(0),
                                           rtol=1e-5)


# --- Config -------------------------------------------------------------------

CONFIGS = [
    (PLE, {"num_levels": 3, "num_task_experts": 2, "num_shared_experts": 1,
           "expert_units": (6, 3), "gate_units": (2,), "dropout": 0.1,
           "kernel_regularizer": "l2", "activation": "tanh"}),
    (PLE, {"num_levels": 2, "num_shared_experts": 2, "expert_units": (4,),
           "gate": "dselect_k", "top_k": 3, "gamma": 0.5, "entropy_weight": 0.01}),
    (CGC, {"num_task_experts": 1, "num_shared_experts": 2, "expert_units": (5,),
           "gate": "dselect_k"}),
]


@pytest.mark.parametrize("cls, options", CONFIGS)
@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_config_round_trip(cls, options, num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    assert_config_round_trip(cls(names, name="arch", **options), random_inputs())


def test_get_by_registered_name():
    layer = architectures.get("ple", task_names=["a", "b"], num_levels=3,
                              gate="dselect_k")
    assert isinstance(layer, PLE) and layer.name == "ple"
    assert (layer.num_levels, layer.gate) == (3, "dselect_k")
    cgc = architectures.get("cgc", task_names=["a"], num_shared_experts=2)
    assert type(cgc) is CGC and cgc.num_levels == 1


@pytest.mark.parametrize("argument", [
    {"num_levels": 0}, {"num_task_experts": -1}, {"num_shared_experts": 1.5},
    {"expert_units": ()}, {"dropout": 1.0}, {"gate": "top_k"}, {"top_k": 0}])
def test_bad_arguments_echo_the_value(argument):
    (key, value), = argument.items()
    with pytest.raises(ValueError, match=re.escape(f"{key}={value!r}")):
        PLE(["a"], **{"gate": "dselect_k", **argument})


def test_at_least_one_expert():
    with pytest.raises(ValueError, match="num_task_experts=0, num_shared_experts=0"):
        CGC(["a"], num_task_experts=0, num_shared_experts=0)


def test_task_names_must_be_distinct():
    with pytest.raises(ValueError, match="task_names"):
        PLE(["a", "a"])


def test_default_sizes_and_weight_count():
    layer = PLE(["a", "b"])
    assert (layer.num_levels, layer.num_task_experts, layer.num_shared_experts,
            layer.expert_units, layer.gate_units, layer.gate) == (
                2, 1, 1, (256, 128), (), "softmax")
    layer(keras.ops.ones((2, D_IN)))
    assert trainable_count(layer) == (
        3 * _experts(D_IN, (256, 128)) + 2 * (D_IN * 2 + 2) + (D_IN * 3 + 3)
        + 3 * _experts(128, (256, 128)) + 2 * (128 * 2 + 2))
