"""The YAML run configuration, typed: one pydantic model per section.

Every key, its type, its default and its meaning (the field's `description`)
is declared once, here (`RunConfig` and its sections); the docs' config
reference is generated from them (`docs/hooks/config_reference.py`),
`docs/config.md` explains how they work together, and `kmtl config-schema`
prints the JSON Schema (`RunConfig.model_json_schema()`) for editors. Validation
happens at the edge: an error names the key path (`training.epochs`), the value
received and the fix; an unknown key lists the keys that are allowed. Code
below this layer trusts the types.

Entry points:

- `parse_config(raw, name=None, overrides=None)`: a mapping (as read from
  YAML) to a `RunConfig`; `overrides` (`{"training.epochs": 3}`, from the
  command line) go through the same validation.
- `read_config(path, overrides=None)`: the same from a YAML file.
- `resolve_config` / `load_config`: the resolved config as a plain dict (what
  a run directory's `config.yaml` holds).
- `as_run_config(config)`: a `RunConfig` or a mapping to a `RunConfig`; every
  function of `kmtl.runs` takes either.
- `size_defaults(rows)` / `with_size_defaults(config, rows)`: the keys whose
  default depends on the number of training rows (epochs, batch size,
  learning rate, weight decay, patience, the shared part's and the towers'
  sizes) are null until the data is split; a run fills them in from the
  training rows (`SIZE_TIERS`), and its `config.yaml` holds the values used.
"""

import copy
import math
import os
import warnings
from typing import Annotated
from typing import Any
from typing import Literal

import yaml
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_serializer
from pydantic import model_validator

from kmtl import datasets
from kmtl import features as features_module
from kmtl import tasks as tasks_module
from kmtl.architectures import ARCHITECTURES
from kmtl.data import COMPOSITIONS as SAMPLING_COMPOSITIONS
from kmtl.data import NON_FINITE_ACTIONS
from kmtl.data import SAMPLING_METHODS
from kmtl.data import SPLIT_METHODS
from kmtl.data.sampling import sampling_exponent
from kmtl.errors import ConfigError
from kmtl.features import CATEGORICAL_ENCODINGS
from kmtl.features import NUMERIC_ENCODINGS
from kmtl.measures.label_issues import FILTERS
from kmtl.models.multitask_model import GRADIENT_MODES
from kmtl.models.multitask_model import LOSS_COMBINATIONS
from kmtl.registry import parse_spec
from kmtl.runs.distribution import STRATEGIES
from kmtl.weighting.base import WEIGHTINGS

__all__ = [
    "AVERAGES",
    "DIRECTIONS",
    "SINGLE_TASK",
    "SIZE_KEYS",
    "SIZE_TIERS",
    "SPLIT_METHODS",
    "VERDICT_SPLITS",
    "BaselineConfig",
    "CONSOLIDATE_ACTIONS",
    "CONSOLIDATE_DETECTORS",
    "CompareConfig",
    "ConsolidateConfig",
    "DataConfig",
    "ExportConfig",
    "FeaturesConfig",
    "InterferenceConfig",
    "ModelConfig",
    "CurriculumConfig",
    "RunConfig",
    "SamplingConfig",
    "SelfPacedConfig",
    "StageConfig",
    "SplitConfig",
    "StreamingConfig",
    "TaskConfig",
    "TrainingConfig",
    "TUNE_ALGORITHMS",
    "TuneConfig",
    "VariantConfig",
    "as_run_config",
    "describe_size_defaults",
    "load_config",
    "parse_config",
    "parse_stored_config",
    "read_config",
    "resolve_config",
    "shared_units_key",
    "tune_space_paths",
    "size_defaults",
    "with_size_defaults",
]

AVERAGES = ("task", "flat")
VERDICT_SPLITS = ("validation", "test")
VERBOSITY = (0, 1, 2, "auto")
DIRECTIONS = {1: 1, -1: -1, "higher": 1, "lower": -1}
SINGLE_TASK = "single_task"
"""The name of the single-task baselines in a compare report; no variant may
take it."""
CONSOLIDATE_ACTIONS = ("report", "drop", "relabel", "fill")
"""What `kmtl consolidate` does with what it finds: `report` (flag only),
`drop` (mask the flagged labels), `relabel` (replace a flagged label by the
model's when it is confident), `fill` (pseudo-labels for missing labels)."""
CONSOLIDATE_DETECTORS = ("multi_task", "single_task")
"""The models whose out-of-fold predictions score the labels in `kmtl
consolidate`: the config's multi-task model, or one single-task model per
task (`kmtl compare`'s baselines)."""
TUNE_ALGORITHMS = ("random", "bayesian", "hyperband")
"""The search algorithms of `kmtl tune` (KerasTuner's oracles): `random`
(RandomSearch), `bayesian` (Gaussian-process BayesianOptimization),
`hyperband` (Li et al., JMLR 2018)."""
DELTA_M = "delta_m"
"""The `tune.objective` that scores a trial by Δm against single-task
baselines."""
YAML_BOOLEANS = ("true", "false", "yes", "no", "on", "off")
NAME_CHARACTERS = "letters, digits, '_', '.' or '-'"


# === Error messages ===


class _Invalid(ValueError):
    """A failed check. `template` may hold `{path}` (the key path, e.g.
    `training.epochs`), `{where}` (`in \\`path\\`` or `at the top level`) and
    `{value}` (the value received, as `repr`); they are filled in by
    `_message` once pydantic knows where the value sits."""

    def __init__(self, template):
        super().__init__(template)
        self.template = template


def _path(location):
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error, sources):
    """One pydantic error as a sentence naming the key path, the value and the
    fix."""
    path = _path(error["loc"])
    value = repr(error.get("input"))
    if path in sources:
        value += f" (from {sources[path]})"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Invalid):
        where = f"in `{path}`" if path else "at the top level"
        return (cause.template.replace("{path}", path).replace("{where}", where)
                .replace("{value}", value))
    if error["type"] == "missing":
        return f"Missing required config key `{path}`."
    return f"{path or 'The config'}: {error['msg']}. Received: {value}."


def _config_error(error, sources=None):
    messages = []
    for item in error.errors():
        message = _message(item, sources or {})
        if message not in messages:
            messages.append(message)
    return ConfigError("\n".join(messages))


# === Value checks (each a BeforeValidator: it sees the raw YAML value) ===


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(hint="", maximum=None):
    def check(value):
        if not _is_int(value) or value < 1:
            raise _Invalid("{path} must be a positive integer" + hint
                           + ". Received: {value}")
        if maximum is not None and value > maximum:
            raise _Invalid("{path} must be at most " + f"{maximum:,}" + hint
                           + ". Received: {value}")
        return value

    return check


MAX_SEED = 2**32 - 1
"""The largest seed: NumPy, Keras and scikit-learn take 32-bit seeds."""


def _seed(hint):
    def check(value):
        if not _is_int(value) or not 0 <= value <= MAX_SEED:
            raise _Invalid("{path} must be an integer from 0 to 2**32 - 1"
                           + hint + ". Received: {value}")
        return value

    return check


def _count(hint=" (0: off)"):
    def check(value):
        if not _is_int(value) or value < 0:
            raise _Invalid("{path} must be an integer >= 0" + hint
                           + ". Received: {value}")
        return value

    return check


def _boolean(value):
    if not isinstance(value, bool):
        quoted = isinstance(value, str) and value.lower() in YAML_BOOLEANS
        raise _Invalid("{path} must be true or false. Received: {value}"
                       + (" (a string: write it without quotes)" if quoted else ""))
    return value


def _real(value):
    # PyYAML reads `1e-3` (no dot) as a string: accept a string that is a number.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _positive_real(example):
    def check(value):
        value = _real(value)
        if not _is_real(value) or not 0 < value < math.inf:
            raise _Invalid("{path} must be a positive number, e.g. " + example
                           + ". Received: {value}")
        return value

    return check


def _non_negative_real(example):
    def check(value):
        value = _real(value)
        if not _is_real(value) or not 0 <= value < math.inf:
            raise _Invalid("{path} must be a number >= 0, e.g. " + example
                           + ". Received: {value}")
        return value

    return check


def _fraction(value):
    value = _real(value)
    if not _is_real(value) or not 0 <= value < 1:
        raise _Invalid("{path} must be a fraction in [0, 1), e.g. 0.1. "
                       "Received: {value}")
    return value


def _text(what):
    def check(value):
        if not isinstance(value, str) or not value:
            raise _Invalid("{path} must be " + what + ". Received: {value}")
        return value

    return check


def _choice(kind, options):
    def check(value):
        # 1.0 == 1 and True == 1 in Python: a choice must be the option itself.
        if not any(type(value) is type(o) and value == o for o in options):
            raise _Invalid("{path}: unknown " + kind + " {value}. Use one of "
                           + repr(tuple(options)) + ".")
        return value

    return check


def _mapping(what):
    def check(value):
        if not isinstance(value, dict):
            raise _Invalid("{path} must be a mapping of " + what
                           + ". Received: {value}")
        return value

    return check


def _encodings(value):
    if not isinstance(value, dict):
        raise _Invalid("{path} must be a mapping of numeric columns to "
                       "encodings, e.g. {age: periodic}. Received: {value}")
    for column, encoding in value.items():
        if encoding not in NUMERIC_ENCODINGS:
            raise _Invalid("{path}: unknown encoding " + repr(encoding)
                           + " for the column " + repr(column) + ". Use one of "
                           + repr(NUMERIC_ENCODINGS) + ".")
    return value


