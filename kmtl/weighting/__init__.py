"""The weighting family: how task losses or task gradients become one update.

Look a method up by its standard name, as `keras.losses.get` does, or parse a
command-line spec such as `"static(mean=True)"`:

Examples:
    >>> kmtl.weighting.get("static")
    <StaticWeighting ...>
    >>> kmtl.weighting.list_weightings()[:4]
    ['aligned_mtl', 'cagrad', 'dwa', 'gls']
"""

from kmtl.registry import parse_spec
from kmtl.weighting.aligned_mtl import AlignedMTL
from kmtl.weighting.base import WEIGHTINGS
from kmtl.weighting.base import Weighting
from kmtl.weighting.base import register
from kmtl.weighting.cagrad import CAGrad
from kmtl.weighting.db_mtl import DBMTL
from kmtl.weighting.dwa import DWA
from kmtl.weighting.fairgrad import FairGrad
from kmtl.weighting.famo import FAMO
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
from kmtl.weighting.upgrad import UPGrad


def list_weightings():
    """The registered weighting names, sorted.

    Returns:
        list of str: one canonical name per method (`get` also takes the
        aliases `"ew"` and `"uw"`).
    """
    return WEIGHTINGS.names()


def get(identifier):
    """Resolves a weighting to an instance.

    Args:
        identifier: None (static weights), a registered name or spec string
            (`"static(mean=True)"`), a `Weighting` class, a config dict
            (`serialize` output) or a `Weighting` instance.

    Returns:
        A `Weighting` instance.

    Raises:
        ConfigError: unknown name, a spec that does not parse, or arguments the
            method does not take or refuses.
    """
    return WEIGHTINGS.get(identifier)


def serialize(weighting):
    """A Keras config dict of `weighting` (with its registered class name).

    Args:
        weighting: a `Weighting` instance.

    Returns:
        dict, which `deserialize` reads back.
    """
    return WEIGHTINGS.serialize(weighting)


def deserialize(config):
    """The `Weighting` that `serialize` described.

    Args:
        config: dict, `serialize`'s output, or a hand-written
            `{"class_name": "pcgrad", "config": {...}}`.

    Returns:
        A `Weighting` instance.

    Raises:
        ConfigError: the dict is not a serialized weighting.
    """
    return WEIGHTINGS.deserialize(config)


__all__ = [
    "DWA",
    "FAMO",
    "WEIGHTINGS",
    "GLS",
    "IMTL",
    "MGDA",
    "RLW",
    "AlignedMTL",
    "CAGrad",
    "DBMTL",
    "FairGrad",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "NashMTL",
    "PCGrad",
    "StaticWeighting",
    "UPGrad",
    "UncertaintyWeighting",
    "Weighting",
    "deserialize",
    "get",
    "list_weightings",
    "parse_spec",
    "register",
    "serialize",
]
