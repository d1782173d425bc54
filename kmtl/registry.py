"""One registry for every plug-in family of kmtl, in the Keras style.

Task types, feature kinds, architectures, gates, weightings and built-in data
sets are each a `Registry`: classes registered under the field's standard names,
looked up as `keras.losses.get` looks up a loss (a name, a spec string, a config
dict or an instance), serialized to and from config dicts, and listed, so that
the test suite can loop over every member of a family:

Examples:
    >>> WEIGHTINGS = Registry("weighting", Weighting)
    >>> @WEIGHTINGS.register("pcgrad")
    ... class PCGrad(Weighting): ...
    >>> WEIGHTINGS.get("pcgrad")                 # an instance
    >>> WEIGHTINGS.get("cagrad(c=0.4)")          # a spec, parsed with ast.literal_eval
    >>> WEIGHTINGS.list()
    ['pcgrad']

Keras objects (layers: architectures, weightings) are also registered with
`keras.saving.register_keras_serializable(package="kmtl")`, so `.keras` files
that hold them load without `custom_objects`.
"""

import ast
import inspect

import keras

from kmtl.errors import ConfigError


def parse_spec(spec):
    """`"cagrad(c=0.4)"` -> `("cagrad", {"c": 0.4})`, read with `ast.literal_eval`
    (no code runs).

    Args:
        spec: str. A name, or a name with keyword arguments whose values are
            Python literals: `"pcgrad"`, `"cagrad(c=0.4)"`,
            `"static(mean=True)"`.

    Returns:
        `(name, options)`: the name as written and a dict of the arguments
        (empty for a bare name).

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
    raise ConfigError(f"Cannot parse {spec!r}. Write a name or name(key=value, "
                      f"...), e.g. 'static(mean=True)' or 'cagrad(c=0.4)'.")


# Arguments every Keras layer takes through `**kwargs`.
LAYER_ARGUMENTS = frozenset({"name", "dtype", "trainable"})


def _article(word):
    return "an" if word[:1].lower() in "aeiou" else "a"


def options_of(cls):
    """The keyword arguments `cls.__init__` takes by name.

    Args:
        cls: a class.

    Returns:
        list of str: the names of `cls.__init__`'s parameters in order, without
        `self`, `*args` and `**kwargs`.
    """
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in parameters if p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


class Registry:
    """A family of plug-ins registered by name.

    Args:
        kind: str, what a member is, for messages ("architecture", "weighting").
        base: the class every member subclasses.
        keras_serializable: bool, default True when `base` is a Keras layer.
            Registers members with `keras.saving.register_keras_serializable`.
        fixed: tuple of str. Arguments the caller of `get` supplies (an
            architecture's `task_names`), so they are not listed as options.
        default: str or None. The member `get(None)` returns.
        common: tuple of str. Arguments every member takes from `base`
            through its `**kwargs` (a weighting's `log_loss`), so they are
            options of every member.
    """

    def __init__(self, kind, base, keras_serializable=None, fixed=(), default=None,
                 common=()):
        self.kind = kind
        self.base = base
        if keras_serializable is None:
            keras_serializable = issubclass(base, keras.layers.Layer)
        self.keras_serializable = keras_serializable
        self.fixed = tuple(fixed)
        self.default = default
        self.common = tuple(common)
        self._classes = {}

    # === Registration ===

    def register(self, *names):
        """Class decorator: registers a subclass of `base` under `names` (the
        field's standard names, lower case; the first is its canonical name,
        `cls.registered_name`).

        Args:
            *names: str. The names, lower case; the others are aliases.

        Returns:
            The decorator; it returns the class (registered with Keras too when
            the family is Keras-serializable).

        Raises:
            TypeError: the class does not subclass `base`.
            ValueError: no name, or a name already taken by another class.
        """
        if not names:
            raise ValueError(f"Register {_article(self.kind)} {self.kind} under at "
                             f"least one name.")

        for name in names:
            if not isinstance(name, str) or name != name.lower() or not name:
                raise ValueError(f"{self.kind.capitalize()} names are lower case "
                                 f"(look-ups are case-insensitive). Received: "
                                 f"{name!r}")

        def decorate(cls):
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{_article(self.kind).capitalize()} {self.kind} "
                                f"must subclass "
                                f"{self.base.__name__}. Received: {cls!r}")
            for name in names:
                taken = self._classes.get(name)
                if taken is not None and taken is not cls:
                    raise ValueError(f"The {self.kind} name {name!r} is taken by "
                                     f"{taken.__name__}.")
            if self.keras_serializable:
                cls = keras.saving.register_keras_serializable(package="kmtl")(cls)
            cls.registered_name = names[0]
            for name in names:
                self._classes[name] = cls
            return cls

        return decorate

    # === Look-up ===

    def list(self):
        """The registered names, sorted (aliases included)."""
        return sorted(self._classes)

    def names(self):
        """The canonical names (one per class), sorted."""
        return sorted({cls.registered_name for cls in self._classes.values()})

    def __contains__(self, name):
        return isinstance(name, str) and name.lower() in self._classes

    def get_class(self, name):
        """The class registered under `name` (case-insensitive).

        Raises:
            ConfigError: `name` is not registered; the message lists the names.
        """
        key = name.lower() if isinstance(name, str) else name
        if key not in self._classes:
            raise ConfigError(f"Unknown {self.kind} {name!r}. Available: "
                              f"{self.names()}.")
        return self._classes[key]

    def options(self, name):
        """The named arguments of the `name` class, without the fixed ones,
        then the common ones it does not name.

        Raises:
            ConfigError: `name` is not registered.
        """
        own = [o for o in options_of(self.get_class(name)) if o not in self.fixed]
        return own + [o for o in self.common if o not in own]

    def get(self, identifier, **arguments):
        """Resolves `identifier` to an instance.

        Args:
            identifier: None (the default member), an instance (returned as is), a
                registered name or spec string (`"cagrad(c=0.4)"`), a class of
                the family, or a config dict (`serialize`'s output).
            **arguments: passed to the constructor with the spec's options (an
                architecture's `task_names` and options).

        Returns:
            An instance of a registered class.

        Raises:
            ConfigError: unknown name, an option the class does not take, or a
                value its constructor refuses (the message names the member).
        """
        if identifier is None and self.default is not None:
            identifier = self.default
        if isinstance(identifier, self.base):
            if arguments:
                article = _article(self.kind).capitalize()
                raise ConfigError(
                    f"{article} {self.kind} instance is used as it is; it takes "
                    f"no arguments. Received: {sorted(arguments)}. Pass a name "
                    f"or a class instead.")
            return identifier
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, type) and issubclass(identifier, self.base):
            return self._create(identifier, identifier.__name__, arguments)
        if isinstance(identifier, str):
            name, options = parse_spec(identifier)
            cls = self.get_class(name)
            return self._create(cls, name, {**options, **arguments})
        raise ConfigError(f"Cannot interpret {_article(self.kind)} {self.kind} from "
                          f"{identifier!r}. "
                          f"Give a name from {self.names()}.")

    def _create(self, cls, label, arguments):
        allowed = options_of(cls)
        allowed += [o for o in self.common if o not in allowed]
        unknown = set(arguments) - set(allowed)
        if issubclass(cls, keras.layers.Layer):
            # Every Keras layer takes these through **kwargs.
            unknown -= LAYER_ARGUMENTS
        unknown = sorted(unknown)
        if unknown:
            listed = [o for o in allowed if o not in self.fixed]
            raise ConfigError(f"The {self.kind} {label!r} does not take option(s) "
                              f"{unknown}. Its options are {listed}.")
        try:
            return cls(**arguments)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{self.kind.capitalize()} {label!r}: {error}") from None

    # === Config ===

    def serialize(self, obj):
        """A config dict: Keras's `{"class_name", "config", ...}` for Keras
        objects, else `{"class_name": <registered name>, "config": get_config()}`.
        """
        if self.keras_serializable:
            return keras.saving.serialize_keras_object(obj)
        return {"class_name": type(obj).registered_name, "config": obj.get_config()}

    def deserialize(self, config):
        """The instance `serialize` described.

        Raises:
            ConfigError: the dict is not a serialized member of this family, or
                its arguments are refused.
        """
        if not isinstance(config, dict) or "class_name" not in config:
            raise ConfigError(f"A serialized {self.kind} is a dict with "
                              f"'class_name' and 'config'. Received: {config!r}")
        name = config["class_name"]
        # Keras writes `module` and `registered_name`; a dict written by hand
        # (`{class_name: pcgrad, config: {}}` in a run config) names the member.
        written_by_keras = "module" in config or "registered_name" in config
        if not self.keras_serializable or (name in self and not written_by_keras):
            cls = self.get_class(name)
            try:
                return cls.from_config(dict(config.get("config") or {}))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{self.kind.capitalize()} {name!r}: "
                                  f"{error}") from None
        try:
            obj = keras.saving.deserialize_keras_object(config)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"Cannot read {_article(self.kind)} {self.kind} "
                              f"from {config!r} ({error}). Give a name from "
                              f"{self.names()}, or a dict that `serialize` "
                              f"wrote.") from None
        if not isinstance(obj, self.base):
            raise ConfigError(f"{name!r} is not {_article(self.kind)} "
                              f"{self.kind}.")
        return obj
