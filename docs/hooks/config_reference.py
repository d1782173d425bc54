"""MkDocs hook: writes `reference/config.md`, every key of the run config.

The page is generated at build time from the typed schema
(`kmtl.runs.config.RunConfig`: each field's type, default and `description`),
so the keys are declared once, in `kmtl/runs/config.py`. Keys that the schema
leaves to a plug-in are read from the plug-in itself: the task keys from
`kmtl.Task`'s arguments, `model.options` from each registered architecture's
constructor and `training.weighting`'s arguments from each registered
weighting's, with the meanings from their docstrings' `Args:`.

A key without a meaning is a build warning, so `mkdocs build --strict` fails
on it. kmtl is imported once per process: under `mkdocs serve`, restart the
server to see a changed description on this page (the API reference, read
from the source by griffe, updates on its own).
"""

import inspect
import logging
import os
import sys
import types
import typing

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The reference describes this checkout's kmtl, installed or not.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

import annotated_types  # noqa: E402
import griffe  # noqa: E402
from mkdocs.structure.files import File  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

PAGE = "reference/config.md"
SOURCE = "kmtl/runs/config.py"

# A key without a meaning is a warning, so `mkdocs build --strict` fails on it.
log = logging.getLogger("mkdocs.hooks.config_reference")
_undocumented = []


# === Values and types as a reader writes them in YAML ===


