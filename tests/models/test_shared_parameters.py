"""Which parameters count as shared for gradient-based weightings: the task-owned
slices of stacked per-task variables (MMoE gates, soft-sharing towers, PLE task
experts, MTAN attention modules, cross-stitch's last mixing rows) get their own
task's gradient and stay out of the `(tasks, parameters)` matrix."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import fit_tasks_and_features
from keras import ops

import kmtl
from kmtl import architectures
from kmtl.architectures import MMoE
from kmtl.data import make_dataset
from kmtl.models.shared_parameters import gradient_parts
from kmtl.models.shared_parameters import owner_reach
from kmtl.models.shared_parameters import owner_runs
from kmtl.tasks import Task
from kmtl.weighting import Weighting

NUMERIC = ["x0", "x1", "x2"]


class ZeroDirection(Weighting):
    """A gradient-based weighting that moves no shared parameter."""

    gradient_based = True

    def aggregate_gradients(self, gradients, losses, labelled):
        return ops.zeros_like(gradients[0]), ops.cast(labelled, "float32")


def _frame(rows=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).astype("float32")
    frame = pd.DataFrame(x, columns=NUMERIC)
    frame["a"] = (x[:, 0] > 0).astype("float64")
    frame["b"] = x[:, 1] + x[:, 2]
    frame["c"] = (x[:, 2] > 0).astype("float64")
    return frame


def _tasks():
    return [Task("a", "binary", target="a"), Task("b", "regression", target="b"),
            Task("c", "binary", target="c")]


# Test case -> (architecture, options).
ARCHITECTURES = {
    "mmoe": ("mmoe", {"num_experts": 3, "expert_units": (4,)}),
    "soft_sharing": ("soft_sharing", {"units": (4, 3)}),
    "ple": ("ple", {"num_levels": 2, "num_task_experts": 1, "num_shared_experts": 1,
                    "expert_units": (4,)}),
    "ple3": ("ple", {"num_levels": 3, "num_task_experts": 1,
                     "num_shared_experts": 1, "expert_units": (4,)}),
    "ple_no_shared": ("ple", {"num_levels": 2, "num_task_experts": 1,
                              "num_shared_experts": 0, "expert_units": (4,)}),
    "ple_no_task_experts": ("ple", {"num_levels": 3, "num_task_experts": 0,
                                    "num_shared_experts": 2, "expert_units": (4,)}),
    "cgc": ("cgc", {"num_task_experts": 2, "num_shared_experts": 1,
                    "expert_units": (4,)}),
    "cgc_dselect_k": ("cgc", {"num_task_experts": 1, "num_shared_experts": 2,
                              "expert_units": (4,), "gate": "dselect_k",
                              "gate_units": (3,)}),
    "mmoe_dselect_k": ("mmoe", {"num_experts": 3, "expert_units": (4,),
                                "gate": "dselect_k"}),
    "mtan": ("mtan", {"units": (4, 3), "shared_extractor": False}),
    "mtan_shared_extractor": ("mtan", {"units": (4, 3)}),
    "cross_stitch": ("cross_stitch", {"units": (4, 3)}),
    "shared_bottom": ("shared_bottom", {"units": (4,)}),
}

# Per architecture: the weights (by name inside the architecture layer) that
# the tasks share, and how many of their leading rows (None: all of them).
SHARED = {
    "mmoe": {"expert_kernel_0": None, "expert_bias_0": None},
    "soft_sharing": {},
    # Level 0's experts feed the next level's shared gate: all shared; its task
    # gates only feed their own task's path. At the last level only the shared
    # expert (row 3 of 4) is shared.
    "ple": {"level_0_expert_kernel_0": None, "level_0_expert_bias_0": None,
            "level_0_shared_gate_kernel_0": None, "level_0_shared_gate_bias_0": None,
            "level_1_expert_kernel_0": (3, 4), "level_1_expert_bias_0": (3, 4)},
    # Level 0's task gates feed level 1's task experts, which level 1's shared
    # gate mixes into the shared path.
    "ple3": {"level_0_expert_kernel_0": None, "level_0_expert_bias_0": None,
             "level_0_task_gate_kernel_0": None, "level_0_task_gate_bias_0": None,
             "level_0_shared_gate_kernel_0": None,
             "level_0_shared_gate_bias_0": None,
             "level_1_expert_kernel_0": None, "level_1_expert_bias_0": None,
             "level_1_shared_gate_kernel_0": None,
             "level_1_shared_gate_bias_0": None,
             "level_2_expert_kernel_0": (3, 4), "level_2_expert_bias_0": (3, 4)},
    # No shared experts: three separate paths, nothing shared.
    "ple_no_shared": {},
    # No task experts: every expert is shared; task gates are each task's own
    # (the shared gate mixes experts, not gates).
    "ple_no_task_experts": {
        f"level_{level}_{part}": None for level in range(3)
        for part in ("expert_kernel_0", "expert_bias_0")} | {
        f"level_{level}_shared_gate_{part}": None for level in range(2)
        for part in ("kernel_0", "bias_0")},
    "cgc_dselect_k": {"level_0_expert_kernel_0": (3, 5),
                      "level_0_expert_bias_0": (3, 5)},
    "mmoe_dselect_k": {"expert_kernel_0": None, "expert_bias_0": None},
    "cgc": {"level_0_expert_kernel_0": (6, 7), "level_0_expert_bias_0": (6, 7)},
    "mtan": {"trunk_0_kernel": None, "trunk_0_bias": None,
             "trunk_1_kernel": None, "trunk_1_bias": None},
    "mtan_shared_extractor": {"trunk_0_kernel": None, "trunk_0_bias": None,
                              "trunk_1_kernel": None, "trunk_1_bias": None,
                              "extractor_1_kernel": None,
                              "extractor_1_bias": None},
    # Every layer is mixed into every task, except the rows of the last
    # cross-stitch matrix: row t only mixes task t's output.
    "cross_stitch": {"tower_kernel_0": None, "tower_bias_0": None,
                     "tower_kernel_1": None, "tower_bias_1": None,
                     "cross_stitch_0": None},
    "shared_bottom": {"kernel": None, "bias": None},
}


def _build(case, tasks, features, seed=0):
    keras.utils.set_random_seed(seed)
    architecture, options = ARCHITECTURES[case]
    return kmtl.build_model(features, tasks, architecture, tower_units=(2,),
                            **options)


def _architecture_layer(model, case):
    layer = model.architecture
    assert layer.name == ARCHITECTURES[case][0]
    return layer


def _short(variable, layer):
    return variable.path.split("/")[-1]


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_gradient_matrix_covers_exactly_the_shared_parameters(architecture):
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    model = _build(architecture, tasks, features)
    batch = next(iter(make_dataset(frame, features, tasks, 64)))
    matrix, _ = model.task_gradients(batch)
    layer = _architecture_layer(model, architecture)
    expected = 0
    for weight in layer.trainable_weights:
        name = _short(weight, layer)
        if name in SHARED[architecture]:
            rows = SHARED[architecture][name]
            size = int(np.prod(weight.shape))
            if rows is not None:
                size = size // weight.shape[0] * (rows[1] - rows[0])
            expected += size
    # Numeric features only: the encoder has no trainable weights.
    assert matrix.shape == (3, expected)
    assert np.isfinite(ops.convert_to_numpy(matrix)).all()


def _parts(model, batch):
    x, y, w = batch
    variables = model.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        losses = model.compute_task_losses(y, model.forward(x, training=True), w)
    per_task = [tape.gradient(losses[n], variables) for n in model.task_names]
    return variables, per_task, gradient_parts(per_task, variables, model.tasks,
                                               owner_reach(model))


def _assert_no_other_task_reaches(variables, per_task, parts):
    """On every part, the gradient of each task outside `part.tasks` is zero."""
    for part in parts:
        for task, gradients in enumerate(per_task):
            g = gradients[part.index]
            if task in part.tasks or g is None:
                continue
            rows = ops.convert_to_numpy(tf.convert_to_tensor(g))
            if part.start is not None:
                rows = rows[part.start:part.stop]
            assert not rows.any(), (variables[part.index].path, part, task)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_no_other_task_reaches_an_owned_slice(architecture):
    """The slice owners the architectures declare agree with the graph: on an
    owned part, every other task's gradient is exactly zero."""
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    model = _build(architecture, tasks, features)
    _assert_no_other_task_reaches(*_parts(
        model, next(iter(make_dataset(frame, features, tasks, 64)))))

