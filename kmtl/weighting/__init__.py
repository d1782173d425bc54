"""The weighting family: how task losses or task gradients become one update.

Look a method up by its standard name, as `keras.losses.get` does, or parse a
command-line spec such as `"static(mean=True)"`:

>>> kmtl.weighting.get("static")
<StaticWeighting ...>
>>> kmtl.weighting.list_weightings()[:4]
['aligned_mtl', 'cagrad', 'dwa', 'ew']
"""

import ast

import keras

from kmtl.errors import ConfigError
from kmtl.weighting.aligned_mtl import AlignedMTL
from kmtl.weighting.base import WEIGHTINGS as _REGISTRY
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register
from kmtl.weighting.cagrad import CAGrad
from kmtl.weighting.dwa import DWA
from kmtl.weighting.gls import GLS
from kmtl.weighting.graddrop import GradDrop
from kmtl.weighting.gradnorm import GradNorm
from kmtl.weighting.gradvac import GradVac
from kmtl.weighting.imtl import IMTL
from kmtl.weighting.mgda import MGDA
from kmtl.weighting.nash_mtl import NashMTL
from kmtl.weighting.pcgrad import PCGrad
from kmtl.weighting.rlw import RLW
from kmtl.weighting.static import StaticWeighting
from kmtl.weighting.uncertainty import UncertaintyWeighting


def list_weightings():
    """The registered weighting names, sorted."""
    return sorted(_REGISTRY)


def parse_spec(spec):
    """`"cagrad(c=0.4)"` -> `("cagrad", {"c": 0.4})`, with `ast.literal_eval`.

    Raises:
        ConfigError: the spec is not `name` or `name(key=literal, ...)`.
    """
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Name):
        return node.id, {}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and not node.args):
        try:
            return node.func.id, {k.arg: ast.literal_eval(k.value)
                                  for k in node.keywords}
        except ValueError:
            pass
    raise ConfigError(f"Cannot parse the weighting {spec!r}. Write a name or "
                      f"name(key=value, ...), e.g. 'static(mean=True)'.")


def get(identifier):
    """Resolves a weighting to an instance.

    Args:
        identifier: None (static weights), a registered name or spec string
            (`"static(mean=True)"`), a config dict (`serialize` output) or a
            `Weighting` instance.

    Raises:
        ConfigError: unknown name or arguments the method does not take.
    """
    if identifier is None:
        return StaticWeighting()
    if isinstance(identifier, Weighting):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        name, options = parse_spec(identifier)
        key = name.lower()
        if key not in _REGISTRY:
            raise ConfigError(f"Unknown weighting {name!r}. Available: "
                              f"{list_weightings()}.")
        try:
            return _REGISTRY[key](**options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"Weighting {name!r}: {error}") from None
    raise ConfigError(f"Cannot interpret a weighting from {identifier!r}.")


def serialize(weighting):
    return keras.layers.serialize(weighting)


def deserialize(config):
    return keras.layers.deserialize(config)


__all__ = [
    "DWA",
    "GLS",
    "IMTL",
    "MGDA",
    "RLW",
    "AlignedMTL",
    "CAGrad",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "NashMTL",
    "PCGrad",
    "StaticWeighting",
    "UncertaintyWeighting",
    "Weighting",
    "deserialize",
    "get",
    "list_weightings",
    "parse_spec",
    "register",
    "serialize",
]