def _yaml(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _code(text):
    return f"`{text}`"


def _constraints(metadata):
    """The bounds in `metadata` (annotated_types items, or pydantic `Field`s
    holding them) in words: `>= 1`, `in [0, 1)`."""
    bounds = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            item = _merged(item.metadata)
        for attribute in ("ge", "gt", "le", "lt"):
            bound = getattr(item, attribute, None)
            if isinstance(item, (annotated_types.BaseMetadata, _Bounds)) and (
                    bound is not None):
                bounds[attribute] = bound
    low = [(k, v) for k, v in bounds.items() if k in ("ge", "gt")]
    high = [(k, v) for k, v in bounds.items() if k in ("le", "lt")]
    if low and high:
        (lk, lv), (hk, hv) = low[0], high[0]
        opening = "[" if lk == "ge" else "("
        closing = "]" if hk == "le" else ")"
        return [f"in {opening}{lv}, {hv}{closing}"]
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return [f"{signs[k]} {v}" for k, v in bounds.items()]


class _Bounds:
    def __init__(self, **bounds):
        self.__dict__.update(bounds)


def _merged(metadata):
    bounds = {}
    for item in metadata:
        for attribute in ("ge", "gt", "le", "lt"):
            if getattr(item, attribute, None) is not None:
                bounds[attribute] = getattr(item, attribute)
    return _Bounds(**bounds)


def _type(annotation):
    """`annotation` in words: `int >= 1`, `list of str`, `one of a, b`."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        words = _type(arguments[0])
        bounds = _constraints(arguments[1:])
        return " ".join([words, *bounds]) if bounds else words
    if origin is typing.Literal:
        return "one of " + ", ".join(_code(_yaml(a)) for a in arguments)
    if origin in (typing.Union, types.UnionType):
        words = [_type(a) for a in arguments if a is not type(None)]
        words = [w for w in words if w != "null"]
        if type(None) in arguments:
            words.append("null")
        return " or ".join(words)
    if origin is list:
        item = _type(arguments[0]).replace("mapping (a section)", "mappings")
        return f"list of ({item})" if " or " in item else f"list of {item}"
    if origin is dict:
        value = arguments[1]
        return ("mapping" if value is typing.Any
                else f"mapping of {_type(arguments[0])} to {_type(value)}")
    if annotation is typing.Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (a section)"
    if isinstance(annotation, type):
        return {"str": "string", "bool": "boolean", "float": "number",
                "int": "integer"}.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _field_type(field):
    words = _type(field.annotation)
    bounds = _constraints(field.metadata)
    return " ".join([words, *bounds]) if bounds else words


def _default(field):
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section defaults)"
        return _code(_yaml(value))
    if field.default is PydanticUndefined:
        return "required"
    return _code(_yaml(field.default))


def _cell(text):
    """`text` on one line, fit for a table cell: a `|` outside code spans is
    escaped (Python-Markdown's tables leave pipes inside code spans alone)."""
    parts = " ".join(str(text or "").split()).split("`")
    return "`".join(part if k % 2 else part.replace("|", "\\|")
                    for k, part in enumerate(parts))


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# === Sections of the schema ===


def _section_model(annotation):
    """The section class a field holds (directly, in a list or optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _section_model(argument)
        if found is not None:
            return found
    return None


def _sections(model, path):
    """`(path, model)` for `model` and each section below it, depth first."""
    found = [(path, model)]
    for name, field in model.model_fields.items():
        child = _section_model(field.annotation)
        if child is None:
            continue
        item = "[]" if typing.get_origin(field.annotation) is list or any(
            typing.get_origin(a) is list for a in typing.get_args(field.annotation)
        ) else ""
        found += _sections(child, f"{path}.{name}{item}" if path else name + item)
    return found


def _doc(cls):
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())


def _section_table(model, path):
    rows = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        child = _section_model(field.annotation)
        if child is not None:
            anchor = key.replace(".", "").replace("[]", "")
            summary = _doc(child).removeprefix(f"`{key}`: ")
            meaning = (field.description or summary) + f" ([keys](#{anchor}))"
            rows.append((_code(key), _field_type(field), _default(field), meaning))
        else:
            if not field.description:
                _undocumented.append(f"{SOURCE}: `{key}` has no description")
            rows.append((_code(key), _field_type(field), _default(field),
                         field.description))
    return _table(("key", "type", "default", "meaning"), rows)


# === Keys that plug-ins declare ===


def _arguments_doc(obj):
    """`{argument: meaning}` from the `Args:` of `obj`'s docstring; an entry
    that names several arguments (`a, b: ...`) gives each the same text."""
    text = inspect.getdoc(obj) or ""
    sections = griffe.parse_google(griffe.Docstring(text), warnings=False)
    meanings = {}
    for section in sections:
        if section.kind is not griffe.DocstringSectionKind.parameters:
            continue
        for parameter in section.value:
            for name in parameter.name.split(","):
                meanings[name.strip().lstrip("*")] = parameter.description
    return meanings


def _arguments_table(cls, names):
    # An argument a base class takes (a weighting's `log_loss`) is documented,
    # with its default, by the first class of the MRO that names it.
    meanings, parameters = {}, {}
    for klass in reversed(cls.__mro__):
        if klass is object or "__init__" not in vars(klass):
            continue
        meanings.update({**_arguments_doc(klass.__init__), **_arguments_doc(klass)})
        parameters.update(inspect.signature(klass.__init__).parameters)
    rows = []
    for name in names:
        parameter = parameters.get(name)
        default = ("" if parameter is None
                   or parameter.default is inspect.Parameter.empty
                   else _code(_yaml(parameter.default)))
        if not meanings.get(name):
            _undocumented.append(f"{cls.__module__}.{cls.__name__}: argument "
                                 f"`{name}` is not in its docstring's Args")
        rows.append((_code(name), default, meanings.get(name, "")))
    return _table(("argument", "default", "meaning"), rows)


def _qualified(cls):
    return f"{cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}"


def _task_keys():
    """The task keys besides `name` and `type`: `kmtl.Task`'s arguments (their
    defaults depend on the type and the data, so the meaning gives them)."""
    from kmtl.tasks import Task

    meanings = _arguments_doc(Task)
    names = [n for n in inspect.signature(Task.__init__).parameters
             if n not in ("self", "name", "type")]
    for name in names:
        if not meanings.get(name):
            _undocumented.append(f"kmtl.tasks.Task: argument `{name}` is not in "
                                 f"its docstring's Args")
    return _table(("key", "meaning"),
                  [(_code(f"tasks[].{n}"), meanings.get(n, "")) for n in names])


def _architecture_options():
    from kmtl.architectures import ARCHITECTURES

    parts = []
    for name in ARCHITECTURES.names():
        cls = ARCHITECTURES.get_class(name)
        parts.append(f"### `{name}`\n\n[`{_qualified(cls)}`][{_qualified(cls)}]: "
                     f"{_doc(cls)}\n\n"
                     + _arguments_table(cls, ARCHITECTURES.options(name)))
    return "\n\n".join(parts)


def _aliases(registry):
    """`"`ew` (`static`), `uw` (`uncertainty`)"`: the names that are not
    canonical, each with its canonical name."""
    canonical = registry.names()
    return ", ".join(f"`{name}` (`{registry.get_class(name).registered_name}`)"
                     for name in registry.list() if name not in canonical)


def _weighting_arguments():
    from kmtl.weighting import WEIGHTINGS

    parts = [f"Aliases: {_aliases(WEIGHTINGS)}."] if _aliases(WEIGHTINGS) else []
    for name in WEIGHTINGS.names():
        cls = WEIGHTINGS.get_class(name)
        options = WEIGHTINGS.options(name)
        body = (_arguments_table(cls, options) if options
                else "It takes no arguments.")
        parts.append(f"### `{name}`\n\n[`{_qualified(cls)}`][{_qualified(cls)}]: "
                     f"{_doc(cls)}\n\n{body}")
    return "\n\n".join(parts)


# === The page ===


def config_reference():
    """The Markdown text of the config reference."""
    from kmtl.runs.config import RunConfig

    parts = [
        "# Config reference: every key",
        "Generated when the site is built, from the typed schema "
        f"[`RunConfig`][kmtl.runs.RunConfig] (`{SOURCE}`): each key's type, "
        "default and meaning. [The run config](../config.md) explains how the "
        "keys work together. `kmtl config-schema` prints the same schema as "
        "JSON Schema for editors. Only `tasks` and a data source (`data.train`, "
        "`data.task_tables` or `data.dataset`) are required.",
    ]
    for path, model in _sections(RunConfig, ""):
        title = path or "Top level"
        heading = f"`{title}`" if path else title
        parts.append(f"## {heading}\n\n{_doc(model)}")
        parts.append(_section_table(model, path))
        if path == "tasks[]":
            parts.append(
                "The other keys of a task are the arguments of "
                "[`kmtl.Task`][kmtl.tasks.Task], checked by `kmtl.tasks.get`:\n\n"
                + _task_keys())
    parts.append(
        "## `model.options`\n\nThe architecture's own arguments, by "
        "`model.architecture`; an argument it does not take is an error that "
        "lists the ones it takes.\n\n" + _architecture_options())
    parts.append(
        "## `training.weighting`\n\nA registered name, or a spec string with "
        "arguments such as `cagrad(c=0.4)`; null is `static`. The same names "
        "and arguments serve `compare.variants[].weighting`.\n\n"
        + _weighting_arguments())
    return "\n\n".join(parts) + "\n"


def on_files(files, config):
    _undocumented.clear()
    files.append(File.generated(config, PAGE, content=config_reference()))
    for problem in _undocumented:
        log.warning(f"Config reference: {problem}.")
    return files