def _text_declarations(value):
    if not isinstance(value, list):
        raise _Invalid("{path} must be a list of text columns or groups, e.g. "
                       "[Review Text] or [{columns: [Title, Review Text], "
                       "ngrams: 2}]. Received: {value}")
    try:
        features_module.text_features(value)
    except ConfigError as error:
        raise _Invalid("{path}: " + str(error)) from None
    return value


def _names(what):
    def check(value):
        if not isinstance(value, list) or not all(
                isinstance(v, str) and v for v in value):
            raise _Invalid("{path} must be a list of " + what
                           + " (quote a name YAML reads as a number). "
                           "Received: {value}")
        return value

    return check


def _null_is(default, check):
    """`check`, with null read as `default()` (a YAML key left empty)."""
    return lambda value: check(default() if value is None else value)


def _optional(check):
    return lambda value: value if value is None else check(value)


def _key(annotation, check, **field):
    return Annotated[annotation, BeforeValidator(check), Field(**field)]


PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
PositiveReal = Annotated[float, Field(gt=0)]
NonNegativeReal = Annotated[float, Field(ge=0)]
Spec = str | dict[str, Any]  # a name or spec string, or a Keras-style config


# === Size defaults ===

SIZE_KEYS = ("epochs", "batch_size", "learning_rate", "weight_decay",
             "early_stopping_patience", "shared_units", "tower_units")
"""The keys `size_defaults` chooses: `training.<key>` for the first five,
`model.options.units` or `.expert_units` (`shared_units`) and
`model.tower_units`."""

SIZE_TIERS = (
    (2_000, {"epochs": 200, "batch_size": 32, "learning_rate": 0.003,
             "weight_decay": 1.0, "early_stopping_patience": 20,
             "shared_units": [64], "tower_units": [32]}),
    (20_000, {"epochs": 100, "batch_size": 64, "learning_rate": 0.003,
              "weight_decay": 1.0, "early_stopping_patience": 10,
              "shared_units": [64], "tower_units": [32]}),
    (100_000, {"epochs": 30, "batch_size": 256, "learning_rate": 0.001,
               "weight_decay": 0.0, "early_stopping_patience": 5,
               "shared_units": [256, 128], "tower_units": [64]}),
    (None, {"epochs": 10, "batch_size": 1024, "learning_rate": 0.001,
            "weight_decay": 0.0, "early_stopping_patience": 3,
            "shared_units": [256, 128], "tower_units": [64]}),
)
"""`(rows below, values)`, by number of training rows n: the first tier whose
bound is above n gives the values of the keys a config leaves unset (None: no
bound). Measured on Census-Income subsamples against logistic regression
(`benchmarks/small_data.py`); the largest tier is the census examples' own
setting."""


def size_defaults(rows):
    """The values of the size-dependent keys for `rows` training rows.

    The rule (`SIZE_TIERS`): a small table wants a small network, small
    batches, many epochs with a long patience (its validation loss is noisy)
    and weight decay; a large one the reverse.

    Args:
        rows: int, the number of training rows (after the split).

    Returns:
        dict with the keys of `SIZE_KEYS`.

    Examples:
        >>> size_defaults(1_000)["batch_size"]
        32
    """
    for bound, values in SIZE_TIERS:
        if bound is None or rows < bound:
            return copy.deepcopy(values)
    raise AssertionError("the last size tier has no bound")


def _size_rule(key):
    """`size_defaults`'s rule for one key, in words, for its description:
    `` `32` for n < 2,000; `64` for n < 20,000; ...`` (tiers with the same
    value are read as one)."""
    tiers = []
    for bound, values in SIZE_TIERS:
        value = str(values[key]).replace("'", "")
        if tiers and tiers[-1][1] == value:
            tiers.pop()
        tiers.append((bound, value))
    parts = [f"`{value}` for n < {bound:,}" for bound, value in tiers[:-1]]
    last = f" for n >= {tiers[-2][0]:,}" if len(tiers) > 1 else ""
    parts.append(f"`{tiers[-1][1]}`{last}")
    return "; ".join(parts) + " (`kmtl.runs.config.size_defaults`)"


# === Sections ===


