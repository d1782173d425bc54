"""The architecture family: layers that map a shared input representation to one
representation per task.

Every architecture subclasses `kmtl.architectures.Architecture` (the contract:
`task_names`, `shares_representation`, `penalty()`, `diagnostics()`,
`owned_slices()`), is registered in `ARCHITECTURES` under its standard name, and
maps `(batch, features)` to a dict `{task_name: (batch, units)}`. Towers and
heads are added on top by `kmtl.build_model`. Look one up as `keras.losses.get`
looks up a loss:

Examples:
    >>> layer = kmtl.architectures.get("mmoe", task_names=["a", "b"], num_experts=4)
    >>> layer.name, layer.num_experts
    ('mmoe', 4)
    >>> kmtl.architectures.list_architectures()
    ['cgc', 'cross_stitch', 'mmoe', 'mtan', 'ple', 'shared_bottom', 'soft_sharing']

A new architecture is one file: a subclass of `Architecture` decorated with
`@kmtl.architectures.register("name")`; `tests/architectures` then checks it
(shapes, config and `.keras` round trips, owned slices against the graph).
"""

from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.base import Architecture
from kmtl.architectures.cross_stitch import CrossStitch
from kmtl.architectures.mmoe import MMoE
from kmtl.architectures.mtan import MTAN
from kmtl.architectures.ple import CGC
from kmtl.architectures.ple import PLE
from kmtl.architectures.shared_bottom import SharedBottom
from kmtl.architectures.soft_sharing import SoftSharing
from kmtl.errors import ConfigError
from kmtl.registry import parse_spec

register = ARCHITECTURES.register
"""Class decorator registering an `Architecture` subclass under its names
(`Registry.register`): `@kmtl.architectures.register("name")`."""


def list_architectures():
    """The registered architecture names, sorted.

    Returns:
        list of str: one canonical name per architecture, e.g. `["cgc",
        "cross_stitch", "mmoe", ...]`.
    """
    return ARCHITECTURES.names()


def get(identifier, task_names=None, **options):
    """An architecture layer.

    Args:
        identifier: a registered name or spec string (`"mmoe"`,
            `"mmoe(num_experts=4)"`), an `Architecture` subclass, a config dict
            (`serialize`'s output) or an `Architecture` instance (returned as
            is; it must serve `task_names` when they are given).
        task_names: list of str. The tasks, for a name or a class.
        **options: the architecture's own arguments, e.g. `num_experts=4`.

    Returns:
        An `Architecture` instance. Made from a name, the layer is named by its
        registered name (`"mmoe"`, not `"m_mo_e_7"`) unless `options` give a
        `name`.

    Raises:
        ConfigError: unknown architecture, an option it does not take (the
            message lists the options it takes), a value it refuses, no
            `task_names` for a name or a class, or an instance given options or
            other tasks.
    """
    if isinstance(identifier, Architecture):
        if options:
            raise ConfigError(f"Architecture instance {identifier.name!r} is used "
                              f"as it is; it takes no options. Received: "
                              f"{sorted(options)}.")
        if task_names is not None and list(task_names) != identifier.task_names:
            raise ConfigError(f"Architecture instance {identifier.name!r} serves "
                              f"the tasks {identifier.task_names}, but the model's "
                              f"tasks are {list(task_names)}. Build it with those "
                              f"task_names, or pass the architecture's name.")
        return identifier
    if isinstance(identifier, dict):
        return ARCHITECTURES.get(identifier)
    if isinstance(identifier, str):
        # The registry checks the options; the layer is named by its
        # registered name.
        name, _ = parse_spec(identifier)
        options.setdefault("name", ARCHITECTURES.get_class(name).registered_name)
    if task_names is None:
        raise ConfigError(f"Architecture {identifier!r}: give the task_names it "
                          f"serves, e.g. get({identifier!r}, task_names=['a', "
                          f"'b']).")
    return ARCHITECTURES.get(identifier, task_names=list(task_names), **options)


def serialize(layer):
    """The layer's Keras config dict.

    Args:
        layer: an `Architecture` instance.

    Returns:
        dict: `keras.saving.serialize_keras_object(layer)`, which `deserialize`
        reads back.
    """
    return ARCHITECTURES.serialize(layer)


def deserialize(config):
    """The layer `serialize` described.

    Args:
        config: dict, `serialize`'s output.

    Returns:
        An `Architecture` instance.

    Raises:
        ConfigError: `config` does not describe an architecture.
    """
    return ARCHITECTURES.deserialize(config)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CGC",
    "CrossStitch",
    "MMoE",
    "MTAN",
    "PLE",
    "SharedBottom",
    "SoftSharing",
    "deserialize",
    "get",
    "list_architectures",
    "register",
    "serialize",
]
