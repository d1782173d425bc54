"""`consolidate`: cross-fitted models find label errors and fill missing labels.

Multi-task tables are stitched together from labels of different people and
times: some labels are wrong, many missing. A model that did not train on a
row is a witness of its labels. The procedure, on the config's training table
(`kmtl.runs.data.training_table`: `data.train`, the combined
`data.task_tables` or a data set's training split; held-out files are not
touched):

1. **Cross-fitting.** The table is cut into `consolidate.folds` folds by the
   config's split method and groups (`kmtl.data.fold_ids`). For each fold, a
   model is trained on the other folds as `kmtl train` trains it (the config's
   `training` section; a validation part is cut from those folds by
   `data.split` for early stopping; features fitted on them alone) and
   predicts the held-out fold. Every row's predictions therefore come from a
   model that never saw it (its fold is in the output's `kmtl__fold`). The
   models are the config's multi-task model (`detector: multi_task`) or one
   single-task model per checked task (`single_task`, `--single-task`: the
   baselines of `kmtl compare`). The tasks are fitted (classes, positive
   label, target scale) once on the whole table, so every fold's model has
   the same outputs.
2. **Detection** (`kmtl.measures.label_issues`): for each checked task,
   confident learning on the out-of-fold probabilities of the given labels
   (cleanlab), a residual rule for regression; each given label gets a flag
   and a label-quality score; every row gets the model's label and its
   confidence, from the probabilities corrected by the estimated noise
   matrix for binary and multiclass tasks (`noise_matrix`,
   `suggest_labels`).
3. **Actions** (`consolidate.actions`): `report` flags only; `relabel`
   replaces a flagged label by the model's when the model's confidence
   reaches `relabel_threshold` (classification tasks); `drop` masks the
   flagged labels that were not relabelled; `fill` gives a missing label the
   model's label when its confidence reaches `pseudo_label_threshold`
   (classification tasks). Relabelled and filled labels are marked
   `<task>__pseudo`: training weighs them by the task's
   `pseudo_label_weight`. Regression labels are flagged and dropped, never
   replaced: a regression prediction carries no confidence.
4. **Rounds** (`consolidate.rounds`): steps 1-3 run again on the table the
   round before produced, with the same folds; labels that are the model's
   (pseudo) train but are not scored again.

The output is a new Parquet table (never the input, never an existing file):
every row and column of the input, the acted-on labels, and per checked task
`<task>__label_issue` (flagged in any round), `<task>__label_quality` (the
last score of its given label), `<task>__pseudo` and `<task>__suggested`
(the model's label), plus `kmtl__fold`. A consolidate directory
`<output-dir>/<name>-consolidate-<timestamp>/` holds `report.json`,
`report.md` and plots (`kmtl.runs.consolidation_report`). Training on the
output needs no change to the config: those columns are never features.
"""

import copy
import dataclasses
import datetime
import os
import time

import keras
import numpy as np
import pandas as pd
from sklearn import metrics as sk_metrics

from kmtl._files import write_atomically
from kmtl.data import fold_ids
from kmtl.data import handle_non_finite
from kmtl.data import make_dataset
from kmtl.data import split_frame
from kmtl.data.io import PARQUET_SUFFIXES
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.measures.label_issues import encoded_labels
from kmtl.measures.label_issues import find_label_issues
from kmtl.measures.label_issues import label_sets
from kmtl.measures.label_issues import label_values
from kmtl.measures.label_issues import noise_matrix
from kmtl.measures.label_issues import suggest_labels
from kmtl.runs.comparison import baseline_config
from kmtl.runs.comparison import baseline_spec
from kmtl.runs.comparison import baseline_tasks
from kmtl.runs.comparison import with_shared_units
from kmtl.runs.config import as_run_config
from kmtl.runs.config import with_size_defaults
from kmtl.runs.consolidation_report import write_consolidation_report
from kmtl.runs.data import PreparedData
from kmtl.runs.data import build_tasks
from kmtl.runs.data import prepare
from kmtl.runs.data import split_datasets
from kmtl.runs.data import training_table
from kmtl.runs.run_dir import RunDir
from kmtl.runs.training import check_writable
from kmtl.runs.training import precision_policy
from kmtl.runs.training import run_model
from kmtl.tasks import FOLD_COLUMN
from kmtl.tasks import Task