class Section(BaseModel):
    """A config section: a mapping of known keys (null: every default).

    Sections are immutable: a changed config is a new, validated one
    (`RunConfig.replace`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, value):
        if value is None:
            return {}
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict):
            raise _Invalid("`{path}` must be a mapping of keys to values. "
                           "Received: {value}")
        unknown = sorted(set(value) - set(cls.model_fields), key=str)
        if unknown:
            raise _Invalid(f"Unknown config key(s) {unknown} {{where}}. Allowed "
                           f"keys: {sorted(cls.model_fields)}.")
        return value


class SplitConfig(Section):
    """`data.split`: how held-out rows are cut from the training table."""

    method: _key(Literal[SPLIT_METHODS], _choice("split method", SPLIT_METHODS),
                 description="`random`; `per_task`: stratified by which tasks "
                 "a row is labelled for; `stratified`: also by the label values "
                 "of binary and multiclass tasks; `ordered`: train, then "
                 "validation, then test in the order of `order_by` (or of the "
                 "table), for data ordered in time; `group`: rows with the same "
                 "`group_by` value stay on one side") = "stratified"
    order_by: _key(str | None, _optional(_text("a column name")),
                   description="with `method: ordered`: the column to sort by "
                   "(a time stamp or date); null keeps the table's row "
                   "order") = None
    group_by: _key(str | None, _optional(_text("a column name")),
                   description="with `method: group` (required there): the "
                   "column whose rows stay together (a user, a session); the "
                   "fractions are then fractions of the groups") = None
    validation: _key(Fraction, _fraction, description="fraction of rows for "
                     "validation, used only when `data.validation` is "
                     "absent") = 0.1
    test: _key(Fraction, _fraction, description="fraction of rows for test, "
               "used only when `data.test` is absent; `validation + test` must "
               "be < 1") = 0.1
    seed: _key(Count, _seed(" (the split's seed)"),
               description="the split's seed; `--seed` overrides it") = 0

    @model_validator(mode="after")
    def _check_sum(self):
        if self.order_by is not None and self.method != "ordered":
            raise _Invalid(f"{{path}}.order_by applies to method 'ordered' only. "
                           f"Received: method={self.method!r}, "
                           f"order_by={self.order_by!r}. Set method: ordered or "
                           f"drop order_by.")
        if (self.group_by is None) == (self.method == "group"):
            raise _Invalid(f"{{path}}.group_by names the column whose rows stay "
                           f"together, with method 'group' (and only then). "
                           f"Received: method={self.method!r}, "
                           f"group_by={self.group_by!r}.")
        if self.validation + self.test >= 1:
            raise _Invalid(f"{{path}}.validation + {{path}}.test must be < 1, so "
                           f"rows are left to train on. Received: "
                           f"{self.validation} + {self.test}.")
        return self


class StreamingConfig(Section):
    """`data.streaming`: train from files read in chunks, for tables larger
    than memory (`kmtl.data.streaming`)."""

    chunk_rows: _key(PositiveInt, _positive_int(" (rows per record batch)"),
                     description="rows read from the files at a time (a "
                     "`pyarrow` record batch); memory grows with it") = 65536
    fit_rows: _key(PositiveInt, _positive_int(" (rows of the fit sample)"),
                   description="the tasks and features are fitted on a "
                   "uniform sample of this many training rows (vocabularies, "
                   "means, quantiles, classes); a category outside the sample "
                   "is out-of-vocabulary") = 100_000
    shuffle_buffer: _key(PositiveInt, _positive_int(" (rows)"),
                         description="training rows are shuffled within a "
                         "window of about this many rows (and across "
                         "windows, half of it carried over); memory grows "
                         "with it") = 262_144
    validate_first: _key(bool, _boolean, description="a first full pass "
                         "encodes every row before anything is trained or "
                         "written, as the in-memory path does (a bad value is "
                         "a clear error naming the column, and the row counts "
                         "are exact); false skips it: a bad value then stops "
                         "training mid-epoch") = True


class DataConfig(Section):
    """`data`: where the rows come from (a built-in data set, files or one
    table per task) and how held-out rows are cut."""

    dataset: str | None = Field(None, description="a built-in data set instead "
                                "of files, one of "
                                "`kmtl.datasets.list_datasets()`: `penguins` "
                                "(embedded, 344 rows) or `census_income` (read "
                                "from `--data-dir` / `KMTL_DATA_DIR`; split by "
                                "the paper's protocol)")
    train: _key(str | None, _optional(_text("a file path")),
                description="the training table, CSV (optionally `.gz`) or "
                "Parquet (`.parquet`, `.pq`). A relative path is read from "
                "`--data-dir` when given, else from the working "
                "directory") = None
    validation: _key(str | None, _optional(_text("a file path")),
                     description="a validation table; when absent, cut from "
                     "`train` by `split`") = None
    test: _key(str | None, _optional(_text("a file path")),
               description="a test table; when absent, cut from `train` by "
               "`split`") = None
    read_options: _key(dict[str, Any], _null_is(dict, _mapping(
        "pandas reader arguments, e.g. {sep: ';'}")),
        description="passed to `pandas.read_csv` / `read_parquet` for every "
        "file: `header`, `names`, `sep`, `skipinitialspace`, `na_values`, "
        "...") = Field(
            default_factory=dict)
    task_tables: _key(dict[str, str] | None,
                      _optional(_mapping("task name -> file path")),
                      description="`{task: path}`: one table per task instead "
                      "of `train`; each holds the features and a "
                      "`label_column`. Rows are combined into one frame in which "
                      "every row is labelled for its own task only (the others "
                      "are masked)") = None
    label_column: _key(str, _text("a column name"), description="the label "
                       "column of each task table") = "label"
    key: _key(str | None, _optional(_text("a column name")),
              description="an id column: rows of different task tables with "
              "the same key become one example labelled for several "
              "tasks") = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    non_finite: _key(Literal[NON_FINITE_ACTIONS], _choice(
        "non-finite action", NON_FINITE_ACTIONS), description="numbers that are "
        "not finite float32s (inf, or beyond +-3.4e38) in a float column "
        "the model reads (a feature or a label) in any split: `error` (a "
        "clear error naming the column, before anything is written), `drop` "
        "(drop their rows) or `impute` (make them missing: a feature's "
        "training mean, a masked label); the counts are printed") = (
            "error")
    streaming: StreamingConfig | None = Field(
        None, description="read `train` (and `validation`, `test`) in chunks "
        "instead of whole, for tables larger than memory: CSV or Parquet files "
        "or folders of them (`kmtl.data.streaming`); held-out rows are chosen "
        "by a hash of the row number (of `split.group_by` with `method: "
        "group`). null: the whole table is read into memory. `{}`: on, with "
        "the defaults below")

    @model_validator(mode="after")
    def _check_streaming(self):
        if self.streaming is None:
            return self
        if self.dataset is not None or self.task_tables:
            given = "dataset" if self.dataset is not None else "task_tables"
            raise _Invalid(f"{{path}}.streaming reads data.train (and "
                           f"data.validation / data.test) files; it does not "
                           f"apply to data.{given}. Give data.train, or set "
                           f"streaming: null.")
        if self.split.method == "ordered":
            raise _Invalid("{path}.streaming chooses held-out rows by a hash of "
                           "the row number, so split.method 'ordered' cannot "
                           "be followed. Give data.validation and data.test "
                           "files, or use method random (or group).")
        return self

    @field_validator("dataset", mode="before")
    @classmethod
    def _check_dataset(cls, value):
        names = tuple(datasets.list_datasets())
        if value is not None and value not in names:
            raise _Invalid(f"{{path}}: unknown data set {{value}}. Use one of "
                           f"{names}, or give data.train.")
        return value


class FeaturesConfig(Section):
    """`features`: the input columns, one list per feature kind."""

    numeric: _key(list[str] | None, _optional(_names(
        "column names")), description="numeric columns (float32; a missing "
        "value is NaN, imputed by the training mean plus a 0/1 missing "
        "indicator inside the model; the indicator stays 0 for a feature that "
        "had no missing value in training). When neither `numeric` nor "
        "`categorical` is given, every column that is not a task target (nor "
        "excluded) is a feature: numeric if pandas reads it as numbers, "
        "categorical otherwise") = None
    categorical: _key(list[str] | None, _optional(_names(
        "column names")), description="categorical columns: integer columns "
        "stay integer codes (`IntegerLookup`), others are strings "
        "(`StringLookup`); a missing value is the category `\"\"`, an unseen "
        "value the out-of-vocabulary index") = None
    text: _key(list[str | dict[str, Any]] | None, _optional(_text_declarations),
               description="free-text columns (`kmtl.features.TextFeature`): "
               "each item a column name (its own vocabulary, default settings) "
               "or a mapping `{columns: [Title, Review Text], encoder: bag, "
               "ngrams: 2, ...}`: one vocabulary fitted on all the listed "
               "columns and one encoder reading each. Settings: `encoder` "
               "(`bag` TF-IDF bag of n-grams into a dense layer, `embedding` "
               "mean/max-pooled token embeddings, `transformer` KerasHub "
               "Transformer blocks), `split` (`whitespace` or `character`), "
               "`ngrams`, `standardize`, `max_tokens` (20000), "
               "`min_frequency` (texts an n-gram must be in, 2), `dim` (64), "
               "`dropout`, `sequence_length` (longest training text), "
               "`tf_idf`, `num_layers`, `num_heads`. A missing text is the "
               "empty string. Text columns are never inferred: declare them "
               "here") = None
    exclude: _key(list[str], _null_is(list, _names("column names")),
                  description="columns never used as features (ids, "
                  "leaks)") = Field(
                      default_factory=list)
    max_vocabulary: _key(PositiveInt | None, _optional(_positive_int()),
                         description="keep only the most frequent categories "
                         "per feature") = None
    min_frequency: _key(PositiveInt, _positive_int(), description="drop "
                        "categories seen fewer times in training (they become "
                        "out-of-vocabulary)") = 1
    numeric_encoding: _key(dict[str, Literal[NUMERIC_ENCODINGS]],
                           _null_is(dict, _encodings),
                           description="per numeric column, an encoding other "
                           "than `model.numeric_encoding`, e.g. `{age: "
                           "periodic}`") = Field(default_factory=dict)


class TaskConfig(BaseModel):
    """One item of `tasks`: a `kmtl.Task` config (`name` and `type` required;
    the other keys are checked by `kmtl.tasks.get`)."""

    model_config = ConfigDict(extra="allow")

    name: _key(str, _text("a task name (a Python identifier)"),
               description="the output name, label key and log prefix "
               "(`<name>_loss`, `<name>_auc`); a Python identifier")
    type: _key(str, _text("a task type such as 'binary'"),
               description="a registered task type: "
               + ", ".join(tasks_module.list_task_types()))

    @model_validator(mode="before")
    @classmethod
    def _check_mapping(cls, value):
        if hasattr(value, "get_config") and not isinstance(value, dict):
            value = value.get_config()
        if not isinstance(value, dict):
            raise _Invalid("`{path}` must be a task mapping with `name` and "
                           "`type`, e.g. {name: income, type: binary}. "
                           "Received: {value}")
        return value


def _units(value):
    if not isinstance(value, list) or not all(
            _is_int(u) and u >= 1 for u in value):
        raise _Invalid("{path} must be a list of positive integers, e.g. [64], "
                       "or [] for none. Received: {value}")
    return value


class ModelConfig(Section):
    """`model`: the architecture and the task towers."""

    architecture: _key(str, _text("an architecture name such as 'mmoe'"),
                       description="a registered architecture "
                       "(`kmtl.architectures.list_architectures()`; each "
                       "one's options are under `model.options` "
                       "below)") = "shared_bottom"
    options: _key(dict[str, Any], _mapping(
        "architecture arguments, e.g. {num_experts: 3}"),
        description="the architecture's own arguments, e.g. `{num_experts: "
        "4}` for `mmoe`. The shared part's hidden sizes (`units`, or "
        "`expert_units` for the expert architectures), when neither these "
        "options nor an architecture spec set them, are chosen from the number "
        "of training rows n: " + _size_rule("shared_units") + "; the "
        "other options take the architecture's defaults") = Field(
            default_factory=dict)
    tower_units: _key(list[PositiveInt] | None, _optional(_units),
                      description="hidden units of each task's tower; `[]` for "
                      "none. null: chosen from the number of training rows n: "
                      + _size_rule("tower_units")) = None
    tower_activation: _key(str, _text("a Keras activation name such as 'relu'"),
                           description="the towers' activation, a Keras "
                           "activation name") = "relu"
    tower_dropout: _key(Fraction, _fraction,
                        description="dropout rate in the towers") = 0.0
    categorical_encoding: _key(Literal[CATEGORICAL_ENCODINGS], _choice(
        "categorical encoding", CATEGORICAL_ENCODINGS),
        description="how categorical features enter the model: `embedding` "
        "(one trainable vector per category) or `one_hot`") = "embedding"
    embedding_dim: _key(PositiveInt | None, _optional(_positive_int()),
                        description="one size for every categorical embedding; "
                        "null: per feature, `min(16, ceil(6 * categories ** "
                        "0.25))`") = None
    numeric_encoding: _key(Literal[NUMERIC_ENCODINGS], _choice(
        "numeric encoding", NUMERIC_ENCODINGS),
        description="how numeric features enter the model: `plain` (the "
        "normalized value), `piecewise_linear` (quantile bins fitted on the "
        "training split) or `periodic` (trained sin/cos embeddings); Gorishniy "
        "et al., NeurIPS 2022. `features.numeric_encoding` sets it per "
        "column") = "plain"


def _optimizer(value):
    if not isinstance(value, (str, dict)) or not value:
        raise _Invalid("{path} must be a Keras optimizer name such as 'adam', or "
                       "an optimizer config mapping. Received: {value}")
    return value


def _weighting(value):
    if value is not None and not isinstance(value, (str, dict)):
        raise _Invalid("{path} must be a weighting name or spec such as 'pcgrad' "
                       "or 'cagrad(c=0.4)', or null for static weights. "
                       "Received: {value}")
    return value


def _sampling_end(value):
    value = _real(value)
    try:
        sampling_exponent(value)  # the one check of an end of the schedule
    except ConfigError:
        raise _Invalid("{path} must be 'uniform', 'proportional' or a "
                       "temperature (a number > 0, e.g. 2). Received: "
                       "{value}") from None
    return value


class SamplingConfig(Section):
    """`training.sampling`: which task each training row (joint) or batch
    (interleaved) is drawn for, for tasks of very different sizes
    (`kmtl.data.sampling`)."""

    composition: _key(Literal[SAMPLING_COMPOSITIONS], _choice(
        "composition", SAMPLING_COMPOSITIONS), description="`joint`: every "
        "batch mixes tasks, each row drawn for a task; `interleaved`: each "
        "batch holds one task, drawn per step. A row drawn for a task counts "
        "for that task only (its other labels are masked)") = "joint"
    method: _key(Literal[SAMPLING_METHODS], _choice(
        "sampling method", SAMPLING_METHODS), description="the task "
        "probabilities, `p_t` proportional to `n_t ** alpha` with `n_t` the "
        "task's labelled training rows: `uniform` (alpha 0), `proportional` "
        "(alpha 1), `temperature` (alpha `1 / temperature`; Arivazhagan et "
        "al. 2019), `anneal` (alpha moves linearly from `start` to `end` over "
        "`anneal_epochs`; Stickland and Murray, ICML 2019)") = "proportional"
    temperature: _key(PositiveReal, _positive_real("2"),
                      description="with `method: temperature`: T > 0; 1 is "
                      "proportional, large T nears uniform; 5 is Arivazhagan "
                      "et al.'s choice") = 5.0
    start: _key(str | float, _sampling_end, description="with `method: "
                "anneal`: where alpha starts, `uniform`, `proportional` or a "
                "temperature") = "proportional"
    end: _key(str | float, _sampling_end, description="with `method: anneal`: "
              "where alpha ends; the default, temperature 5 (alpha 0.2), is "
              "Stickland and Murray's schedule") = 5.0
    anneal_epochs: _key(PositiveInt | None, _optional(_positive_int()),
                        description="with `method: anneal`: epochs over which "
                        "alpha moves; null: `training.epochs`") = None
    steps_per_epoch: _key(PositiveInt | None, _optional(_positive_int()),
                          description="batches per epoch; null: the labelled "
                          "training rows of every task over "
                          "`training.batch_size`, rounded up") = None


def _stage_tasks(value):
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v for v in value):
        raise _Invalid("{path} must be a list of task names ([] in a later "
                       "stage: go on training with other frozen layers or "
                       "learning rate). Received: {value}")
    return value


class StageConfig(Section):
    """One item of `training.stages`."""

    tasks: _key(list[str], _stage_tasks, description="the tasks this stage "
                "adds to the model (new towers and heads on the shared part); "
                "the stage trains them with every task added before. `[]` (not "
                "in the first stage): the stage goes on training the same "
                "model, e.g. with the shared part unfrozen")
    epochs: _key(PositiveInt | None, _optional(_positive_int()),
                 description="at most this many epochs (early stopping "
                 "applies); null: `training.epochs`") = None
    frozen: _key(list[str], _null_is(list, _names("layer names")),
                 description="layers not trained in this stage: `shared` (the "
                 "feature encoders and the architecture layer), a task name "
                 "(its tower and head) or a layer name") = Field(
                     default_factory=list)
    learning_rate: _key(PositiveReal | None, _optional(_positive_real("0.001")),
                        description="the stage's learning rate (a new "
                        "optimizer); null: `training.learning_rate`") = None


def _curriculum_order(value):
    if value == "by_loss":
        return value
    if isinstance(value, list) and value and all(
            (isinstance(v, str) and v) or (isinstance(v, list) and v and all(
                isinstance(n, str) and n for n in v)) for v in value):
        return value
    raise _Invalid("{path} must be `by_loss` or a list of task names (or of "
                   "lists of names that join together), e.g. [never_married, "
                   "income]. Received: {value}")


class CurriculumConfig(Section):
    """`training.curriculum`: tasks join training over epochs
    (`kmtl.callbacks.TaskCurriculum`)."""

    order: _key(str | list[str | list[str]], _curriculum_order,
                description="the order tasks join in, every task once (a list "
                "of names, or of lists joining together); `by_loss`: by each "
                "task's validation loss when trained alone for "
                "`probe_epochs`, lowest first")
    interval: _key(PositiveInt, _positive_int(" (epochs between joins)"),
                   description="epochs between two tasks (or groups) "
                   "joining") = 1
    ramp_epochs: _key(PositiveInt, _positive_int(" (epochs)"),
                      description="epochs from joining to the full loss "
                      "weight, linearly; 1: full weight at once") = 1
    probe_epochs: _key(PositiveInt, _positive_int(" (epochs)"),
                       description="with `order: by_loss`: epochs of each "
                       "single-task probe") = 1


class SelfPacedConfig(Section):
    """`training.self_paced`: rows enter training from easy to hard
    (`kmtl.callbacks.SelfPacedLearning`)."""

    start_fraction: _key(float, _positive_real("0.5"), description="the share "
                         "of each batch's labelled rows (per task, lowest "
                         "loss first) trained on at epoch 0, in (0, 1]") = 0.5
    epochs: _key(PositiveInt, _positive_int(" (epochs)"), description="the "
                 "epoch from which every row trains; the share grows "
                 "linearly until then") = 5

    @model_validator(mode="after")
    def _check_fraction(self):
        if not 0 < self.start_fraction <= 1:
            raise _Invalid(f"{{path}}.start_fraction must be in (0, 1]. "
                           f"Received: {self.start_fraction!r}")
        return self


class TrainingConfig(Section):
    """`training`: the fit of one model."""

    epochs: _key(PositiveInt | None, _optional(_positive_int()),
                 description="at most this many epochs; --epochs overrides it. "
                 "null: chosen from the number of training rows n: "
                 + _size_rule("epochs")) = None
    batch_size: _key(PositiveInt | None, _optional(_positive_int(
                         maximum=2**31 - 1)),
                     description="rows per batch. null: chosen from the number "
                     "of training rows n: " + _size_rule("batch_size")) = None
    optimizer: _key(Spec, _optimizer,
                    description="a Keras optimizer name or config "
                    "(`keras.optimizers.get`)") = "adam"
    learning_rate: _key(PositiveReal | None, _optional(_positive_real("0.001")),
                        description="used with an optimizer name (`1e-3` is "
                        "read as a number too). null: chosen from the number of "
                        "training rows n: " + _size_rule("learning_rate")) = None
    weight_decay: _key(NonNegativeReal | None, _optional(_non_negative_real(
        "0.01")), description="decoupled weight decay, used with an optimizer "
        "name: its `weight_decay` argument, so `adam` with a positive value is "
        "AdamW (each step every weight `w` shrinks by `learning_rate * "
        "weight_decay * w`); 0: none. null: chosen from the number of training "
        "rows n: " + _size_rule("weight_decay")) = None
    loss_combination: _key(Literal[LOSS_COMBINATIONS], _choice(
        "loss combination", LOSS_COMBINATIONS), description="`sum`: "
        "`sum_t w_t L_t`; `mean`: `sum_t w_t L_t / sum_t w_t`") = "sum"
    weighting: _key(Spec | None, _weighting,
                    description="a loss-weighting or gradient method by name or "
                    "spec, e.g. `static(mean=True)` "
                    "(`kmtl.weighting.list_weightings()`; their arguments are "
                    "under `training.weighting` below); null: static weights "
                    "(each task's `loss_weight`); `--weighting` overrides "
                    "it") = None
    gradients: _key(Literal[GRADIENT_MODES], _choice(
        "gradient mode", GRADIENT_MODES), description="for a gradient-based "
        "`weighting`: take task gradients of the shared `parameters`, or of the "
        "shared `representation` (MGDA-UB style; cheaper; needs "
        "`shared_bottom`)") = "parameters"
    gradient_statistics_every: _key(Count, _null_is(int, _count()),
                                    description="every N epochs, log each task's "
                                    "gradient norm (`<task>_grad_norm`) and the "
                                    "pairwise gradient cosines "
                                    "(`grad_cosine_<a>_<b>`) of the shared "
                                    "parameters, on one validation batch "
                                    "(`kmtl.callbacks.GradientStatistics`); 0: "
                                    "off") = 0
    diagnostics_every: _key(Count | None, _optional(_count()),
                            description="every N epochs, write the "
                            "architecture's sharing matrices (MMoE/CGC/PLE "
                            "expert utilisation, cross-stitch units, "
                            "soft-sharing tower distances, MTAN attention) on "
                            "one validation batch to TensorBoard: scalars "
                            "`<matrix>/<row>/<column>` and a heatmap image per "
                            "matrix in the `diagnostics` run "
                            "(`kmtl.callbacks.SharingDiagnostics`). 0: off; "
                            "null: about ten times per run, every "
                            "`max(1, epochs // 10)` epochs, when the "
                            "architecture has diagnostics (each write costs "
                            "a forward pass and a heatmap per matrix); N > 0 "
                            "with an architecture without diagnostics "
                            "(`shared_bottom`) is an error") = None
    early_stopping_patience: _key(Count | None, _optional(_count(
        " (epochs without a lower validation loss before stopping)")),
        description="epochs without a lower validation loss before stopping; "
        "the best epoch's weights are restored. null: chosen from the number "
        "of training rows n: " + _size_rule("early_stopping_patience")) = None
    seed: _key(Count, _seed(" (the training seed)"), description="seeds Keras, "
               "NumPy and the batch order; `--seed` overrides it (and "
               "`data.split.seed`)") = 0
    jit_compile: _key(bool, _boolean, description="compile the train step with "
                      "XLA (`MultiTaskModel.compile(jit_compile=True)`; it "
                      "runs on the encoded blocks). Off by default: on the "
                      "census MMoE (CPU) it saved 17-21% of an epoch in two "
                      "runs and nothing in a third (docs/benchmarks.md); "
                      "`mgda` and `nash_mtl` refuse it (their solvers do not "
                      "compile in reasonable time)") = False
    mixed_precision: _key(bool, _boolean, description="train with the "
                          "`mixed_float16` policy (heads stay float32); a YAML "
                          "boolean, not a string") = False
    verbose: _key(Literal[VERBOSITY], _choice("verbosity", VERBOSITY),
                  description="Keras `fit` verbosity: 0 silent, 1 progress "
                  "bar, 2 one line per epoch, or `auto`") = 1
    sampling: SamplingConfig | None = Field(
        None, description="draw each training row (or batch) for one task "
        "with chosen task probabilities, for tasks of very different sizes "
        "(one table per task, `data.task_tables`). null: every row in every "
        "epoch, labelled for the tasks it has labels for. `{}`: on, with the "
        "defaults below")
    stages: list[StageConfig] | None = Field(
        None, description="progressive training: stage 1 trains its tasks, "
        "each later stage adds its tasks to the trained model "
        "(`MultiTaskModel.add_tasks`), optionally freezing layers, and trains "
        "again; every task in exactly one stage. The run directory's "
        "`metrics.json` holds each stage's metrics under `stages`. null: one "
        "stage with every task")
    curriculum: CurriculumConfig | None = Field(
        None, description="a task curriculum (`kmtl.callbacks.TaskCurriculum`); "
        "null: every task from the start")
    self_paced: SelfPacedConfig | None = Field(
        None, description="self-paced learning "
        "(`kmtl.callbacks.SelfPacedLearning`); null: off")
    strategy: _key(Literal[STRATEGIES], _choice("strategy", STRATEGIES),
                   description="the `tf.distribute` strategy "
                   "(docs/guides/distributed.md): `default` (one device), "
                   "`mirrored` (every GPU, else every logical CPU), "
                   "`multi_worker` or `parameter_server` (the cluster from "
                   "TF_CONFIG); `--strategy` overrides it") = "default"


class ExportConfig(Section):
    """`export`: the SavedModel written after training."""

    enabled: _key(bool, _boolean, description="export a SavedModel after "
                  "training") = True
    dir: _key(str | None, _optional(_text("a folder path")),
              description="the TF Serving base path; each export adds the "
              "next integer version. null: `saved_models/<name>`; "
              "`--export-dir` overrides it") = None


def _variant_name(value):
    if value is None:
        return value
    if (not isinstance(value, str) or not value
            or not all(c.isalnum() or c in "_.-" for c in value)):
        raise _Invalid("{path} must be a non-empty string of " + NAME_CHARACTERS
                       + " (it names plot files). Received: {value}")
    if value == SINGLE_TASK:
        raise _Invalid("{path}: " + repr(SINGLE_TASK) + " is reserved for the "
                       "single-task baselines; choose another name.")
    return value


def _variant_weighting(value):
    listed = value if isinstance(value, list) else [value]
    if not listed or not all(w is None or isinstance(w, (str, dict))
                             for w in listed):
        raise _Invalid("{path} must be a weighting name or spec such as 'pcgrad' "
                       "or 'cagrad(c=0.4)', or a non-empty list of them (one "
                       "variant each). Received: {value}")
    return value


class VariantConfig(Section):
    """One item of `compare.variants`. An absent key takes the config's value;
    only the keys given are kept (an explicit null `weighting` means static
    weights, an absent one `training.weighting`)."""

    name: _key(str | None, _variant_name, description="names the variant in "
               "the report and its plot files: letters, digits, `_`, `.`, `-`; "
               "`single_task` is reserved. null: "
               "`<architecture>_<weighting name>` (`static` without "
               "one)") = None
    architecture: _key(str | None, _optional(_text(
        "an architecture name such as 'mmoe'")), description="a registered "
        "architecture; null: `model.architecture`") = None
    options: _key(dict[str, Any] | None, _optional(_mapping(
        "architecture arguments, e.g. {num_experts: 3}")), description="the "
        "architecture's own arguments; null: `model.options` if the "
        "architecture is the model's, else `{}`") = None
    weighting: _key(Spec | list[Spec | None] | None, _variant_weighting,
                    description="a weighting name or spec, e.g. `ew`, "
                    "`uncertainty`, `pcgrad`, `cagrad(c=0.4)`; or a list of "
                    "them, a grid: one variant per weighting, named `<name or "
                    "architecture>_<weighting name and arguments>` (e.g. "
                    "`{architecture: mmoe, weighting: [ew, pcgrad, "
                    "\"cagrad(c=0.2)\"]}` gives `mmoe_ew`, `mmoe_pcgrad` and "
                    "`mmoe_cagrad_c0.2`). Absent: `training.weighting`; an "
                    "explicit null: static weights") = None
    gradients: _key(Literal[GRADIENT_MODES] | None, _optional(_choice(
        "gradient mode", GRADIENT_MODES)), description="`parameters` or "
        "`representation`; null: `training.gradients`") = None

    @model_serializer(mode="wrap")
    def _given_keys_only(self, handler):
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


class BaselineConfig(Section):
    """`compare.baseline`: the single-task models' architecture."""

    architecture: _key(str | None, _optional(_text(
        "an architecture name such as 'mlp'")), description="the single-task "
        "models' architecture, for an architecture that needs several tasks; "
        "null: `model.architecture`") = None
    options: _key(dict[str, Any] | None, _optional(_mapping(
        "architecture arguments, e.g. {units: [64]}")), description="the "
        "architecture's own arguments; null: as for a variant") = None