@pytest.mark.parametrize("architecture", [
    "mmoe", "mmoe_dselect_k", "soft_sharing", "ple", "ple3", "ple_no_task_experts",
    "cgc", "mtan", "mtan_shared_extractor", "cross_stitch"])
def test_owned_slices_take_their_own_gradient_and_shared_parts_the_direction(
        architecture):
    """A weighting whose direction is zero freezes the shared parts; the owned
    slices then move exactly as in the plain summed-loss step (there they only
    receive their own task's gradient)."""
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    data = make_dataset(frame, features, tasks, 64)

    def step(weighting):
        model = _build(architecture, tasks, features, seed=1)
        before = [w.numpy() for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.5), weighting=weighting)
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        return model, before, [w.numpy() for w in model.trainable_weights]

    model, before, frozen = step(ZeroDirection())
    _, _, summed = step("ew")
    layer = _architecture_layer(model, architecture)
    architecture_weights = {id(w) for w in layer.trainable_weights}
    checked = 0
    for weight, old, new, reference in zip(model.trainable_weights, before,
                                           frozen, summed):
        if id(weight) not in architecture_weights:
            # Towers and heads: own gradient either way.
            np.testing.assert_allclose(new, reference, rtol=1e-5, atol=1e-6)
            continue
        rows = SHARED[architecture].get(_short(weight, layer), ())
        shared = np.zeros(weight.shape[0] if weight.shape else 1, bool)
        if rows is None:
            shared[:] = True
        elif rows:
            shared[rows[0]:rows[1]] = True
        np.testing.assert_array_equal(new[shared], old[shared])
        np.testing.assert_allclose(new[~shared], reference[~shared],
                                   rtol=1e-5, atol=1e-6)
        checked += int((~shared).sum() > 0)
        if (~shared).any():
            assert not np.allclose(new[~shared], old[~shared])
    assert checked > 0