__all__ = ["Consolidation", "consolidate", "cross_fit", "output_path"]

DEFAULT_VALIDATION = 0.1
"""The fraction of a fold's training rows held out for early stopping when
`data.split.validation` is 0."""
SUFFIX = ".consolidated"


@dataclasses.dataclass
class Consolidation:
    """What `consolidate` returns.

    Attributes:
        table: the consolidated DataFrame (as written to `output`).
        report: the report dict (as in report.json).
        directory: str, the consolidate directory.
        output: str, the path of the consolidated Parquet table.
        detections: `{detector: {task: DataFrame}}` of the last round (the
            first for the compared detector), one row per table row:
            `scored` (a given label that was scored), `label_issue`,
            `label_quality`, `suggested` (the model's encoded label: class
            index, 0/1 per label, or the prediction) and `confidence`.
    """

    table: pd.DataFrame
    report: dict
    directory: str
    output: str
    detections: dict


def output_path(config, input_path, directory=None):
    """Where the consolidated table goes: `consolidate.output`, else
    `<input stem>.consolidated.parquet` beside `input_path` (`-2`, `-3`, ...
    when taken), else `<directory>/<name>.consolidated.parquet`.

    Raises:
        ConfigError: `consolidate.output` is the input, exists already, or is
            not a Parquet path.
    """
    config = as_run_config(config)
    given = config.consolidate.output
    if given is not None:
        if not given.lower().endswith(PARQUET_SUFFIXES):
            raise ConfigError(f"consolidate.output: {given!r} is not a Parquet "
                              f"path; end it with .parquet.")
        if input_path is not None and os.path.abspath(given) == os.path.abspath(
                input_path):
            raise ConfigError(f"consolidate.output: {given!r} is the input table, "
                              f"which consolidate never overwrites. Choose another "
                              f"path.")
        if os.path.exists(given):
            raise ConfigError(f"consolidate.output: {given!r} exists already; "
                              f"consolidate never overwrites a file. Remove it or "
                              f"choose another path.")
        return given
    if input_path is None:
        return None if directory is None else os.path.join(
            directory, f"{config.name}{SUFFIX}.parquet")
    folder, name = os.path.split(input_path)
    stem = name
    for suffix in (".gz", ".bz2", ".zip", ".xz", ".zst", ".csv", ".tsv", ".txt",
                   ".parquet", ".pq"):
        if stem.lower().endswith(suffix):
            stem = stem[:-len(suffix)]
    for attempt in range(1, 1000):
        number = f"-{attempt}" if attempt > 1 else ""
        path = os.path.join(folder, f"{stem}{SUFFIX}{number}.parquet")
        if not os.path.exists(path):
            return path
    raise DataError(f"No free name for the consolidated table beside "
                    f"{input_path!r}; set consolidate.output.")


def _predict(model, frame, features, batch_size):
    predictions = model.predict(make_dataset(frame, features, None, batch_size),
                                verbose=0)
    return {name: np.asarray(value, dtype="float64")
            for name, value in predictions.items()}