class InterferenceConfig(Section):
    """`compare.interference`: the task-interference probe."""

    enabled: _key(bool, _boolean, description="measure task interference "
                  "(gradient cosines and lookahead affinity, "
                  "`kmtl.callbacks.TaskInterference`) during each variant's "
                  "first seed, on probe batches drawn once (seed 0) from the "
                  "training split") = True
    batches: _key(PositiveInt, _positive_int(), description="probe batches of "
                  "training.batch_size rows") = 2
    every: _key(PositiveInt, _positive_int(), description="measure every N "
                "epochs") = 1


def _direction(value):
    if (isinstance(value, bool) or not isinstance(value, (int, float, str))
            or value not in DIRECTIONS):
        raise _Invalid("{path} must be 1 or 'higher' (higher is better), -1 or "
                       "'lower' (lower is better). Received: {value}")
    return DIRECTIONS[value]


def _metric_lists(value):
    if value is None:
        return value
    if not isinstance(value, dict) or not value:
        raise _Invalid("{path} must be null (every metric of every task) or a "
                       "mapping task -> list of metric names, e.g. "
                       "{income: [auc]}. Received: {value}")
    return value


def _metric_names(value):
    if not isinstance(value, list) or not value or not all(
            isinstance(n, str) for n in value):
        raise _Invalid("{path} must be a non-empty list of metric names, e.g. "
                       "[auc]. Received: {value}")
    return value


