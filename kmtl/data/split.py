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
Rare strata (fewer members than there are splits) are pooled into one stratum.
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from kmtl.errors import ConfigError
from kmtl.errors import DataError

SPLIT_METHODS = ("random", "per_task", "stratified")
"""The methods of `split_frame` (and of the run config's `data.split.method`)."""


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


def split_frame(frame, tasks, method="stratified", validation=0.1, test=0.1, seed=0):
    """Splits a frame into train, validation and test frames.

    Args:
        frame: the DataFrame.
        tasks: list of `kmtl.Task` (their target columns define the strata).
        method: str. One of `"random"`, `"per_task"`, `"stratified"` (default,
            the run config's default too).
        validation: float in [0, 1). The fraction of rows for validation; 0
            gives an empty split.
        test: float in [0, 1). The fraction of rows for test; 0 gives an empty
            split.
        seed: int. Same seed, same split.

    Returns:
        `(train, validation, test)` DataFrames (index reset).

    Raises:
        ConfigError: unknown method or fractions outside [0, 1) summing to >= 1.
        DataError: too few held-out rows to stratify by `method` (the message
            names the counts and suggests `random`).
    """
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split.method: unknown method {method!r}. Use one of "
                          f"{SPLIT_METHODS}.")
    for name, value in (("validation", validation), ("test", test)):
        if not 0 <= value < 1:
            raise ConfigError(f"split.{name} must be a fraction in [0, 1). "
                              f"Received: {name}={value!r}")
    if validation + test >= 1:
        raise ConfigError(f"split.validation + split.test must be < 1. Received: "
                          f"{validation} + {test}.")
    strata = _strata(frame, tasks, method)
    index = np.arange(len(frame))
    # Whole row counts: 0.1 + 0.2 is 0.30000000000000004 in floating point.
    n_validation = int(round(validation * len(frame)))
    n_test = int(round(test * len(frame)))
    holdout = n_validation + n_test
    if holdout == 0:
        return frame.reset_index(drop=True), frame.iloc[:0], frame.iloc[:0]
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
        if rest_strata is not None and pd.Series(rest_strata).value_counts().min() < 2:
            rest_strata = None
        val_idx, test_idx = train_test_split(
            rest_idx, test_size=n_test, random_state=seed, stratify=rest_strata)
    take = [frame.iloc[np.sort(i)].reset_index(drop=True)
            for i in (train_idx, val_idx, test_idx)]
    return tuple(take)