def cross_fit(config, frame, tasks, folds, detector="multi_task", checked=None,
              log=print, label=""):
    """Out-of-fold predictions of every row for every task.

    Args:
        config: a `RunConfig` (or mapping).
        frame: the table (DataFrame).
        tasks: fitted `kmtl.Task`s (copied for each fold's model).
        folds: int `(rows,)`, each row's fold (`kmtl.data.fold_ids`).
        detector: `"multi_task"` (one model of the config per fold) or
            `"single_task"` (one model per task in `checked` per fold, built
            as `kmtl compare`'s baselines).
        checked: names of the tasks a single-task detector trains for
            (default: every task with a target).
        log: callable taking one str, one line per fold (the fold models
            train with `training.verbose: 0`).
        label: str, prefixed to the log lines.

    Returns:
        `{task: float64 (rows, units)}`; with `single_task`, the tasks in
        `checked` only.
    """
    config = as_run_config(config)
    split = config.data.split
    fraction = split.validation or DEFAULT_VALIDATION
    checked = checked or [t.name for t in tasks if t.has_labels]
    names = [t.name for t in tasks] if detector == "multi_task" else checked
    out = {t.name: np.full((len(frame), t.units), np.nan) for t in tasks
           if t.name in names}
    count = int(folds.max()) + 1
    for fold in range(count):
        started = time.perf_counter()
        held = folds == fold
        train, validation, _ = split_frame(
            frame[~held], tasks, split.method, fraction, 0.0, split.seed,
            order_by=split.order_by, group_by=split.group_by)
        fold_tasks = [Task.from_config(copy.deepcopy(t.get_config())) for t in tasks]
        features = prepare(config, train, fold_tasks)
        run_config, _ = with_size_defaults(config, len(train))
        # One progress line per fold (below) instead of k models' epochs.
        run_config = run_config.model_copy(update={
            "training": run_config.training.model_copy(update={"verbose": 0})})
        batch_size = run_config.training.batch_size
        held_out = split_datasets({"validation": validation}, features, fold_tasks,
                                  batch_size)
        data = PreparedData(fold_tasks, features, train, validation, None,
                            batch_size, held_out)
        rows = frame[held]
        if detector == "multi_task":
            run = run_model(run_config, data)
            predictions = _predict(run.model, rows, features, batch_size)
            for name in names:
                out[name][held] = predictions[name]
            epochs = len(run.history.get("loss", []))
        else:
            baseline = with_shared_units(baseline_spec(run_config), len(train))
            single = baseline_config(run_config, baseline, run_config.training.seed)
            epochs = 0
            # A derived task (ESMM's CTCVR) gets a plain model on its own target.
            for task in baseline_tasks(fold_tasks):
                if task.name not in names:
                    continue
                run = run_model(single, data, tasks=[task])
                out[task.name][held] = _predict(run.model, rows, features,
                                                batch_size)[task.name]
                epochs += len(run.history.get("loss", []))
                keras.backend.clear_session()
        keras.backend.clear_session()
        log(f"{label}fold {fold + 1}/{count} ({detector}): trained on "
            f"{len(train):,} rows, {epochs} epochs, scored {int(held.sum()):,} rows "
            f"({time.perf_counter() - started:.1f} s)")
    return out


def consolidate(config, data_dir=None, output_dir="runs", detector=None,
                compare_detectors=None, log=print):
    """Finds likely label errors and fills missing labels of the config's
    training table with cross-fitted models, and writes a consolidated table
    and a report (see the module docstring for the procedure).

    Args:
        config: a `RunConfig` or a config mapping, with a `consolidate`
            section.
        data_dir: folder of the data files and built-in data sets.
        output_dir: where the consolidate directory is created (default
            `"runs"`).
        detector: `"multi_task"` or `"single_task"`, overriding
            `consolidate.detector`.
        compare_detectors: bool, overriding `consolidate.compare_detectors`.
        log: callable taking one str, for progress lines.

    Returns:
        A `Consolidation`.

    Raises:
        ConfigError: a bad config (`data.streaming`, an output path that
            exists), before anything is trained or written.
        DataError: data that does not fit the config (a checked task without
            any label), before anything is trained or written.

    Examples:
        >>> result = consolidate(config)  # doctest: +SKIP
        >>> result.output, result.report["tasks"]["income"]["rounds"][-1]
    """
    config = as_run_config(config)
    changes = {}
    if detector is not None:
        changes["consolidate.detector"] = detector
    if compare_detectors is not None:
        changes["consolidate.compare_detectors"] = compare_detectors
    if changes:
        config = config.replace(changes)
    with precision_policy(config):
        return _consolidate(config, data_dir, output_dir, log)


def _threshold(section, key, task):
    """`consolidate.<key>` for `task`: the number, the task's entry of a
    mapping, or for a task the mapping leaves out, the key's default."""
    value = getattr(section, key)
    if isinstance(value, dict):
        return value.get(task, type(section).model_fields[key].default)
    return value


def _negative(task, frame):
    """The value a binary task writes for a negative label: its column's most
    frequent value other than `positive`."""
    column = frame[task.target_columns[0]].dropna()
    others = column[column != task.positive]
    return others.value_counts().index[0] if len(others) else 0


