"""Every registered architecture through `run_architecture_test` (contract,
config and `.keras` round trips, owned slices checked against the graph), the
registry's verbs, and toy architectures that show the owned-slices check fails
when an architecture forgets to declare a slice or declares a wrong owner."""

import keras
import pytest
from architecture_case import TASKS
from architecture_case import check_export
from architecture_case import make_architecture
from architecture_case import owned_slice_errors
from architecture_case import random_inputs
from architecture_case import run_architecture_test
from keras import ops

import kmtl
from kmtl import architectures
from kmtl.architectures import Architecture
from kmtl.architectures.experts import add_stack
from kmtl.architectures.experts import apply_stack
from kmtl.registry import Registry

# Small sizes per registered name, to keep the checks fast. A name missing here
# is tested with its defaults: registering an architecture puts it under test.
SMALL = {
    "shared_bottom": {"units": [8]},
    "soft_sharing": {"units": [8, 4]},
    "cross_stitch": {"units": [8, 4]},
    "mmoe": {"num_experts": 3, "expert_units": [8]},
    "cgc": {"num_task_experts": 1, "num_shared_experts": 2, "expert_units": [8]},
    "ple": {"num_levels": 3, "num_task_experts": 1, "num_shared_experts": 1,
            "expert_units": [8]},
    "mtan": {"units": [8, 4]},
}
# Variants whose owned slices differ from the default's.
EXTRA = {
    "mmoe_dselect_k": ("mmoe", {"num_experts": 5, "expert_units": [8],
                                "gate": "dselect_k", "gate_units": [4]}),
    "cgc_dselect_k": ("cgc", {"num_task_experts": 1, "num_shared_experts": 2,
                              "expert_units": [8], "gate": "dselect_k"}),
    "ple_dselect_k": ("ple", {"num_levels": 2, "num_task_experts": 2,
                              "num_shared_experts": 2, "expert_units": [8],
                              "gate": "dselect_k", "top_k": 2}),
    "ple_no_shared_experts": ("ple", {"num_levels": 2, "num_shared_experts": 0,
                                      "expert_units": [8]}),
    "ple_no_task_experts": ("ple", {"num_levels": 3, "num_task_experts": 0,
                                    "num_shared_experts": 2,
                                    "expert_units": [8]}),
    "mtan_task_extractors": ("mtan", {"units": [8, 4],
                                      "shared_extractor": False}),
    "cross_stitch_one_layer": ("cross_stitch", {"units": [8]}),
}
VARIANTS = {name: (name, SMALL.get(name, {}))
            for name in architectures.list_architectures()} | EXTRA


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_registered_architecture(variant):
    name, options = VARIANTS[variant]
    run_architecture_test(name, **options)


@pytest.mark.parametrize("name", architectures.list_architectures())
def test_registered_architecture_exports_for_serving(name, tmp_path):
    check_export(name, tmp_path / "serving", **SMALL.get(name, {}))


# === The registry ===


def test_list_architectures():
    assert architectures.list_architectures() == [
        "cgc", "cross_stitch", "mmoe", "mtan", "ple", "shared_bottom",
        "soft_sharing"]


def test_get_by_name_spec_class_instance_and_config():
    layer = architectures.get("MMoE", task_names=["a", "b"], num_experts=4)
    assert isinstance(layer, architectures.MMoE)
    assert (layer.name, layer.num_experts, layer.task_names) == (
        "mmoe", 4, ["a", "b"])
    spec = architectures.get("mmoe(num_experts=2)", task_names=["a"])
    assert (spec.name, spec.num_experts) == ("mmoe", 2)
    assert architectures.get("ple", task_names=["a"], name="mine").name == "mine"
    by_class = architectures.get(architectures.CGC, task_names=["a"])
    assert type(by_class) is architectures.CGC
    assert architectures.get(layer) is layer
    revived = architectures.get(architectures.serialize(layer))
    assert type(revived) is architectures.MMoE
    assert revived.get_config() == layer.get_config()
    created = architectures.get("soft_sharing", task_names=["a", "b"], strength=0.2)
    assert (created.name, created.strength) == ("soft_sharing", 0.2)


