"""The plug-in registry (`kmtl/registry.py`) on a small family of its own."""

import keras
import pytest

from kmtl.errors import ConfigError
from kmtl.registry import Registry
from kmtl.registry import parse_spec


class Shape:
    def __init__(self, size=1):
        if size < 1:
            raise ValueError(f"size must be positive. Received: size={size}")
        self.size = size

    def get_config(self):
        return {"size": self.size}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


SHAPES = Registry("shape", Shape, default="square")


@SHAPES.register("square", "box")
class Square(Shape):
    pass


@SHAPES.register("octagon")
class Octagon(Shape):
    pass


def test_names_list_and_aliases():
    assert SHAPES.list() == ["box", "octagon", "square"]
    assert SHAPES.names() == ["octagon", "square"]
    assert Square.registered_name == "square" and "BOX" in SHAPES
    assert SHAPES.get_class("Box") is Square


@pytest.mark.parametrize("identifier, cls, size", [
    (None, Square, 1),
    ("octagon", Octagon, 1),
    ("square(size=3)", Square, 3),
    (Octagon, Octagon, 1),
    ({"class_name": "octagon", "config": {"size": 5}}, Octagon, 5),
])
def test_get_accepts_every_identifier_form(identifier, cls, size):
    shape = SHAPES.get(identifier)
    assert type(shape) is cls and shape.size == size


def test_get_returns_an_instance_as_is_and_merges_arguments():
    shape = Octagon(2)
    assert SHAPES.get(shape) is shape
    assert SHAPES.get("square", size=4).size == 4


def test_serialize_round_trip():
    config = SHAPES.serialize(Octagon(7))
    assert config == {"class_name": "octagon", "config": {"size": 7}}
    assert SHAPES.deserialize(config).size == 7


@pytest.mark.parametrize("identifier, arguments, message", [
    ("circle", {}, r"Unknown shape 'circle'\. Available: \['octagon', 'square'\]"),
    ("square", {"sides": 4}, r"The shape 'square' does not take option\(s\) "
                             r"\['sides'\]\. Its options are \['size'\]"),
    ("square(size=0)", {}, r"Shape 'square': size must be positive\. "
                           r"Received: size=0"),
    (3.5, {}, r"Cannot interpret a shape from 3\.5"),
    ("square(size=open('x'))", {}, r"Cannot parse"),
])
def test_errors_name_the_member_and_the_fix(identifier, arguments, message):
    with pytest.raises(ConfigError, match=message):
        SHAPES.get(identifier, **arguments)


def test_registering_needs_the_base_and_a_free_name():
    with pytest.raises(TypeError, match="A shape must subclass Shape"):
        SHAPES.register("dict")(dict)
    with pytest.raises(ValueError, match="'square' is taken by Square"):
        SHAPES.register("square")(type("Other", (Shape,), {}))


def test_keras_families_serialize_with_keras_and_take_layer_arguments():
    layers = Registry("architecture", keras.layers.Layer)

    @layers.register("kmtl_test_identity")
    class Identity(keras.layers.Layer):
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    layer = layers.get("kmtl_test_identity(scale=2.0)", name="named")
    assert layer.name == "named" and layer.scale == 2.0
    restored = layers.deserialize(layers.serialize(layer))
    assert type(restored) is Identity and restored.scale == 2.0
    with pytest.raises(ConfigError, match=r"an architecture from 1"):
        layers.get(1)


def test_parse_spec_reads_literals_only():
    assert parse_spec(" cagrad(c=0.4, rescale=1) ") == ("cagrad", {"c": 0.4,
                                                                  "rescale": 1})
    assert parse_spec("ew") == ("ew", {})


def test_names_are_registered_in_lower_case():
    with pytest.raises(ValueError, match=r"Shape names are lower case.*'Hexagon'"):
        SHAPES.register("Hexagon")


def test_an_instance_takes_no_arguments():
    with pytest.raises(ConfigError, match=r"A shape instance is used as it is; it "
                                          r"takes no arguments\. Received: "
                                          r"\['size'\]"):
        SHAPES.get(Octagon(), size=3)


def test_a_hand_written_dict_names_the_member_and_bad_ones_are_config_errors():
    import kmtl

    pcgrad = kmtl.weighting.get({"class_name": "PCGrad", "config": {"seed": 3}})
    assert type(pcgrad).__name__ == "PCGrad" and pcgrad.seed == 3
    with pytest.raises(ConfigError, match=r"Weighting 'pcgrad': .*'nope'"):
        kmtl.weighting.get({"class_name": "pcgrad", "config": {"nope": 1}})
    with pytest.raises(ConfigError, match=r"Cannot read a weighting from "):
        kmtl.weighting.get({"class_name": "NoSuchMethod", "config": {}})
    with pytest.raises(ConfigError, match=r"Unknown shape 'hexagon'"):
        SHAPES.deserialize({"class_name": "hexagon", "config": {}})


def test_an_architecture_instance_must_serve_the_model_tasks():
    from kmtl import architectures

    layer = architectures.get("mmoe", task_names=["a", "b"], num_experts=2)
    assert architectures.get(layer, task_names=["a", "b"]) is layer
    with pytest.raises(ConfigError, match=r"serves the tasks \['a', 'b'\], but the "
                                          r"model's tasks are \['x'\]"):
        architectures.get(layer, task_names=["x"])
    with pytest.raises(ConfigError, match=r"takes no options\. Received: "
                                          r"\['num_experts'\]"):
        architectures.get(layer, num_experts=3)