def _set(column, rows, values):
    """`column` with `values` at the boolean `rows`, its dtype widened when
    the values do not fit it (NaN into ints, strings into numbers)."""
    column = column.copy()
    try:
        column[rows] = values
    except (TypeError, ValueError):
        column = column.astype(object)
        column[rows] = values
    return column


def _suggested_text(task, suggested, negative):
    """The model's labels as one printable column (`<task>__suggested`)."""
    if task.type in ("binary", "multiclass"):
        return label_values(task, suggested, negative)[task.target_columns[0]]
    if task.type == "multilabel":
        return label_sets(task, suggested, task.delimiter or "|")
    if suggested.shape[1] == 1:
        return suggested[:, 0]
    return np.array(["|".join(f"{v:.6g}" for v in row) for row in suggested],
                    dtype=object)


def out_of_fold_score(task, labels, predictions):
    """How well out-of-fold predictions match the given labels: `(name,
    value)`, binary ROC AUC, multiclass accuracy, multilabel macro ROC AUC,
    regression RMSE (label units; over every target column); None when it
    is undefined (one class)."""
    if not len(labels):
        return None, None
    try:
        if task.type == "binary":
            return "auc", float(sk_metrics.roc_auc_score(labels, predictions[:, 0]))
        if task.type == "multiclass":
            return "accuracy", float((predictions.argmax(axis=1) == labels).mean())
        if task.type == "multilabel":
            return "auc", float(sk_metrics.roc_auc_score(labels, predictions,
                                                         average="macro"))
    except ValueError:
        return ("auc", None)
    return "rmse", float(np.sqrt(np.mean((labels - predictions) ** 2)))


def _detect(task, frame, predictions, pseudo, section):
    """One task's detection on `frame`: a DataFrame with one row per table
    row (`scored`, `label_issue`, `label_quality`, `confidence`; and
    `suggested` as an object column of encoded labels), the scored rows'
    encoded labels, and the estimated noise matrix (None for multilabel and
    regression tasks). The suggestions of binary and multiclass tasks come
    from the noise-corrected probabilities."""
    labelled, labels = encoded_labels(task, frame)
    scored = labelled & ~pseudo
    labels = labels[scored[labelled]]
    issues, quality = find_label_issues(
        task, labels, predictions[scored], filter_by=section.filter_by,
        residual_threshold=section.residual_threshold)
    matrix = noise_matrix(task, labels, predictions[scored])
    suggested, confidence = suggest_labels(task, predictions, matrix)
    n = len(frame)
    flags = np.zeros(n, dtype=bool)
    flags[scored] = issues
    scores = np.full(n, np.nan)
    scores[scored] = quality
    detection = pd.DataFrame({"scored": scored, "label_issue": flags,
                              "label_quality": scores, "confidence": confidence})
    detection["suggested"] = list(suggested) if np.ndim(suggested) > 1 else suggested
    return detection, labels, matrix


def _act(task, frame, detection, labels, pseudo, negative, section):
    """Applies the actions to one task's labels in `frame` (in place);
    returns the counts (before acting: `scored` given labels, `pseudo`
    labels already the model's, `missing`; then what was done) and the new
    pseudo marks."""
    scored = detection["scored"].to_numpy()
    flags = detection["label_issue"].to_numpy()
    confidence = detection["confidence"].to_numpy()
    suggested = np.asarray(detection["suggested"].tolist())
    labelled = task.labelled(frame)
    classify = task.type != "regression"
    relabel = np.zeros(len(frame), dtype=bool)
    if classify:
        given = np.zeros_like(suggested)
        given[scored] = labels
        differs = (suggested != given)
        if differs.ndim > 1:
            differs = differs.any(axis=1)
        relabel = (flags & differs & (confidence >= _threshold(
            section, "relabel_threshold", task.name)))
    candidates = (~labelled & (confidence >= _threshold(
        section, "pseudo_label_threshold", task.name)) if classify
        else np.zeros(len(frame), dtype=bool))
    actions = section.actions
    relabel &= "relabel" in actions
    drop = flags & ~relabel if "drop" in actions else np.zeros(len(frame), bool)
    fill = candidates & ("fill" in actions)
    write = relabel | fill
    if write.any():
        values = label_values(task, suggested[write], negative)
        for column, new in values.items():
            frame[column] = _set(frame[column], write, new)
    if drop.any():
        for column in task.target_columns:
            frame[column] = _set(frame[column], drop, np.nan)
    counts = {
        "scored": int(scored.sum()),
        "pseudo": int((labelled & pseudo).sum()),
        "missing": int((~labelled).sum()),
        "flagged": int(flags.sum()),
        "relabelled": int(relabel.sum()),
        "dropped": int(drop.sum()),
        "filled": int(fill.sum()),
        "pseudo_label_candidates": int(candidates.sum()),
    }
    return counts, (pseudo | write) & ~drop


