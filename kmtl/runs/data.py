"""Data preparation of a run: load the config's data, split it, record the split,
fit the tasks and the features on the training split.

With `data.streaming` the files are read in chunks instead
(`kmtl.data.streaming`): the tasks and features are fitted on a uniform
sample of the training rows, the splits are `StreamedSplit`s (where the
in-memory path has DataFrames) and their datasets read the files every epoch.
Its split record holds the rule that chose the held-out rows (a hash of the
row number) and the files' sizes instead of row positions and content hashes.

A split is recorded so that a run can be evaluated on exactly its own held-out
rows later (`kmtl evaluate RUN_DIR`, through `kmtl.runs.run_dir.RunDir`): a
split cut from a table is stored as the row positions of its rows in that
table, plus a content hash of the table; a split read from its own file (or
given by a data set's own protocol) is stored as a content hash of its rows.
"""

import dataclasses
import hashlib
import json
import os
import warnings

import numpy as np
import pandas as pd

from kmtl import datasets
from kmtl import tasks as tasks_module
from kmtl.data import SplitRule
from kmtl.data import StreamedSplit
from kmtl.data import TableSource
from kmtl.data import check_splits
from kmtl.data import combine_task_tables
from kmtl.data import fit_sample
from kmtl.data import handle_non_finite
from kmtl.data import make_dataset
from kmtl.data import read_table
from kmtl.data import split_frame
from kmtl.data import stream_dataset
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import fit_features
from kmtl.features import resolve_features
from kmtl.runs.config import as_run_config

SPLITS = ("train", "validation", "test")
"""The names of the splits, in order."""
_ROW = "__kmtl_row__"

__all__ = [
    "SPLITS",
    "PreparedData",
    "build_tasks",
    "content_hash",
    "load_splits",
    "load_stored_splits",
    "prepare",
    "prepare_data",
    "split_data",
    "split_datasets",
    "training_table",
]


def _path(path, data_dir):
    if path is None or os.path.isabs(path) or data_dir is None:
        return path
    return os.path.join(data_dir, path)


