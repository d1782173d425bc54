"""Combining labels for several tasks into one frame.

Multi-task data comes in two shapes:

- wide: one row per example and one target column per task (nothing to do here:
  a missing value in a target column is a missing label, masked in training);
- per task: one table per task, or one long table with a `task` column, where
  each row carries the label of a single task. `combine_task_tables` turns these
  into the wide form, leaving the other tasks' labels missing (NaN).
"""

import pandas as pd

from kmtl.errors import DataError


def combine_task_tables(tables, label_column="label", task_column="task", key=None):
    """Combines per-task tables into one wide frame with one label column per task.

    Args:
        tables: either a dict `{task_name: DataFrame}` whose frames hold the
            features and a `label_column`, or one long DataFrame with a
            `task_column` naming each row's task.
        label_column: str. The column holding each row's label.
        task_column: str. The column naming each row's task (long form only).
        key: str or None. An id column. Rows of different tasks with the same
            key are merged into one example (their labels side by side; feature
            values are taken from the first table that has the key). Without a
            key every row stays its own example.

    Returns:
        A DataFrame with the feature columns and one column per task holding that
        task's label, NaN where the row has no label for it.

    Raises:
        DataError: the label, task or key column is missing, the key is the
            label column, a row has no task or no key, there are no rows, a
            task name collides with a feature column, or one key has two
            labels for the same task.
    """
    if key is not None and key == label_column:
        raise DataError(f"The key column and the label column are both "
                        f"'{key}'; the key names an id column, the label "
                        f"column each row's label. Set data.key or "
                        f"data.label_column to another column.")
    if isinstance(tables, pd.DataFrame):
        if task_column not in tables.columns:
            raise DataError(f"Column '{task_column}' (the task of each row) not found; "
                            f"columns are {list(tables.columns)}.")
        untasked = int(tables[task_column].isna().sum())
        if untasked:
            raise DataError(f"Column '{task_column}' (the task of each row) is "
                            f"missing on {untasked:,} row(s), whose labels would "
                            f"be lost. Fill or drop those rows.")
        tables = {str(name): part.drop(columns=task_column)
                  for name, part in tables.groupby(task_column, sort=False)}
    if not tables:
        raise DataError("No task table has any row: there is nothing to combine.")
    parts = []
    for name, table in tables.items():
        if label_column not in table.columns:
            raise DataError(f"Table for task '{name}' has no '{label_column}' column; "
                            f"columns are {list(table.columns)}. Set label_column.")
        if key is not None and key not in table.columns:
            raise DataError(f"Table for task '{name}' has no key column '{key}'.")
        if key is not None and table[key].isna().any():
            raise DataError(f"Key column '{key}' of the table for task '{name}' is "
                            f"missing on {int(table[key].isna().sum()):,} row(s); "
                            f"a row without key cannot be matched with the other "
                            f"tasks. Fill or drop those rows.")
        if name in table.columns and name != label_column:
            raise DataError(f"Task name '{name}' is also a column of its table; "
                            f"rename the task or the column.")
        parts.append(table.rename(columns={label_column: name}))
    combined = pd.concat(parts, ignore_index=True, sort=False)
    if key is None:
        return combined
    names = list(tables)
    duplicated = combined.dropna(subset=names, how="all").melt(
        id_vars=[key], value_vars=names).dropna().duplicated(subset=[key, "variable"])
    if duplicated.any():
        raise DataError(f"Key column '{key}': some keys carry two labels for the same "
                        f"task. De-duplicate the task tables first.")
    return combined.groupby(key, sort=False, as_index=False).first()