def _confusion(task, labels, detection):
    """Given against suggested labels over the scored rows (binary and
    multiclass): `{"labels": [...], "matrix": [[count]]}`, rows given."""
    if task.type not in ("binary", "multiclass"):
        return None
    scored = detection["scored"].to_numpy()
    suggested = np.asarray(detection["suggested"].to_numpy()[scored], dtype="int64")
    k = 2 if task.type == "binary" else len(task.classes)
    matrix = np.zeros((k, k), dtype="int64")
    np.add.at(matrix, (np.asarray(labels, dtype="int64"), suggested), 1)
    names = (["negative", "positive"] if task.type == "binary"
             else [str(c) for c in task.classes])
    return {"labels": names, "matrix": matrix.tolist()}


HISTOGRAM_BINS = 20


def _histogram(detection):
    """Counts of the scored labels' quality scores in `HISTOGRAM_BINS` equal
    bins over [0, 1], flagged and not flagged apart."""
    scored = detection["scored"].to_numpy()
    quality = detection["label_quality"].to_numpy()[scored]
    flagged = detection["label_issue"].to_numpy()[scored]
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    return {"edges": edges.round(4).tolist(),
            "flagged": np.histogram(quality[flagged], edges)[0].tolist(),
            "not_flagged": np.histogram(quality[~flagged], edges)[0].tolist()}


def _agreement(main, other):
    """How two detections of one task agree on the scored rows."""
    a = main["label_issue"].to_numpy()
    b = other["label_issue"].to_numpy()
    return {"flagged": int(a.sum()), "flagged_other": int(b.sum()),
            "both": int((a & b).sum()), "only": int((a & ~b).sum()),
            "only_other": int((~a & b).sum())}