MetricNames = Annotated[list[str], BeforeValidator(_metric_names)]
Direction = Annotated[Literal[1, -1, "higher", "lower"], BeforeValidator(_direction)]


def _variant_list(value):
    if value is not None and (not isinstance(value, list) or not value):
        raise _Invalid("{path} must be a non-empty list of mappings with keys "
                       "from " + str(list(VariantConfig.model_fields)) + ", or "
                       "null for the config's own model. Received: {value}")
    return value


class CompareConfig(Section):
    """`compare`: single-task baselines against multi-task variants (read by
    `kmtl compare` only)."""

    variants: _key(list[VariantConfig] | None, _variant_list,
                   description="the multi-task variants, each a mapping of "
                   "the keys of `compare.variants[]`; null: one variant, the "
                   "config's own `model` and `training.weighting`") = None
    seeds: _key(PositiveInt, _positive_int(" (the number of seeds per model)"),
                description="how many seeds: `training.seed`, "
                "`training.seed + 1`, ...; `--seeds` overrides it") = 3
    metrics: _key(dict[str, MetricNames] | None, _metric_lists,
                  description="`{task: [metric, ...]}`: only these count in Δm "
                  "and in the tables; tasks not listed do not count (they "
                  "still train); `loss` may be listed. null: every metric of "
                  "every task (its `metrics`, not its loss)") = None
    directions: _key(dict[str, Direction], _mapping(
        "metric -> 1 (higher is better) or -1 (lower is better)"),
        description="`{metric: 1 or higher, -1 or lower}` for a metric whose "
        "direction kmtl does not know "
        "(`kmtl.measures.metric_direction`)") = Field(
            default_factory=dict)
    average: _key(Literal[AVERAGES], _choice("average", AVERAGES),
                  description="`task`: Δm is the mean over tasks of each "
                  "task's mean over its metrics (each task counts once); "
                  "`flat`: the mean over all (task, metric) pairs (LibMTL, "
                  "Nash-MTL)") = "task"
    split: _key(Literal[VERDICT_SPLITS], _choice("split", VERDICT_SPLITS),
                description="the split that is scored: `test` or "
                "`validation`. The validation split always drives early "
                "stopping and the curves") = "test"
    baseline: BaselineConfig | None = Field(
        None, description="`{architecture, options}` of the single-task "
        "models; null: the `model` section")
    interference: InterferenceConfig = Field(default_factory=InterferenceConfig)


def _thresholds(value):
    """A number in [0, 1], or a mapping of task names to such numbers."""
    def unit(number):
        number = _real(number)
        return number if _is_real(number) and 0 <= number <= 1 else None

    if isinstance(value, dict):
        for task, threshold in value.items():
            if unit(threshold) is None:
                raise _Invalid("{path}." + str(task) + " must be a number in "
                               "[0, 1], e.g. 0.9. Received: " + repr(threshold))
        return {task: unit(threshold) for task, threshold in value.items()}
    if unit(value) is None:
        raise _Invalid("{path} must be a number in [0, 1] or a mapping {task: "
                       "number}, e.g. 0.9 or {income: 0.95}. Received: {value}")
    return unit(value)


