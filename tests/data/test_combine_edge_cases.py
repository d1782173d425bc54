"""Regression tests for `kmtl.data.combine_task_tables` found by the fuzz
tests (tests/fuzz): a key that is the label column and a long table without
rows were raw pandas errors; rows without task or without key were dropped
without a word."""

import numpy as np
import pandas as pd
import pytest

from kmtl.data import combine_task_tables
from kmtl.errors import DataError


def test_the_key_cannot_be_the_label_column():
    # Was pandas' KeyError "The following id_vars or value_vars are not
    # present in the DataFrame: ['label']".
    tables = {"click": pd.DataFrame({"x": [0.1, 0.2], "label": [1, 0]})}
    with pytest.raises(DataError, match=r"The key column and the label column "
                                        r"are both 'label'"):
        combine_task_tables(tables, key="label")


def test_a_long_table_without_rows_is_a_data_error():
    # Was pandas' ValueError "No objects to concatenate".
    empty = pd.DataFrame({"x": [], "label": [], "task": []})
    with pytest.raises(DataError, match="No task table has any row"):
        combine_task_tables(empty)
    with pytest.raises(DataError, match="No task table has any row"):
        combine_task_tables({})


def test_rows_without_a_task_are_an_error_not_dropped():
    # groupby dropped the rows whose task is missing, with their labels.
    long = pd.DataFrame({"x": [0.1, 0.2, 0.3], "label": [1, 0, 1],
                         "task": ["click", None, "click"]})
    with pytest.raises(DataError, match=r"Column 'task' .* is missing on 1 "
                                        r"row\(s\)"):
        combine_task_tables(long)


def test_rows_without_a_key_are_an_error_not_dropped():
    # groupby(key) dropped the rows whose key is missing, with their labels.
    tables = {"click": pd.DataFrame({"id": [1, np.nan, 3], "label": [1, 0, 1]}),
              "spend": pd.DataFrame({"id": [1, 3], "label": [5.0, 6.0]})}
    with pytest.raises(DataError, match=r"Key column 'id' of the table for task "
                                        r"'click' is missing on 1 row\(s\)"):
        combine_task_tables(tables, key="id")
    tables["click"] = tables["click"].dropna()
    combined = combine_task_tables(tables, key="id").set_index("id")
    assert combined.loc[1.0, "click"] == 1 and combined.loc[3.0, "spend"] == 6.0
