"""The architecture family: layers that map a shared input representation to one
representation per task.

Every architecture is a registered, serializable `keras.layers.Layer` whose first
argument is `task_names` and whose call maps `(batch, features)` to a dict
`{task_name: (batch, units)}`. Towers and heads are added on top by
`kmtl.build_model`. Look one up by its standard name, as `keras.losses.get` does:

>>> kmtl.architectures.get("mmoe")
<class 'kmtl.architectures.mmoe.MMoE'>
"""

import inspect

import keras

from kmtl.architectures.cross_stitch import CrossStitch
from kmtl.architectures.mmoe import MMoE
from kmtl.architectures.mtan import MTAN
from kmtl.architectures.ple import CGC
from kmtl.architectures.ple import PLE
from kmtl.architectures.shared_bottom import SharedBottom
from kmtl.architectures.soft_sharing import SoftSharing
from kmtl.errors import ConfigError

_REGISTRY = {
    "shared_bottom": SharedBottom,
    "soft_sharing": SoftSharing,
    "cross_stitch": CrossStitch,
    "mmoe": MMoE,
    "cgc": CGC,
    "ple": PLE,
    "mtan": MTAN,
}


def list_architectures():
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def register(name, cls):
    """Registers an architecture layer class under `name` (used by `get`)."""
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise TypeError(f"An architecture must be a keras Layer class. Received: {cls}")
    _REGISTRY[name] = cls
    return cls


def get(identifier):
    """Resolves an architecture.

    Args:
        identifier: a registered name (returns the layer class), a layer class
            (returned as is), a config dict
            `{"class_name": ..., "config": {...}}` (returns a layer, via
            `deserialize`), or a layer instance (returned as is).

    Raises:
        ConfigError: the name is not registered.
    """
    if isinstance(identifier, keras.layers.Layer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, keras.layers.Layer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _REGISTRY:
            raise ConfigError(
                f"Unknown architecture {identifier!r}. Available: "
                f"{list_architectures()}."
            )
        return _REGISTRY[key]
    raise ConfigError(f"Cannot interpret an architecture from {identifier!r}.")


def create(identifier, task_names, **options):
    """Instantiates an architecture for `task_names` with keyword `options`.

    Raises:
        ConfigError: unknown architecture or an option it does not take.
    """
    cls = get(identifier)
    if isinstance(cls, keras.layers.Layer):
        return cls
    allowed = [p for p in inspect.signature(cls.__init__).parameters
               if p not in ("self", "task_names", "kwargs")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"Architecture {identifier!r} does not take option(s) {unknown}. Its "
            f"options are {allowed}."
        )
    try:
        # A stable layer name (not `shared_bottom_7`), so the layer can be found
        # by name in any model built this way.
        name = identifier.lower() if isinstance(identifier, str) else None
        return cls(task_names=list(task_names), name=name, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Architecture {identifier!r}: {error}") from None


def serialize(layer):
    """The layer's Keras config dict."""
    return keras.layers.serialize(layer)


def deserialize(config):
    """A layer from `serialize`'s output."""
    return keras.layers.deserialize(config)


__all__ = [
    "CGC",
    "CrossStitch",
    "MMoE",
    "MTAN",
    "PLE",
    "SharedBottom",
    "SoftSharing",
    "create",
    "deserialize",
    "get",
    "list_architectures",
    "register",
    "serialize",
]