def _actions(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _Invalid("{path} must be a non-empty list of actions from "
                       + repr(CONSOLIDATE_ACTIONS) + ". Received: {value}")
    for i, action in enumerate(value):
        if action not in CONSOLIDATE_ACTIONS:
            raise _Invalid("{path}[" + str(i) + "]: unknown action "
                           + repr(action) + ". Use one of "
                           + repr(CONSOLIDATE_ACTIONS) + ".")
    return value


def _folds(value):
    if not _is_int(value) or value < 2:
        raise _Invalid("{path} must be an integer >= 2 (each row is scored by "
                       "a model trained on the other folds). Received: {value}")
    return value


class ConsolidateConfig(Section):
    """`consolidate`: cross-fitted models find label errors and fill missing
    labels (read by `kmtl consolidate` only; see `kmtl.runs.consolidation`)."""

    folds: _key(int, _folds, description="k of the k-fold cross-fitting: "
                "every row is scored by the model trained on the other k - 1 "
                "folds; the folds follow `data.split.method` and its "
                "`group_by`") = 5
    tasks: _key(list[str] | None, _optional(_names("task names")),
                description="the tasks whose labels are checked (every task "
                "still trains); null: every task with a target") = None
    detector: _key(Literal[CONSOLIDATE_DETECTORS], _choice(
        "detector", CONSOLIDATE_DETECTORS), description="`multi_task`: the "
        "config's model scores the labels; `single_task`: one model per task "
        "(`compare.baseline`), as `--single-task`") = "multi_task"
    compare_detectors: _key(bool, _boolean, description="also cross-fit the "
                            "other detector and report, per task, how the "
                            "two agree and how well each predicts the given "
                            "labels out of fold (`--compare-detectors`); it "
                            "does not act") = False
    actions: _key(list[Literal[CONSOLIDATE_ACTIONS]], _actions,
                  description="what is done with what is found, any of "
                  "`report` (flag only), `drop` (mask the flagged labels), "
                  "`relabel` (a flagged label becomes the model's when its "
                  "confidence reaches `relabel_threshold`; with `drop` too, "
                  "the other flagged labels are masked), `fill` "
                  "(pseudo-labels for missing labels)") = Field(
                      default_factory=lambda: ["report"])
    rounds: _key(PositiveInt, _positive_int(" (train, detect, act)"),
                 description="how many times train -> detect -> act runs, "
                 "each on the table the round before wrote") = 1
    filter_by: _key(Literal[FILTERS], _choice("cleanlab filter", FILTERS),
                    description="cleanlab's `find_label_issues` method for "
                    "classification tasks") = "prune_by_noise_rate"
    pseudo_label_threshold: _key(float | dict[str, float], _thresholds,
                                 description="the out-of-fold confidence a "
                                 "pseudo-label needs (binary: max(p, 1 - p); "
                                 "multiclass: the top probability); one "
                                 "number or `{task: number}` in [0, 1]") = 0.95
    relabel_threshold: _key(float | dict[str, float], _thresholds,
                            description="the confidence a flagged label's "
                            "replacement needs (`relabel`); one number or "
                            "`{task: number}` in [0, 1]") = 0.9
    residual_threshold: _key(PositiveReal, _positive_real("3.0"),
                             description="regression tasks: a label is "
                             "flagged when its out-of-fold residual is more "
                             "than this many robust standard deviations from "
                             "the median residual") = 3.0
    output: _key(str | None, _optional(_text("a file path")),
                 description="the consolidated Parquet table; null: "
                 "`<input>.consolidated.parquet` beside `data.train` (or in "
                 "the consolidate directory for `data.dataset` and "
                 "`data.task_tables`); never the input, never an existing "
                 "file") = None


# === tune ===

TUNED_TRAINING_KEYS = ("learning_rate", "weight_decay", "batch_size", "epochs",
                       "early_stopping_patience", "optimizer",
                       "loss_combination", "weighting", "gradients")
"""The `training` keys a search space may hold (`training.<key>`)."""
TUNED_MODEL_KEYS = ("tower_units", "tower_dropout", "tower_activation",
                    "embedding_dim", "categorical_encoding", "numeric_encoding")
"""The `model` keys a search space may hold (`model.<key>`); the
architecture's own arguments are `model.options.<option>`."""
RANGE_KEYS = ("min", "max", "log", "step")


def tune_space_paths():
    """The forms of the keys of `tune.space`, in words (for messages and the
    docs)."""
    return (["tasks.<task>.loss_weight"]
            + [f"training.{k}" for k in TUNED_TRAINING_KEYS]
            + ["training.weighting.<argument>"]
            + [f"model.{k}" for k in TUNED_MODEL_KEYS]
            + ["model.options.<option>"])


def _search_range(key, value):
    """A `{min, max, log?, step?}` mapping, checked; the message names
    `{path}.<key>`."""
    where = "{path}." + key
    unknown = sorted(set(value) - set(RANGE_KEYS), key=str)
    if unknown:
        raise _Invalid(where + ": unknown range key(s) " + repr(unknown)
                       + ". A range is {min, max, log, step}, e.g. {min: 1e-4, "
                       "max: 1e-2, log: true}.")
    if "min" not in value or "max" not in value:
        raise _Invalid(where + " needs both min and max, e.g. {min: 0.5, max: "
                       "2.0}. Received: " + repr(value))
    low, high = _real(value["min"]), _real(value["max"])
    if not (_is_real(low) and _is_real(high) and math.isfinite(low)
            and math.isfinite(high)):
        raise _Invalid(where + ": min and max must be finite numbers. Received: "
                       + repr(value))
    if low == high:
        raise _Invalid(where + ": the range is empty (min == max == "
                       + repr(low) + "). Give min < max, or set the value in "
                       "the config instead of searching it.")
    if low > high:
        raise _Invalid(where + ": the range is inverted (min " + repr(low)
                       + " > max " + repr(high) + "). Swap them.")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise _Invalid(where + ".log must be true or false. Received: "
                       + repr(log))
    if log and low <= 0:
        raise _Invalid(where + ": a log range needs min > 0. Received: min "
                       + repr(low) + ".")
    step = _real(value.get("step"))
    if step is not None and (not _is_real(step) or not step > 0):
        raise _Invalid(where + ".step must be a number > 0. Received: "
                       + repr(value.get("step")))
    if step is not None and log:
        raise _Invalid(where + ": give log or step, not both (KerasTuner "
                       "samples a log range without steps).")
    integer = (_is_int(low) and _is_int(high)
               and (step is None or float(step).is_integer()))
    parsed = {"min": low, "max": high, "log": log}
    if step is not None:
        parsed["step"] = int(step) if integer else float(step)
    return parsed


def _search_choices(key, value):
    where = "{path}." + key
    if not value:
        raise _Invalid(where + ": the list of choices is empty. Give at least "
                       "one value, e.g. [0.5, 1.0, 2.0].")
    seen = []
    for choice in value:
        if choice in seen:
            raise _Invalid(where + ": the choice " + repr(choice) + " is listed "
                           "twice. List each choice once.")
        seen.append(choice)
    return list(value)


def _space(value):
    """`tune.space`: `{dotted path: range or [choices]}`, each value's form
    checked (the paths are checked against the config with the other
    sections, `_check_tune`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("{path} must be a mapping of config key paths to ranges "
                       "or choices, e.g. {training.learning_rate: {min: 1e-4, "
                       "max: 1e-2, log: true}, model.options.num_experts: [2, 4, "
                       "8]}. Received: {value}")
    space = {}
    for key, entry in value.items():
        if not isinstance(key, str) or not key:
            raise _Invalid("{path}: the key " + repr(key) + " is not a config "
                           "key path such as training.learning_rate.")
        if isinstance(entry, dict):
            space[key] = _search_range(key, entry)
        elif isinstance(entry, list):
            space[key] = _search_choices(key, entry)
        else:
            raise _Invalid("{path}." + key + " must be a range {min, max, log?, "
                           "step?} or a list of choices. Received: "
                           + repr(entry) + " (a fixed value belongs in the "
                           "config itself).")
    return space


def _objective(value):
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and value and all(
            isinstance(k, str) and _is_real(_real(w)) for k, w in value.items()):
        return {k: float(_real(w)) for k, w in value.items()}
    raise _Invalid("{path} must be `delta_m`, one task's validation metric "
                   "as `<task>/<metric>` (e.g. income/auc), or a mapping of "
                   "such metrics to weights (their weighted sum), e.g. "
                   "{income/auc: 1.0, never_married/auc: 0.5}. Received: "
                   "{value}")


def _factor(value):
    if not _is_int(value) or value < 2:
        raise _Invalid("{path} must be an integer >= 2 (each bracket keeps "
                       "1 / factor of its trials). Received: {value}")
    return value


def _tune_direction(value):
    return value if value is None else _direction(value)


class TuneConfig(Section):
    """`tune`: a hyperparameter search over the config (read by `kmtl tune`
    only; see `kmtl.runs.tuning`)."""

    algorithm: _key(Literal[TUNE_ALGORITHMS], _choice("algorithm",
                    TUNE_ALGORITHMS), description="the KerasTuner oracle: "
                    "`random`, `bayesian` (Gaussian process) or `hyperband` "
                    "(each trial trains for the epochs its bracket gives, up "
                    "to `training.epochs`); `--algorithm` overrides "
                    "it") = "bayesian"
    trials: _key(PositiveInt, _positive_int(" (the number of trials)"),
                 description="the budget: at most this many trials (a "
                 "resumed search counts those already run); `--trials` "
                 "overrides it") = 20
    seed: _key(Count, _seed(" (the search's seed)"), description="the "
               "oracle's seed: which values are drawn. Every trial trains "
               "with `training.seed`") = 0
    executions_per_trial: _key(PositiveInt, _positive_int(" (models per "
                               "trial)"), description="models trained per "
                               "trial, with seeds `training.seed`, "
                               "`training.seed + 1`, ...; the objective is "
                               "their mean") = 1
    objective: _key(str | dict[str, float], _objective, description="what a "
                    "trial is scored by, on the validation split (the test "
                    "split is never used to choose): `delta_m` (Δm in %, "
                    "higher is better, against single-task baselines trained "
                    "once per search as `kmtl compare` trains them, with the "
                    "metrics, directions and average of the `compare` "
                    "section), one metric `<task>/<metric>` (e.g. "
                    "`income/auc`, `body_mass_g/rmse`, `income/loss`), or a "
                    "mapping `{<task>/<metric>: weight}`: the weighted "
                    "sum") = DELTA_M
    direction: _key(Literal[1, -1] | None, _tune_direction, description="1 or "
                    "`higher` (maximise the objective), -1 or `lower` "
                    "(minimise it). null: `higher` for `delta_m`, the "
                    "metric's own direction for one metric or a weighted sum "
                    "whose terms agree (`kmtl.measures.metric_direction`, "
                    "`compare.directions`)") = None
    space: _key(dict[str, Any], _space, description="the search space: "
                "`{key path: range or [choices]}`. Key paths: "
                "`tasks.<task>.loss_weight`, `training.<key>` (learning_rate, "
                "weight_decay, batch_size, epochs, early_stopping_patience, "
                "optimizer, loss_combination, weighting, gradients), "
                "`training.weighting.<argument>` (an argument of the "
                "weighting method, passed only to the methods that take it), "
                "`model.<key>` (tower_units, tower_dropout, tower_activation, "
                "embedding_dim, categorical_encoding, numeric_encoding) and "
                "`model.options.<option>` (the architecture's arguments, e.g. "
                "`expert_units`, `num_experts`). A range `{min, max, log: "
                "false, step: null}` (integers when min, max and step are) or "
                "a list of choices (`[[64], [128, 64]]` for sizes)") = Field(
                    default_factory=dict)
    baseline_seeds: _key(PositiveInt, _positive_int(" (seeds per baseline)"),
                         description="with `objective: delta_m`: seeds of "
                         "each single-task baseline (`training.seed`, ...); "
                         "Δm is taken against their mean") = 1
    hyperband_factor: _key(int, _factor, description="with `algorithm: "
                           "hyperband`: the reduction factor of its brackets "
                           "(KerasTuner's `factor`)") = 3


def _run_name(value):
    bad = not isinstance(value, str) or not value or value in (".", "..") or any(
        c in value for c in ("/", "\\", "\0", os.sep, os.altsep or "/"))
    if bad:
        raise _Invalid("{path} must be a folder name without '/' or '\\' (it "
                       "names the run directory <output-dir>/<name>-<time>/ and "
                       "the export folder saved_models/<name>/), e.g. "
                       "'census_income'. Received: {value}")
    return value


def _task_list(value):
    if not isinstance(value, list) or not value:
        raise _Invalid("`{path}` must be a non-empty list of task mappings "
                       "(name, type, target, ...). Received: {value}")
    return value


class RunConfig(Section):
    """A whole run configuration: one YAML file, one pydantic model per section.

    `parse_config` and `read_config` make one; sections are immutable
    (`replace` returns a validated copy). The keys, their types, defaults and
    meanings are listed in the config reference, generated from this class.

    Examples:
        >>> config = parse_config({
        ...     "data": {"dataset": "penguins"},
        ...     "tasks": [{"name": "species", "type": "multiclass"}]})
        >>> config.model.architecture
        'shared_bottom'
        >>> config.training.epochs is None  # chosen from the training rows
        True
    """

    name: _key(str, _run_name, description="names the run directory "
               "(`runs/<name>-<timestamp>/`), the Keras model and the default "
               "export folder (`saved_models/<name>/`); a folder name: no `/` "
               "or `\\`, not `.` or `..`. Default: the config file's name "
               "without suffix") = "kmtl"
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    tasks: _key(list[TaskConfig], _task_list, description="the tasks, a "
                "non-empty list of `kmtl.Task` configs (name, type, target, "
                "...)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    consolidate: ConsolidateConfig = Field(default_factory=ConsolidateConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="before")
    @classmethod
    def _top_level(cls, value):
        if not isinstance(value, (dict, BaseModel)):
            raise _Invalid("A config must be a YAML mapping. Received: {value}")
        if isinstance(value, dict) and "tasks" in value and value["tasks"] is None:
            value = {k: v for k, v in value.items() if k != "tasks"}
        return value

    @model_validator(mode="after")
    def _check_across_sections(self):
        data = self.data
        if data.dataset is None and data.train is None and not data.task_tables:
            raise _Invalid("Missing data: give `data.train` (a CSV/Parquet file), "
                           "`data.task_tables` (one file per task) or "
                           "`data.dataset`.")
        task_names = self.task_names
        _check_schedules(self, task_names)
        _check_consolidate(self, task_names)
        _check_tune(self, task_names)
        for task in (self.compare.metrics or {}):
            if task not in task_names:
                raise _Invalid(f"compare.metrics: unknown task {task!r}. Tasks are "
                               f"{task_names}.")
        return self

    @property
    def task_names(self):
        """The names of `tasks`, in order (list of str)."""
        return [task.name for task in self.tasks]

    def to_dict(self):
        """The resolved config as plain data (what `config.yaml` stores)."""
        return self.model_dump(mode="python")

    def replace(self, changes):
        """A validated copy with `{"section.key": value}` changes.

        Raises:
            ConfigError: a changed value fails validation.
        """
        return parse_config(self.to_dict(), overrides=changes)


def _check_consolidate(config, task_names):
    """Cross-checks `consolidate` against the tasks."""
    section = config.consolidate
    without = [t.name for t in config.tasks if (t.model_extra or {}).get(
        "target", t.name) == []]
    for task in section.tasks or ():
        if task not in task_names:
            raise _Invalid(f"consolidate.tasks: unknown task {task!r}. Tasks are "
                           f"{task_names}.")
        if task in without:
            raise _Invalid(f"consolidate.tasks: task {task!r} has no target "
                           f"(target: []), so it has no labels to check. Remove "
                           f"it from consolidate.tasks.")
    for key in ("pseudo_label_threshold", "relabel_threshold"):
        value = getattr(section, key)
        for task in (value if isinstance(value, dict) else ()):
            if task not in task_names:
                raise _Invalid(f"consolidate.{key}: unknown task {task!r}. Tasks "
                               f"are {task_names}.")


def _tune_weightings(config):
    """`[(name, options)]` of the weighting methods a search tries: the
    choices of `training.weighting` in `tune.space`, else the config's."""
    given = config.tune.space.get("training.weighting")
    listed = given if isinstance(given, list) else [config.training.weighting]
    methods = []
    for spec in listed:
        if isinstance(spec, dict):
            raise _Invalid(f"tune.space.training.weighting: give each method as "
                           f"a name or spec string such as 'cagrad(c=0.4)' to "
                           f"search it. Received: {spec!r}")
        name, options = parse_spec(spec or "static")
        try:
            name = WEIGHTINGS.get_class(name).registered_name
        except ConfigError as error:
            raise _Invalid(f"tune.space.training.weighting: {error}") from None
        methods.append((name, options))
    return methods


def _check_tune(config, task_names):
    """Cross-checks `tune.space` and `tune.objective` against the tasks, the
    architecture and the weighting methods."""
    section = config.tune
    for key, entry in section.space.items():
        where = f"tune.space.{key}"
        parts = key.split(".")
        if parts[0] == "tasks":
            if len(parts) != 3 or parts[2] != "loss_weight":
                raise _Invalid(f"{where}: a task's searched key is "
                               f"tasks.<task>.loss_weight. Received: {key!r}.")
            if parts[1] not in task_names:
                raise _Invalid(f"{where}: unknown task {parts[1]!r}. Tasks are "
                               f"{task_names}.")
        elif parts[:2] == ["training", "weighting"] and len(parts) == 3:
            methods = _tune_weightings(config)
            taking = [name for name, _ in methods
                      if parts[2] in WEIGHTINGS.options(name)]
            if not taking:
                arguments = {name: WEIGHTINGS.options(name) for name, _ in methods}
                raise _Invalid(f"{where}: no weighting method of the search "
                               f"takes the argument {parts[2]!r}. Their "
                               f"arguments: {arguments}. Search a method that "
                               f"takes it (training.weighting), or drop the "
                               f"key.")
            values = ([entry["min"], entry["max"]] if isinstance(entry, dict)
                      else entry)
            for name in taking:
                for value in values:
                    try:
                        WEIGHTINGS.get(name, **{parts[2]: value})
                    except ConfigError as error:
                        raise _Invalid(f"{where}: {error}") from None
        elif parts[0] == "training" and len(parts) == 2:
            if parts[1] not in TUNED_TRAINING_KEYS:
                raise _Invalid(f"{where}: training.{parts[1]} cannot be "
                               f"searched. Searchable keys: "
                               f"{tune_space_paths()}.")
            if parts[1] == "weighting":
                _tune_weightings(config)
        elif parts[:2] == ["model", "options"] and len(parts) == 3:
            try:
                name, _ = parse_spec(config.model.architecture)
                allowed = ARCHITECTURES.options(name)
            except ConfigError as error:
                raise _Invalid(f"model.architecture: {error}") from None
            if parts[2] not in allowed:
                raise _Invalid(f"{where}: the architecture {name!r} does not take "
                               f"the option {parts[2]!r}. Its options: "
                               f"{allowed}.")
        elif parts[0] == "model" and len(parts) == 2:
            if parts[1] not in TUNED_MODEL_KEYS:
                raise _Invalid(f"{where}: model.{parts[1]} cannot be searched. "
                               f"Searchable keys: {tune_space_paths()}.")
        else:
            raise _Invalid(f"{where}: unknown parameter {key!r}. Searchable "
                           f"keys: {tune_space_paths()}.")
        if isinstance(entry, dict) and (key.endswith("units")
                                        or key.endswith(".weighting")):
            raise _Invalid(f"{where} takes a list of choices, not a range, e.g. "
                           f"[[64], [128], [256, 128]] for sizes. Received: "
                           f"{entry!r}")
    objective = section.objective
    terms = [objective] if isinstance(objective, str) else list(objective)
    if objective != DELTA_M:
        for term in terms:
            task, _, metric = term.partition("/")
            if not metric or task not in task_names:
                raise _Invalid(f"tune.objective: {term!r} is not "
                               f"`<task>/<metric>` with one of the tasks "
                               f"{task_names} (or `delta_m`), e.g. "
                               f"{task_names[0]}/loss.")


def _check_schedules(config, task_names):
    """Cross-checks `training.sampling`, `stages`, `curriculum`, `self_paced`
    against the tasks and each other."""
    training = config.training
    listed = []
    if training.stages and not training.stages[0].tasks:
        raise _Invalid("training.stages[0].tasks must name the tasks the first "
                       "stage trains. Received: []")
    for index, stage in enumerate(training.stages or []):
        for task in stage.tasks:
            if task not in task_names:
                raise _Invalid(f"training.stages[{index}].tasks: unknown task "
                               f"{task!r}. Tasks are {task_names}.")
        listed.extend(stage.tasks)
    if training.stages:
        twice = sorted({t for t in listed if listed.count(t) > 1})
        left = [t for t in task_names if t not in listed]
        if twice or left:
            problem = (f"list {twice} in more than one stage" if twice
                       else f"leave out {left}")
            raise _Invalid(f"training.stages {problem}: every task is added in "
                           f"exactly one stage. Tasks are {task_names}.")
    curriculum = training.curriculum
    if curriculum is not None and curriculum.order != "by_loss":
        names = [n for item in curriculum.order
                 for n in ([item] if isinstance(item, str) else item)]
        unknown = [n for n in names if n not in task_names]
        missing = [n for n in task_names if n not in names]
        if unknown or missing or len(set(names)) != len(names):
            raise _Invalid(f"training.curriculum.order must list every task once. "
                           f"Received: {curriculum.order}; tasks are "
                           f"{task_names}.")
    together = [key for key in ("sampling", "curriculum", "self_paced")
                if getattr(training, key) is not None]
    if training.stages and together:
        raise _Invalid(f"training.stages cannot be combined with "
                       f"training.{together[0]} yet: give one of them.")
    if training.sampling is not None and config.data.streaming is not None:
        raise _Invalid("training.sampling draws rows of a table held in memory; "
                       "it does not apply to data.streaming. Set one of them to "
                       "null.")


# === Entry points ===


def _apply(raw, overrides):
    raw = copy.deepcopy(raw)
    for path, value in overrides.items():
        *sections, key = path.split(".")
        node = raw
        for section in sections:
            child = node.get(section)
            if not isinstance(child, dict):
                child = node[section] = {} if child is None else child
            node = child
        if isinstance(node, dict):
            node[key] = value
    return raw


def parse_config(raw, name=None, overrides=None, sources=None):
    """Validates a config mapping and fills in the defaults.

    Args:
        raw: dict, as read from YAML (or a `RunConfig`).
        name: the default of the `name` key (the config file's stem).
        overrides: `{"section.key": value}` set before validation, e.g. from
            the command line.
        sources: `{"section.key": "--flag"}`: where an override came from, named
            in its error.

    Returns:
        A `RunConfig`.

    Raises:
        ConfigError: unknown or missing keys, or bad values; one line per problem
            naming the key path, the value received and the fix.
    """
    if isinstance(raw, RunConfig):
        raw = raw.to_dict()
    if isinstance(raw, dict):
        raw = _apply(raw, overrides or {})
        if raw.get("name") is None:
            raw["name"] = name or "kmtl"
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise _config_error(error, sources) from None


def parse_stored_config(raw):
    """A run directory's stored config, read so that an older kmtl's run stays
    usable: a key that today's validation refuses (a loose value an earlier
    version accepted, such as `epochs: true`) falls back to its default, with
    a warning naming it. The model in the run directory does not depend on it.

    Raises:
        ConfigError: the config is invalid in a way defaults cannot repair (a
            missing task name, no data source).
    """
    try:
        return parse_config(raw)
    except ConfigError:
        if not isinstance(raw, dict):
            raise
    raw = copy.deepcopy(raw)
    dropped = []
    while True:
        try:
            config = RunConfig.model_validate(raw)
            break
        except ValidationError as error:
            removed = [loc for loc in (item["loc"] for item in error.errors())
                       if _delete_path(raw, loc)]
            if not removed:
                raise _config_error(error) from None
            dropped.extend(".".join(map(str, loc)) for loc in removed)
    warnings.warn(f"The stored config holds value(s) this kmtl refuses, read as "
                  f"their defaults: {dropped}.", stacklevel=2)
    return config


def _delete_path(mapping, loc):
    """Deletes `mapping[loc[0]][loc[1]]...`; False when it is not there."""
    *parents, last = loc
    for key in parents:
        if not isinstance(mapping, (dict, list)):
            return False
        try:
            mapping = mapping[key]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(mapping, dict) and last in mapping:
        del mapping[last]
        return True
    return False


def as_run_config(config):
    """`config` as a `RunConfig` (a mapping is validated).

    Raises:
        ConfigError: a mapping fails validation.
    """
    return config if isinstance(config, RunConfig) else parse_config(config)


def shared_units_key(architecture, options=None):
    """The option that sets the hidden sizes of an architecture's shared part
    (`units`, or `expert_units` for the expert architectures), or None when
    the architecture takes neither, or when the spec (`"mmoe(expert_units=[8])"`)
    or `options` already set it.

    Args:
        architecture: str, a registered name or spec.
        options: dict, the config's `model.options`.
    """
    try:
        name, given = parse_spec(architecture)
        allowed = ARCHITECTURES.options(name)
    except ConfigError:
        return None  # an unknown architecture is reported when it is built
    for key in ("expert_units", "units"):
        if key in allowed:
            return None if key in given or key in (options or {}) else key
    return None


def with_size_defaults(config, rows):
    """The config with the size-dependent keys it leaves unset (null) chosen
    for `rows` training rows (`size_defaults`). A key the config sets is kept.

    Args:
        config: a `RunConfig` or a config mapping.
        rows: int, the number of training rows (after the split).

    Returns:
        `(config, chosen)`: a `RunConfig` in which no size key is null, and
        `{"section.key": value}` of the keys chosen here, in `SIZE_KEYS`
        order (empty when the config set them all).

    Raises:
        ConfigError: a mapping fails validation.
    """
    config = as_run_config(config)
    values = size_defaults(rows)
    chosen = {}
    for key in SIZE_KEYS[:5]:
        if getattr(config.training, key) is None:
            chosen[f"training.{key}"] = values[key]
    model = config.model
    key = shared_units_key(model.architecture, model.options)
    if key is not None:
        chosen[f"model.options.{key}"] = values["shared_units"]
    if model.tower_units is None:
        chosen["model.tower_units"] = values["tower_units"]
    if not chosen:
        return config, chosen
    changes = {k: v for k, v in chosen.items() if not k.startswith("model.options")}
    if key is not None:
        changes["model.options"] = {**model.options, key: values["shared_units"]}
    return config.replace(changes), chosen


def describe_size_defaults(chosen, rows):
    """The line `kmtl train` and `kmtl compare` print: the keys chosen by
    `with_size_defaults` and their values.

    Examples:
        >>> describe_size_defaults({"training.batch_size": 32,
        ...                         "model.tower_units": [16]}, 1000)
        'Defaults for 1,000 training rows: batch_size 32, tower_units [16]'
    """
    values = ", ".join(f"{key.rsplit('.', 1)[-1]} {value}"
                       for key, value in chosen.items())
    return f"Defaults for {rows:,} training rows: {values}"


def resolve_config(raw, name=None):
    """Fills defaults into a config mapping and validates it (`parse_config`).
    The size keys stay null: a run chooses them from its training rows
    (`with_size_defaults`).

    Returns:
        The resolved config as a new plain dict (`RunConfig.to_dict()`).

    Raises:
        ConfigError: unknown or missing keys, or bad values.
    """
    return parse_config(raw, name).to_dict()


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path!r}.")
    with open(path) as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return {} if raw is None else raw


def read_config(path, overrides=None, sources=None):
    """Reads and validates a YAML config file (see `parse_config`); `name`
    defaults to the file's name without suffix.

    Args:
        path: str. The YAML file.
        overrides: `{"section.key": value}` set before validation, e.g. from
            the command line.
        sources: `{"section.key": "--flag"}`: where an override came from,
            named in its error.

    Returns:
        A `RunConfig`.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or fails validation.
    """
    stem = os.path.basename(path).split(".")[0]
    return parse_config(_read_yaml(path), name=stem, overrides=overrides,
                        sources=sources)


def load_config(path):
    """`read_config` as a plain dict (`RunConfig.to_dict()`).

    Args:
        path: str. The YAML file.

    Returns:
        dict: the resolved config, every default filled in but the size keys
        (null until the training rows are known, `with_size_defaults`).

    Raises:
        ConfigError: the file is missing, is not valid YAML, or fails validation.
    """
    return read_config(path).to_dict()