def _consolidate(config, data_dir, output_dir, log):
    section = config.consolidate
    if config.data.streaming is not None:
        raise ConfigError("consolidate holds the table in memory to cross-fit it; "
                          "it does not apply to data.streaming. Set "
                          "data.streaming: null.")
    table, input_path = training_table(config, data_dir)
    tasks = build_tasks(config)
    for task in tasks:
        task.check_columns(table, "the training table")
    names = section.tasks or [t.name for t in tasks if t.has_labels]
    checked = [t for t in tasks if t.name in names]
    action = config.data.non_finite
    work = table
    if action != "error":
        work, _ = handle_non_finite(table, action)
    kept = table.index.isin(work.index)
    work = work.reset_index(drop=True)
    for task in tasks:
        try:
            task.fit(work)
        except DataError as error:
            raise DataError(f"consolidate: {error}") from None
    negatives = {t.name: _negative(t, work) for t in checked if t.type == "binary"}
    split = config.data.split
    folds = fold_ids(work, tasks, section.folds, split.method, split.seed,
                     order_by=split.order_by, group_by=split.group_by)
    check_writable(output_dir, "output directory")
    output = output_path(config, input_path)
    if output is not None:
        check_writable(os.path.dirname(os.path.abspath(output)),
                       "folder of the consolidated table")
    detector = section.detector
    other = ("single_task" if detector == "multi_task" else "multi_task")
    started = time.perf_counter()
    pseudo = {t.name: t.pseudo_labelled(work) for t in checked}
    issue = {t.name: np.zeros(len(work), dtype=bool) for t in checked}
    quality = {t.name: np.full(len(work), np.nan) for t in checked}
    current = work.copy()
    rounds, detections = [], {}
    for number in range(1, section.rounds + 1):
        prefix = f"[round {number}/{section.rounds}] "
        predictions = cross_fit(config, current, tasks, folds, detector,
                                [t.name for t in checked], log, prefix)
        other_predictions = None
        if section.compare_detectors and number == 1:
            other_predictions = cross_fit(config, current, tasks, folds, other,
                                          [t.name for t in checked], log, prefix)
        record = {"round": number, "tasks": {}}
        for task in checked:
            detection, labels, matrix = _detect(
                task, current, predictions[task.name], pseudo[task.name], section)
            detections.setdefault(detector, {})[task.name] = detection
            scored = detection["scored"].to_numpy()
            name, value = out_of_fold_score(task, labels,
                                            predictions[task.name][scored])
            entry = {"out_of_fold": {"metric": name, detector: value},
                     "confusion": _confusion(task, labels, detection),
                     "quality_histogram": _histogram(detection),
                     "noise_matrix": (None if matrix is None
                                      else np.round(matrix, 6).tolist())}
            if other_predictions is not None:
                other_detection, _, _ = _detect(task, current,
                                                other_predictions[task.name],
                                                pseudo[task.name], section)
                detections.setdefault(other, {})[task.name] = other_detection
                entry["out_of_fold"][other] = out_of_fold_score(
                    task, labels, other_predictions[task.name][scored])[1]
                entry["agreement"] = _agreement(detection, other_detection)
            counts, pseudo[task.name] = _act(task, current, detection, labels,
                                             pseudo[task.name],
                                             negatives.get(task.name), section)
            entry.update(counts)
            issue[task.name] |= detection["label_issue"].to_numpy()
            quality[task.name] = np.where(scored, detection["label_quality"],
                                          quality[task.name])
            record["tasks"][task.name] = entry
            log(f"{prefix}{task.name}: {counts['flagged']:,} of "
                f"{counts['scored']:,} labels flagged; relabelled "
                f"{counts['relabelled']:,}, dropped {counts['dropped']:,}, filled "
                f"{counts['filled']:,} of {counts['missing']:,} missing")
        rounds.append(record)

    consolidated = _output_table(table, kept, current, checked, issue, quality,
                                 pseudo, detections[detector], folds, negatives)
    run_dir = RunDir.create(output_dir, f"{config.name}-consolidate")
    directory = run_dir.path
    if output is None:
        output = output_path(config, None, directory)
    write_atomically(output, lambda path: consolidated.to_parquet(path, index=False))
    report = {
        "name": config.name,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "input": input_path,
        "output": os.path.abspath(output),
        "rows": len(table),
        "scored_rows": len(work),
        "folds": section.folds,
        "detector": detector,
        "compared_detector": other if section.compare_detectors else None,
        "actions": list(section.actions),
        "tasks": {t.name: {"type": t.type, "rounds": [r["tasks"][t.name]
                                                      for r in rounds]}
                  for t in checked},
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_consolidation_report(report, directory)
    run_dir.mark_complete()
    log(f"Consolidated table: {output}")
    log(f"Report: {directory}/report.md")
    return Consolidation(consolidated, report, directory, output, detections)


def _output_table(table, kept, current, checked, issue, quality, pseudo, detection,
                  folds, negatives):
    """The input table with the acted-on labels and the consolidation columns
    (rows that `data.non_finite: drop` left out keep their values, unscored)."""
    out = table.copy()
    n = len(table)

    def spread(values, fill, dtype):
        full = np.full(n, fill, dtype=dtype)
        full[kept] = values
        return full

    for task in checked:
        for column in task.target_columns:
            out[column] = _set(out[column], kept, current[column].to_numpy())
        suggested = _suggested_text(
            task, np.asarray(detection[task.name]["suggested"].tolist()),
            negatives.get(task.name))
        columns = {
            "label_issue": spread(issue[task.name], False, bool),
            "label_quality": spread(quality[task.name], np.nan, "float64"),
            "pseudo": spread(pseudo[task.name], False, bool),
            "suggested": spread(suggested, None if suggested.dtype == object
                                else np.nan, suggested.dtype),
        }
        for kind, values in columns.items():
            out[task.consolidation_column(kind)] = values
    out[FOLD_COLUMN] = spread(folds, -1, "int64")
    return out
