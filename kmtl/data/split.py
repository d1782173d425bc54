"""Train / validation / test splits that respect multi-task labels.

Methods:

- `random`: rows are assigned at random.
- `per_task`: rows are stratified by which tasks they are labelled for, so every
  task keeps its share of labelled rows in each split (useful when tasks are
  labelled on different subsets, as after `combine_task_tables`).
- `stratified` (the default, as in the run config): stratified by which tasks
  are labelled and by the label values of the tasks whose type stratifies
  (`Task.strata`: binary and multiclass), so class balance is the same in every
  split.
- `ordered`: for a table ordered in time. Rows are sorted by the `order_by`
  column (or kept in table order), and cut into train, then validation, then
  test, so validation and test hold the latest rows and nothing of the future
  leaks into training or early stopping.
- `group`: rows sharing a value of the `group_by` column (a user, a session, a
  patient) stay on one side; the fractions are fractions of the groups
  (`sklearn.model_selection.GroupShuffleSplit`).
Rare strata (fewer members than there are splits) are pooled into one stratum.

`fold_ids` cuts a table into k folds by the same methods, for cross-fitting
(`kmtl consolidate`): every row is held out exactly once.
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold
from sklearn.model_selection import GroupShuffleSplit
from sklearn.model_selection import KFold
from sklearn.model_selection import StratifiedKFold
from sklearn.model_selection import train_test_split

from kmtl.errors import ConfigError
from kmtl.errors import DataError

SPLIT_METHODS = ("random", "per_task", "stratified", "ordered", "group")
"""The methods of `split_frame` (and of the run config's `data.split.method`)."""
MAX_SEED = 2**32 - 1
"""The largest split seed: scikit-learn's `random_state` is a 32-bit seed."""


def _strata(frame, tasks, method):
    if method == "random":
        return None
    parts = []
    for task in tasks:
        labelled = task.labelled(frame)
        key = np.where(labelled, "1", "0").astype(object)
        values = task.strata(frame) if method == "stratified" else None
        if values is not None:
            key = np.where(labelled, key + ":" + values, key)
        parts.append(key)
    strata = pd.Series(["|".join(p) for p in zip(*parts)], index=frame.index)
    counts = strata.map(strata.value_counts())
    strata = strata.where(counts >= 3, "rare")
    if (strata == "rare").sum() == 1:
        # One rare row alone cannot be stratified: it joins the largest stratum.
        strata = strata.replace("rare", strata.value_counts().index[0])
    return strata.to_numpy()


def split_frame(frame, tasks, method="stratified", validation=0.1, test=0.1, seed=0,
                order_by=None, group_by=None):
    """Splits a frame into train, validation and test frames.

    Args:
        frame: the DataFrame.
        tasks: list of `kmtl.Task` (their target columns define the strata).
        method: str. One of `"random"`, `"per_task"`, `"stratified"` (default,
            the run config's default too), `"ordered"`, `"group"`.
        validation: float in [0, 1). The fraction of rows for validation; 0
            gives an empty split.
        test: float in [0, 1). The fraction of rows for test; 0 gives an empty
            split.
        seed: int. Same seed, same split (`ordered` does not use it).
        order_by: str or None. With `ordered`: the column to sort by (a time
            stamp, a date); None keeps the table's row order.
        group_by: str. With `group` (required): the column whose rows stay
            together.

    Returns:
        `(train, validation, test)` DataFrames (index reset).

    Raises:
        ConfigError: unknown method, fractions outside [0, 1) summing to >= 1,
            or a seed that is not an integer in [0, 2**32 - 1].
        DataError: too few held-out rows to stratify by `method` (the message
            names the counts and suggests `random`); an `order_by` or
            `group_by` column that is absent or has missing values.
    """
    _check_method(method, group_by)
    for name, value in (("validation", validation), ("test", test)):
        if not 0 <= value < 1:
            raise ConfigError(f"split.{name} must be a fraction in [0, 1). "
                              f"Received: {name}={value!r}")
    if validation + test >= 1:
        raise ConfigError(f"split.validation + split.test must be < 1. Received: "
                          f"{validation} + {test}.")
    if (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
            or not 0 <= seed <= MAX_SEED):
        raise ConfigError(f"split.seed must be an integer in [0, 2**32 - 1] (a "
                          f"32-bit seed). Received: seed={seed!r}")
    if order_by is not None and method != "ordered":
        raise ConfigError(f"split.order_by applies to split.method 'ordered' only. "
                          f"Received: method={method!r}, order_by={order_by!r}")
    index = np.arange(len(frame))
    # Whole row counts: 0.1 + 0.2 is 0.30000000000000004 in floating point.
    n_validation = int(round(validation * len(frame)))
    n_test = int(round(test * len(frame)))
    holdout = n_validation + n_test
    if holdout == 0:
        return frame.reset_index(drop=True), frame.iloc[:0], frame.iloc[:0]
    if method == "ordered":
        order = index if order_by is None else _order(frame, order_by)
        n_train = len(frame) - holdout
        return _take(frame, order[:n_train], order[n_train:n_train + n_validation],
                     order[n_train + n_validation:])
    if method == "group":
        return _group_split(frame, group_by, validation, test, seed)
    strata = _strata(frame, tasks, method)
    try:
        train_idx, rest_idx = train_test_split(
            index, test_size=holdout, random_state=seed,
            stratify=None if strata is None else strata)
    except ValueError as error:
        # Too few held-out rows for the strata (a small table, many classes).
        raise DataError(
            f"split.method {method!r} cannot stratify {len(frame)} rows into "
            f"{n_validation} validation and {n_test} test rows: {error} Use "
            f"split.method: random, or larger validation/test fractions.") from None
    if n_test == 0 or n_validation == 0:
        val_idx, test_idx = (rest_idx, rest_idx[:0]) if n_test == 0 else (
            rest_idx[:0], rest_idx)
    else:
        rest_strata = None if strata is None else strata[rest_idx]
        if rest_strata is not None:
            counts = pd.Series(rest_strata).value_counts()
            # Validation and test each need a row of every stratum to split
            # them by strata; with fewer rows they are cut at random.
            if counts.min() < 2 or len(counts) > min(n_validation, n_test):
                rest_strata = None
        val_idx, test_idx = train_test_split(
            rest_idx, test_size=n_test, random_state=seed, stratify=rest_strata)
    return _take(frame, train_idx, val_idx, test_idx)


def fold_ids(frame, tasks, folds=5, method="stratified", seed=0, order_by=None,
             group_by=None):
    """The fold of each row for k-fold cross-fitting, by the split methods of
    `split_frame`: `random` (`KFold`, shuffled), `per_task` and `stratified`
    (`StratifiedKFold` on the same strata as `split_frame`, rare strata
    pooled), `group` (`GroupKFold`, shuffled: a group's rows share a fold)
    and `ordered` (k contiguous blocks in `order_by` order, or table order).

    Args:
        frame: the DataFrame.
        tasks: list of `kmtl.Task` (their labels define the strata).
        folds: int >= 2, the number of folds k.
        method: str, a method of `SPLIT_METHODS`.
        seed: int in [0, 2**32 - 1] (not used by `ordered`).
        order_by: str or None, with `ordered`.
        group_by: str, with `group` (required).

    Returns:
        int64 `(rows,)`, each row's fold in `0 .. folds - 1`.

    Raises:
        ConfigError: `folds` below 2 or above the rows (or groups); an unknown
            method; `group_by` without `group` or the reverse.
        DataError: an `order_by` / `group_by` column absent or with missing
            values.
    """
    _check_method(method, group_by)
    if (not isinstance(folds, (int, np.integer)) or isinstance(folds, bool)
            or folds < 2):
        raise ConfigError(f"consolidate.folds must be an integer >= 2 (each row is "
                          f"scored by a model trained on the other folds). "
                          f"Received: {folds!r}")
    index = np.arange(len(frame))
    ids = np.empty(len(frame), dtype="int64")
    units = (len(np.unique(_column(frame, group_by, "group_by").to_numpy()))
             if method == "group" else len(frame))
    if folds > units:
        what = "groups" if method == "group" else "rows"
        raise ConfigError(f"consolidate.folds: {folds} folds need at least {folds} "
                          f"{what}; the table has {units}. Use fewer folds.")
    if method == "ordered":
        order = index if order_by is None else _order(frame, order_by)
        for fold, block in enumerate(np.array_split(order, folds)):
            ids[block] = fold
        return ids
    if method == "group":
        splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = splitter.split(index, groups=frame[group_by].to_numpy())
    else:
        strata = _strata(frame, tasks, method)
        if strata is not None:
            counts = pd.Series(strata).value_counts()
            strata = np.where(pd.Series(strata).map(counts).to_numpy() < folds,
                              "rare", strata)
            if (strata == "rare").sum() < folds:
                strata = np.where(strata == "rare", counts.index[0], strata)
        splitter = (KFold(n_splits=folds, shuffle=True, random_state=seed)
                    if strata is None else
                    StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
        parts = splitter.split(index, strata)
    for fold, (_, held_out) in enumerate(parts):
        ids[held_out] = fold
    return ids


def _check_method(method, group_by):
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split.method: unknown method {method!r}. Use one of "
                          f"{SPLIT_METHODS}.")
    if (group_by is None) == (method == "group"):
        raise ConfigError(f"split.group_by names the column whose rows stay "
                          f"together, with split.method 'group' (and only then). "
                          f"Received: method={method!r}, group_by={group_by!r}")


def _take(frame, *positions):
    """The rows at each array of `positions`, in table order, index reset."""
    return tuple(frame.iloc[np.sort(p)].reset_index(drop=True) for p in positions)


def _column(frame, name, key):
    if name not in frame.columns:
        raise DataError(f"split.{key}: column {name!r} not found in the data. "
                        f"Available columns: {list(frame.columns)}.")
    column = frame[name]
    if column.isna().any():
        raise DataError(f"split.{key}: column {name!r} has {int(column.isna().sum())} "
                        f"missing value(s); every row needs one to be split. Fill "
                        f"or drop those rows.")
    return column


def _order(frame, order_by):
    """Row positions sorted by `order_by` (stable: ties keep table order)."""
    column = _column(frame, order_by, "order_by")
    return np.argsort(column.to_numpy(), kind="stable")


def _group_split(frame, group_by, validation, test, seed):
    """Whole groups to each side: holdout groups first, then validation vs test
    among them; the fractions are of the groups."""
    groups = _column(frame, group_by, "group_by").to_numpy()
    index = np.arange(len(frame))
    if len(np.unique(groups)) < 3:
        raise DataError(f"split.group_by: column {group_by!r} has "
                        f"{len(np.unique(groups))} distinct value(s); a group "
                        f"split needs at least 3 (train, validation, test).")
    holdout = validation + test
    outer = GroupShuffleSplit(n_splits=1, test_size=holdout, random_state=seed)
    train_idx, rest_idx = next(outer.split(index, groups=groups))
    if validation == 0 or test == 0:
        empty = rest_idx[:0]
        return _take(frame, train_idx, *((rest_idx, empty) if test == 0
                                         else (empty, rest_idx)))
    inner = GroupShuffleSplit(n_splits=1, test_size=test / holdout,
                              random_state=seed)
    val_pos, test_pos = next(inner.split(rest_idx, groups=groups[rest_idx]))
    return _take(frame, train_idx, rest_idx[val_pos], rest_idx[test_pos])