def test_get_errors_name_the_architecture_and_the_options():
    with pytest.raises(kmtl.ConfigError, match=r"Unknown architecture 'moe'. "
                                               r"Available: \['cgc', "):
        architectures.get("moe", task_names=["a"])
    with pytest.raises(kmtl.ConfigError,
                       match=r"The architecture 'mmoe' does not take option\(s\) "
                             r"\['num_expert'\]. Its options are \['num_experts', "
                             r"'expert_units', "):
        architectures.get("mmoe", task_names=["a"], num_expert=4)
    with pytest.raises(kmtl.ConfigError,
                       match=r"Architecture 'mmoe': num_experts must be a positive "
                             r"integer. Received: num_experts=0"):
        architectures.get("mmoe", task_names=["a"], num_experts=0)
    with pytest.raises(kmtl.ConfigError, match="Architecture 'mmoe': give the "
                                               "task_names"):
        architectures.get("mmoe")
    with pytest.raises(kmtl.ConfigError, match="is not an architecture"):
        architectures.deserialize(keras.layers.serialize(keras.layers.Dense(2)))


def test_every_architecture_keeps_the_contract_in_the_base_class():
    for name in architectures.list_architectures():
        cls = architectures.ARCHITECTURES.get_class(name)
        assert issubclass(cls, Architecture)
        assert cls.owned_slices is not Architecture.owned_slices, name
    assert architectures.get("shared_bottom", task_names=["a"]).shares_representation
    assert not architectures.get("mmoe", task_names=["a"]).shares_representation


# === Toy architectures: the owned-slices check fails when it should ===

TOYS = Registry("architecture", Architecture, fixed=("task_names",))


@TOYS.register("toy_towers")
class ToyTowers(Architecture):
    """One linear tower per task, side by side (`(T, d, 4)` kernels). With
    `mix`, every task's output also adds the mean of all towers' outputs, so
    every tower reaches every task. `declare` says which slices it declares
    owned: `"towers"` (tower t is task t's) or `"nothing"`."""

    def __init__(self, task_names, mix=False, declare="towers", **kwargs):
        super().__init__(task_names, **kwargs)
        self.mix = mix
        self.declare = declare

    def build(self, input_shape):
        self.kernels, self.biases = add_stack(
            self, "tower", len(self.task_names), (input_shape[-1], 4),
            "glorot_uniform", None)

    def call(self, inputs):
        h = apply_stack(inputs, self.kernels, self.biases, None, last_linear=True)
        if self.mix:
            h = h + ops.mean(h, axis=0, keepdims=True)
        return {name: h[t] for t, name in enumerate(self.task_names)}

    def owned_slices(self):
        if self.declare == "nothing" or not self.built:
            return {}
        return self.slices_owned_by([*self.kernels, *self.biases],
                                    self.task_names)

    def compute_output_shape(self, input_shape):
        return {name: (*input_shape[:-1], 4) for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "mix": self.mix, "declare": self.declare}


def test_toy_architecture_that_declares_its_towers_passes():
    run_architecture_test("toy_towers", registry=TOYS)


def test_forgotten_owned_slices_fail_the_check():
    layer = make_architecture("toy_towers", registry=TOYS, declare="nothing")
    inputs = random_inputs()
    layer(inputs)
    errors = owned_slice_errors(layer, inputs)
    # Every slice of both weights: tower t is reached by task t alone.
    assert errors == [
        f"toy_towers/tower_{part}_0[{t}]: only the output of {task!r} depends on "
        f"it, but it is declared owned by None"
        for part in ("kernel", "bias") for t, task in enumerate(TASKS)]
    with pytest.raises(AssertionError, match="ToyTowers.owned_slices"):
        run_architecture_test("toy_towers", registry=TOYS, declare="nothing")


def test_wrong_owners_fail_the_check():
    layer = make_architecture("toy_towers", registry=TOYS, mix=True)
    inputs = random_inputs()
    layer(inputs)
    assert owned_slice_errors(layer, inputs) == [
        f"toy_towers/tower_{part}_0[{t}] is declared owned by {task!r}, but the "
        f"outputs of ['a', 'b', 'c'] depend on it"
        for part in ("kernel", "bias") for t, task in enumerate(TASKS)]
    with pytest.raises(AssertionError, match="disagrees with the graph"):
        run_architecture_test("toy_towers", registry=TOYS, mix=True)


def test_an_architecture_must_say_its_owned_slices():
    class Silent(Architecture):
        def call(self, inputs):
            return {name: inputs for name in self.task_names}

    with pytest.raises(NotImplementedError, match="Silent must implement "
                                                  "owned_slices"):
        Silent(["a"]).owned_slices()