def content_hash(frame):
    """A SHA-256 hex digest of a DataFrame's column names and values (not its
    index): equal for equal tables, whatever file they were read from."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def build_tasks(config):
    """Fresh (unfitted) tasks from the config's `tasks` list.

    Raises:
        ConfigError: a bad task mapping or `derived_from` (before data is read).
    """
    config = as_run_config(config)
    tasks = [tasks_module.get(task.model_dump()) for task in config.tasks]
    tasks_module.derivation_order(tasks)
    return tasks


def _load(config, data_dir):
    """`(table, own)`: the table held-out rows are cut from (None for a data set
    with its own splits) and `{split: frame}` of the splits that come whole."""
    data = config.data
    options = data.read_options
    own = {}
    if data.dataset is not None:
        dataset = datasets.get(data.dataset)
        loaded = dataset.load(data_dir)
        if dataset.has_splits:
            return None, dict(zip(SPLITS, loaded))
        frame = loaded
    elif data.task_tables:
        tables = {name: read_table(_path(path, data_dir), **options)
                  for name, path in data.task_tables.items()}
        frame = combine_task_tables(tables, label_column=data.label_column,
                                    key=data.key)
    else:
        frame = read_table(_path(data.train, data_dir), **options)
    for split in ("validation", "test"):
        path = getattr(data, split)
        if path:
            own[split] = read_table(_path(path, data_dir), **options)
    return frame, own


def training_table(config, data_dir=None):
    """The table the config's training rows come from, whole: `data.train`,
    the combined `data.task_tables`, or a data set (its training split when
    it has its own splits). Held-out files (`data.validation`, `data.test`)
    are not part of it.

    Returns:
        `(frame, path)`: the DataFrame, and the path of `data.train` (joined
        with `data_dir` as it was read) or None when the table does not come
        from one file.

    Raises:
        DataError: a file is missing, unreadable or empty.
    """
    config = as_run_config(config)
    frame, own = _load(config, data_dir)
    if frame is None:
        return own["train"], None
    path = None
    if config.data.dataset is None and not config.data.task_tables:
        path = _path(config.data.train, data_dir)
    return frame, path


def split_data(config, data_dir=None, tasks=None):
    """The train, validation and test DataFrames the config describes, and the
    record of the split.

    Files named in `data.validation` / `data.test` are used as they are; a split
    without a file is cut from the training table with `data.split`. A data set
    with its own splits (`has_splits`, Census-Income) follows its protocol.

    Returns:
        `((train, validation, test), record)`. `record` maps each split to
        `{"rows": n, "indices": [...]}` (row positions in the training table)
        or `{"rows": n, "sha256": ...}` (a split that came whole), and
        `"source"` to `{"rows": n, "sha256": ...}` of the training table when
        rows were cut from it.

    Raises:
        DataError: a file is missing, unreadable or empty, or a task's columns
            are absent.
    """
    config = as_run_config(config)
    tasks = tasks if tasks is not None else build_tasks(config)
    frame, own = _load(config, data_dir)
    if frame is None:
        record = {split: {"rows": len(own[split]), "sha256": content_hash(own[split])}
                  for split in SPLITS}
        return tuple(own[split] for split in SPLITS), record
    for task in tasks:
        task.check_columns(frame, "the training data")
    record = {split: {"rows": len(part), "sha256": content_hash(part)}
              for split, part in own.items()}
    if len(own) == 2:
        record["train"] = {"rows": len(frame), "sha256": content_hash(frame)}
        return (frame, own["validation"], own["test"]), record
    split = config.data.split
    record["source"] = {"rows": len(frame), "sha256": content_hash(frame)}
    row = _ROW
    while row in frame.columns:  # a table may hold a column of that name
        row += "_"
    numbered = frame.assign(**{row: np.arange(len(frame))})
    parts = split_frame(numbered, tasks, split.method,
                        0.0 if "validation" in own else split.validation,
                        0.0 if "test" in own else split.test, split.seed,
                        order_by=split.order_by, group_by=split.group_by)
    frames = []
    for name, part in zip(SPLITS, parts):
        if name in own:
            frames.append(own[name])
            continue
        record[name] = {"rows": len(part), "indices": part[row].tolist()}
        frames.append(part.drop(columns=row))
    return tuple(frames), record


def load_splits(config, data_dir=None, tasks=None):
    """The train, validation and test DataFrames the config describes (see
    `split_data`).

    Raises:
        DataError: a file is missing, unreadable or empty.
    """
    frames, _ = split_data(config, data_dir, tasks)
    return frames


def _changed(what, fix):
    return DataError(f"The {what} differs from the one the run was trained on (its "
                     f"content hash changed), so the stored split does not apply. "
                     f"{fix}")


def load_stored_splits(config, record, data_dir=None):
    """The train, validation and test DataFrames of a recorded split (from
    `split_data`): the same rows, from the same data, without splitting again.

    Raises:
        DataError: the data is missing or has changed since the split was
            recorded.
    """
    config = as_run_config(config)
    fix = ("Restore the data, or evaluate on a file: kmtl evaluate RUN_DIR DATA.")
    if "streaming" in record:
        return _stored_streamed_splits(config, record, data_dir, fix)
    frame, own = _load(config, data_dir)
    if "source" in record:
        if frame is None or content_hash(frame) != record["source"]["sha256"]:
            raise _changed("training table", fix)
    frames = []
    for split in SPLITS:
        entry = record[split]
        if "indices" in entry:
            frames.append(frame.iloc[entry["indices"]].reset_index(drop=True))
            continue
        part = own.get(split)
        if part is None and split == "train" and frame is not None:
            part = frame
        if part is None or content_hash(part) != entry["sha256"]:
            raise _changed(f"{split} data", fix)
        frames.append(part)
    return tuple(frames)


def prepare(config, train, tasks):
    """Fits the tasks and the features on the training split.

    Returns:
        The list of fitted features.
    """
    config = as_run_config(config)
    for task in tasks:
        task.fit(train)
    targets = {c for t in tasks for c in t.target_columns}
    section = config.features
    # The columns `kmtl consolidate` adds describe the labels: never features.
    exclude = set(section.exclude) | targets | set(
        tasks_module.consolidation_columns(tasks))
    if config.data.key:
        exclude.add(config.data.key)
    declared = set(section.numeric or ()) | set(section.categorical or ())
    group_by = config.data.split.group_by
    if group_by and group_by not in declared:
        # A group id (a user, a session) is unseen in held-out rows by design:
        # chosen automatically as a categorical, it would be all out-of-vocabulary.
        exclude.add(group_by)
    features = resolve_features(train, section.numeric, section.categorical, exclude,
                                text=section.text)
    fit_features(features, train, max_vocabulary=section.max_vocabulary,
                 min_frequency=section.min_frequency)
    encodings = dict(section.numeric_encoding)
    for feature in features:
        if feature.name in encodings:
            if feature.kind != "numeric":
                raise ConfigError(
                    f"features.numeric_encoding names {feature.name!r}, a "
                    f"{feature.kind} feature. Only numeric features take an "
                    f"encoding; remove it there.")
            feature.encoding = encodings.pop(feature.name)
    if encodings:
        raise ConfigError(
            f"features.numeric_encoding names {sorted(encodings)}, which are not "
            f"features. Features: {[f.name for f in features]}.")
    return features


def split_datasets(frames, features, tasks, batch_size):
    """`make_dataset` for each named non-empty frame (no shuffling; cached,
    since validation reads its split every epoch); `stream_dataset` for a
    `StreamedSplit` (read from its files at every pass).

    Converting every split up front finds bad labels or feature values before
    anything is trained or written."""
    datasets = {}
    for split, frame in frames.items():
        if frame is None or not len(frame):
            continue
        if isinstance(frame, StreamedSplit):
            datasets[split] = stream_dataset(frame, features, tasks, batch_size)
        else:
            datasets[split] = make_dataset(frame, features, tasks, batch_size,
                                           cache=True)
    return datasets


@dataclasses.dataclass
class PreparedData:
    """The data of a config, loaded, split and fitted once (see `prepare_data`).

    Attributes:
        tasks: list of fitted `kmtl.Task`.
        features: list of fitted `kmtl.features.Feature`.
        train, validation, test: the split DataFrames (validation and test may be
            None or empty); with `data.streaming`, `kmtl.data.StreamedSplit`s
            (`len()` their rows; validation and test may be None).
        batch_size: int, `training.batch_size`.
        held_out: `{split: tf.data.Dataset}` for the non-empty held-out splits,
            labelled for every task, unshuffled.
        split: the record of the split (see `split_data`).
    """

    tasks: list
    features: list
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    batch_size: int
    held_out: dict
    split: dict = dataclasses.field(default_factory=dict)

    def train_dataset(self, seed, first_epoch=0):
        """The training split, reshuffled every epoch in an order fixed by
        `seed` and the epoch number, which starts at `first_epoch` (a run
        resumed after `first_epoch` epochs). A `StreamedSplit` is read from
        its files, shuffled within its window (`stream_dataset`)."""
        if isinstance(self.train, StreamedSplit):
            return stream_dataset(self.train, self.features, self.tasks,
                                  self.batch_size, shuffle=True, seed=seed,
                                  first_epoch=first_epoch)
        return make_dataset(self.train, self.features, self.tasks, self.batch_size,
                            shuffle=True, seed=seed, first_epoch=first_epoch)


# A held-out split whose values of a feature are mostly unseen in training gets
# a warning: the model sees one out-of-vocabulary index for most of its rows.
UNSEEN_SHARE = 0.5


SPLIT_HINT = ("If it is an ID or free text, add it to features.exclude; if the "
              "split leaves categories out (ordered or group split), that may be "
              "intended.")
INPUT_HINT = ("Check the column's values and type: codes where training had "
              "names, or another spelling, all map to the unknown category.")


def warn_unseen(features, frames, hint=SPLIT_HINT):
    """Warns, naming the feature, the split and the share, for each feature
    whose non-missing values in a held-out frame are mostly (more than
    `UNSEEN_SHARE`) categories that training never saw.

    Args:
        features: fitted `kmtl.features.Feature`s.
        frames: `{split: DataFrame}` (a split name, or "input" for data to
            predict or evaluate).
        hint: str, the fix the warning suggests.

    Returns:
        `{(feature, split): share}` of the warnings given.
    """
    warned = {}
    for split, frame in frames.items():
        if frame is None or not len(frame):
            continue
        for feature in features:
            share = feature.unseen_share(frame)
            if share is not None and share > UNSEEN_SHARE:
                warned[(feature.name, split)] = share
                warnings.warn(
                    f"Feature {feature.name!r}: {share:.0%} of its {split} values "
                    f"never occur in the training split, so the model sees them "
                    f"as one unknown category. {hint}", UserWarning, stacklevel=2)
    return warned


def _read_columns(config, frame, tasks):
    """The columns a model of the config reads: the task targets and the
    declared features, or every column not excluded when features are
    inferred."""
    targets = [c for task in tasks for c in task.target_columns]
    declared = config.features
    if declared.numeric is None and declared.categorical is None:
        exclude = set(declared.exclude) | set(
            tasks_module.consolidation_columns(tasks))
        return [c for c in frame.columns if c not in exclude] + targets
    groups = [g if isinstance(g, str) else g.get("columns", [])
              for g in declared.text or []]
    text = [c for g in groups for c in ([g] if isinstance(g, str) else g)]
    return [*(declared.numeric or []), *(declared.categorical or []), *text,
            *targets]


def _non_finite(config, frame, split, log, tasks):
    """`frame` with its non-finite values handled as `data.non_finite` says
    (in the columns a model reads: an inf in a column left out changes
    nothing), with one line through `log` naming what was found and done."""
    action = config.data.non_finite
    if frame is None or action == "error":
        return frame
    handled, counts = handle_non_finite(frame, action,
                                        _read_columns(config, frame, tasks))
    if counts:
        found = ", ".join(f"{column!r} {count:,}" for column, count in counts.items())
        done = (f"dropped {len(frame) - len(handled):,} row(s)" if action == "drop"
                else "made them missing")
        log(f"Non-finite values in the {split} split ({found}): {done} "
            f"(data.non_finite: {action}).")
    return handled.reset_index(drop=True) if action == "drop" else handled


def prepare_data(config, data_dir=None, log=print):
    """Loads and splits the config's data, fits its tasks and features on the
    training split, and converts the held-out splits (which finds bad labels or
    feature values before anything is trained).

    Args:
        config: a `RunConfig` or a config mapping.
        data_dir: folder of relative data paths and built-in data sets.
        log: callable taking one str, for the line about non-finite values
            handled by `data.non_finite`.

    Returns:
        A `PreparedData`.

    Raises:
        ConfigError: a bad config.
        DataError: data that does not fit the config.
    """
    config = as_run_config(config)
    tasks = build_tasks(config)
    if config.data.streaming is not None:
        return _prepare_streamed(config, data_dir, tasks, log)
    (train, validation, test), record = split_data(config, data_dir, tasks)
    train, validation, test = (
        _non_finite(config, frame, split, log, tasks)
        for split, frame in zip(SPLITS, (train, validation, test)))
    features = prepare(config, train, tasks)
    warn_unseen(features, {"validation": validation, "test": test})
    batch_size = config.training.batch_size
    held_out = split_datasets({"validation": validation, "test": test}, features,
                              tasks, batch_size)
    return PreparedData(tasks, features, train, validation, test, batch_size,
                        held_out, record)


# === Streaming (data.streaming) ===


def _streamed_sources(config, data_dir):
    """`(source, own, rule)`: the training table's `TableSource`, `{split:
    TableSource}` of the held-out splits with their own files, and the
    `SplitRule` that cuts the others from the training table (None when both
    have files)."""
    data = config.data
    chunk_rows = data.streaming.chunk_rows
    source = TableSource(_path(data.train, data_dir), data.read_options, chunk_rows)
    own = {split: TableSource(_path(getattr(data, split), data_dir),
                              data.read_options, chunk_rows)
           for split in ("validation", "test") if getattr(data, split)}
    split = data.split
    rule = None
    if len(own) < 2:
        rule = SplitRule(0.0 if "validation" in own else split.validation,
                         0.0 if "test" in own else split.test, split.seed,
                         by=split.group_by if split.method == "group" else None)
    return source, own, rule


def _streamed_splits(config, source, own, rule, rows, sample=None):
    """`{split: StreamedSplit or None}` for the sources, with `rows` per split."""
    data = config.data
    splits = {"train": StreamedSplit(
        source, "train", rule, rows["train"], data.non_finite, fitted_on=sample,
        shuffle_buffer=data.streaming.shuffle_buffer)}
    for split in ("validation", "test"):
        if split in own:
            splits[split] = StreamedSplit(own[split], split, None, rows[split],
                                          data.non_finite)
        elif rows[split]:
            splits[split] = StreamedSplit(source, split, rule, rows[split],
                                          data.non_finite)
        else:
            splits[split] = None
    return splits


def _streamed_record(path, source, own, rule, splits, total):
    """The split record of a streamed run (see `split_data` for the in-memory
    one): the rule, the files' names and sizes, and the rows of each split."""
    # The path as the config gives it, so that another --data-dir holding
    # the same files resumes and evaluates the run.
    record = {"streaming": None if rule is None else rule.describe(),
              "source": {**source.describe(), "path": path, "rows": total}}
    for name, split in splits.items():
        entry = {"rows": 0 if split is None else len(split)}
        if name in own:
            entry["source"] = own[name].describe()
        record[name] = entry
    return record


def _stored_streamed_splits(config, record, data_dir, fix):
    """The held-out `StreamedSplit`s of a recorded streamed split (see
    `load_stored_splits`): the same rule on the same files (checked by name
    and size)."""
    if config.data.streaming is None:
        raise ConfigError("The run's split.json records a streamed split, but its "
                          "config has data.streaming: null. Restore the run's "
                          "config.yaml.")
    source, own, rule = _streamed_sources(config, data_dir)
    if source.describe()["files"] != record["source"]["files"]:
        raise _changed("training table", fix)
    for split, table in own.items():
        if table.describe()["files"] != record[split].get("source", {}).get("files"):
            raise _changed(f"{split} data", fix)
    rows = {split: record[split]["rows"] for split in SPLITS}
    splits = _streamed_splits(config, source, own, rule, rows)
    return splits["train"], splits["validation"], splits["test"]


def _prepare_streamed(config, data_dir, tasks, log):
    """`prepare_data` with `data.streaming`: fit on a sample, stream the splits."""
    data = config.data
    streaming = data.streaming
    source, own, rule = _streamed_sources(config, data_dir)
    for task in tasks:
        task.check_columns(pd.DataFrame(columns=source.columns), repr(source.path))
    exclude = set(config.features.exclude) - {rule.by if rule else None}
    if rule is not None and rule.by is not None:
        source.check_columns([rule.by], "data.split.group_by column")
    columns = [c for c in source.columns if c not in exclude]
    sample, counts = fit_sample(source, streaming.fit_rows, seed=data.split.seed,
                                rule=rule, columns=columns)
    if data.non_finite != "error":
        sample, _ = handle_non_finite(sample, data.non_finite)
        sample = sample.reset_index(drop=True)
    features = prepare(config, sample, tasks)
    total = sum(counts.values())
    for split, table in own.items():
        counts[split] = table.dataset.count_rows()
    splits = _streamed_splits(config, source, own, rule, counts, sample)
    if streaming.validate_first:
        found = check_splits(splits, features, tasks)
        for split, columns_found in found.items():
            listed = ", ".join(f"{c!r} {n:,}" for c, n in columns_found.items())
            done = "dropped their rows" if data.non_finite == "drop" else (
                "made them missing")
            log(f"Non-finite values in the {split} split ({listed}): {done} "
                f"(data.non_finite: {data.non_finite}).")
    if not len(splits["train"]):
        raise DataError(f"No training rows are left in {source.path!r} "
                        f"(data.non_finite: {data.non_finite}).")
    held_out = ""
    if rule is not None:
        key = "row number" if rule.by is None else f"{rule.by!r} value"
        held_out = f"; held-out rows chosen by a hash of the {key}"
    log(f"Streaming {source.path!r} in chunks of {streaming.chunk_rows:,} rows: "
        f"{total:,} rows; tasks and features fitted on a sample of "
        f"{len(sample):,} training rows{held_out}.")
    batch_size = config.training.batch_size
    held_out = split_datasets({"validation": splits["validation"],
                               "test": splits["test"]}, features, tasks, batch_size)
    record = _streamed_record(data.train, source, own, rule, splits, total)
    return PreparedData(tasks, features, splits["train"], splits["validation"],
                        splits["test"], batch_size, held_out, record)