def test_hand_wired_heads_are_read_off_the_graph():
    """A model wired by hand in which task b's head reads MMoE's outputs for a
    and b: gate a is reached by tasks a and b (shared), gates b and c are their
    own task's. Nothing a task reaches is dropped."""
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    keras.utils.set_random_seed(0)
    inputs = {n: keras.Input((), name=n) for n in NUMERIC}
    x = keras.layers.Concatenate()([keras.layers.Reshape((1,))(inputs[n])
                                    for n in NUMERIC])
    rep = architectures.get("mmoe", task_names=["a", "b", "c"], num_experts=3,
                            expert_units=(4,))(x)
    outputs = {
        "a": keras.layers.Dense(1, activation="sigmoid", name="a")(rep["a"]),
        "b": keras.layers.Dense(1, name="b")(
            keras.layers.Concatenate()([rep["a"], rep["b"]])),
        "c": keras.layers.Dense(1, activation="sigmoid", name="c")(rep["c"])}
    model = kmtl.MultiTaskModel(inputs, outputs, tasks=tasks)
    batch = next(iter(make_dataset(frame, features, tasks, 64, encoded=False)))
    variables, per_task, parts = _parts(model, batch)
    gate = [(p.start, sorted(p.tasks)) for p in parts
            if variables[p.index].path.endswith("gate_kernel_0")]
    assert gate == [(0, [0, 1]), (1, [1]), (2, [2])]
    _assert_no_other_task_reaches(variables, per_task, parts)


def test_esmm_slices_are_shared_with_the_derived_task():
    """With ESMM on MMoE, CTR's gate is reached by CTR and CTCVR (shared); CVR
    has no label, so its gate is reached by CTCVR alone (owned)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(32, 3)).astype("float32"),
                         columns=NUMERIC)
    frame["click"] = (frame.x0 > 0).astype("float64")
    frame["buy"] = ((frame.x0 > 0) & (frame.x1 > 0)).astype("float64")
    tasks = [Task("ctr", "binary", target="click"),
             Task("cvr", "binary", target=[]),
             Task("ctcvr", "binary", target="buy", derived_from=["ctr", "cvr"])]
    features, tasks = fit_tasks_and_features(frame, tasks, NUMERIC)
    model = _build("mmoe", tasks, features)
    variables, per_task, parts = _parts(
        model, next(iter(make_dataset(frame, features, tasks, 32))))
    gate = [p for p in parts
            if variables[p.index].path.endswith("gate_kernel_0")]
    assert [(p.start, p.stop, sorted(p.tasks)) for p in gate] == [
        (0, 1, [0, 2]), (1, 2, [2])]
    assert [p.shared for p in gate] == [True, False]
    # CVR's tower is reached by CTCVR alone: its own gradient, not shared.
    tower = [p for p in parts if variables[p.index].path.startswith("cvr_")]
    assert tower and all(p.tasks == {2} for p in tower)


def test_owner_runs_and_bad_owner_count():
    assert owner_runs(("a", "a", None, "b", "b")) == [
        ("a", 0, 2), (None, 2, 3), ("b", 3, 5)]
    variable = keras.Variable(np.zeros((3, 2), "float32"), name="stack")
    with pytest.raises(ValueError, match="first axis must have one entry per"):
        architectures.Architecture.slices_owned_by([variable], ["a", "b"])


class _MisdeclaredMMoE(MMoE):
    """Declares the experts' kernel with two owners for its three slices
    (`declare="count"`), or a variable it does not hold (`"elsewhere"`)."""

    def __init__(self, task_names, declare, **kwargs):
        super().__init__(task_names, expert_units=(4,), **kwargs)
        self.declare = declare

    def owned_slices(self):
        if self.declare == "count":
            return {self.expert_kernels[0].path: ("a", "b")}
        return {"elsewhere/kernel": ("a",)}


@pytest.mark.parametrize("declare, message", [
    ("count", r"_MisdeclaredMMoE.owned_slices\(\) gives variable "
              r"'.*/expert_kernel_0' of shape \(3, \d+, 4\) 2 slice owners; its "
              r"first axis must have one entry per owner."),
    ("elsewhere", r"_MisdeclaredMMoE.owned_slices\(\) names variables the layer "
                  r"does not hold: \['elsewhere/kernel'\]")])
def test_a_wrong_declaration_is_an_error_not_a_silent_split(declare, message):
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    model = kmtl.build_model(features, tasks,
                             _MisdeclaredMMoE(["a", "b", "c"], declare))
    with pytest.raises(ValueError, match=message):
        owner_reach(model)


def test_a_model_without_architecture_shares_every_slice():
    """Wired by hand from plain layers: no architecture, nothing owned; the
    graph alone decides (each head is its own task's)."""
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    inputs = {n: keras.Input((), name=n) for n in NUMERIC}
    x = keras.layers.Concatenate()([keras.layers.Reshape((1,))(inputs[n])
                                    for n in NUMERIC])
    hidden = keras.layers.Dense(4, name="hidden")(x)
    outputs = {name: keras.layers.Dense(1, name=name)(hidden) for name in "abc"}
    model = kmtl.MultiTaskModel(inputs, outputs, tasks=tasks)
    assert model.architecture is None and owner_reach(model) == {}
    variables, per_task, parts = _parts(
        model, next(iter(make_dataset(frame, features, tasks, 64, encoded=False))))
    assert [(variables[p.index].path, p.start, sorted(p.tasks)) for p in parts] == [
        ("hidden/kernel", None, [0, 1, 2]), ("hidden/bias", None, [0, 1, 2]),
        ("a/kernel", None, [0]), ("a/bias", None, [0]),
        ("b/kernel", None, [1]), ("b/bias", None, [1]),
        ("c/kernel", None, [2]), ("c/bias", None, [2])]


def test_nothing_shared_warns_and_logs_the_labelled_tasks():
    """Soft sharing over numeric features shares no trained parameter: a
    gradient method has nothing to combine, says so, and logs weight 1 for a
    labelled task and 0 for one without labels in the batch."""
    frame = _frame()
    frame.loc[:, "c"] = np.nan
    frame.loc[0, "c"] = 1.0
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    model = _build("soft_sharing", tasks, features)
    model.compile(optimizer="sgd", weighting="mgda")
    data = make_dataset(frame.iloc[1:], features, tasks, 63)
    with pytest.warns(UserWarning, match="the tasks share no trained parameter"):
        logs = model.fit(data, epochs=1, verbose=0).history
    assert (logs["a_weight"], logs["b_weight"], logs["c_weight"]) == (
        [1.0], [1.0], [0.0])


def test_gradient_statistics_are_nan_when_nothing_is_shared():
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    model = _build("soft_sharing", tasks, features)
    model.compile(optimizer="sgd")
    data = make_dataset(frame, features, tasks, 64)
    logs = model.fit(data, epochs=1, verbose=0, callbacks=[
        kmtl.callbacks.GradientStatistics(data)]).history
    assert np.isnan(logs["a_grad_norm"][0]) and np.isnan(logs["grad_cosine_a_b"][0])


@pytest.mark.parametrize("architecture", ["mmoe", "ple3"])
def test_the_split_survives_a_keras_file_round_trip(architecture, tmp_path):
    frame = _frame()
    features, tasks = fit_tasks_and_features(frame, _tasks(), NUMERIC)
    model = _build(architecture, tasks, features)
    batch = next(iter(make_dataset(frame, features, tasks, 64)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    before, _ = model.task_gradients(batch)
    after, _ = loaded.task_gradients(batch)
    assert after.shape == before.shape
    np.testing.assert_allclose(ops.convert_to_numpy(after),
                               ops.convert_to_numpy(before), rtol=1e-5, atol=1e-7)
