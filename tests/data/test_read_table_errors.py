"""Regression tests for `kmtl.data.read_table` found by the fuzz tests
(tests/fuzz): read options pandas refuses with errors other than TypeError
and ValueError, and files pandas' sniffer cannot read, are DataErrors naming
the file and the options (they were raw tracebacks); column names are
strings, so a config can name the columns of a file read with `header:
null`."""

import pandas as pd
import pytest

from kmtl.data import read_table
from kmtl.errors import DataError


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.csv"
    pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}).to_csv(path, index=False)
    return path


def test_an_empty_dtype_on_a_header_only_file_is_a_data_error(tmp_path):
    # pandas: "NotImplementedError: compound dtypes are not implemented in the
    # Series constructor".
    path = tmp_path / "header.csv"
    path.write_text("0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Bad read option for .*header\.csv' "
                                        r"\(read options \{'dtype': \[\]\}\): "
                                        r"NotImplementedError"):
        read_table(path, dtype=[])


@pytest.mark.parametrize("options, raised", [
    ({"encoding": "0"}, "LookupError"),      # unknown encoding
    ({"header": []}, "IndexError"),
    ({"sep": []}, "AttributeError"),
])
def test_a_read_option_pandas_refuses_is_a_data_error(table, options, raised):
    with pytest.raises(DataError) as error:
        read_table(table, **options)
    message = str(error.value)
    assert str(table) in message and str(options) in message
    assert any(name in message for name in raised.split("|")), message


def test_a_file_the_sniffer_cannot_read_is_a_data_error(tmp_path):
    # sep=None lets pandas guess the separator; for a header-only file it
    # raised the csv module's own `_csv.Error: Could not determine delimiter`.
    path = tmp_path / "odd.csv"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Cannot read .*odd\.csv' as a table "
                                        r"with read options \{'sep': None\}: "
                                        r"Error: Could not determine delimiter"):
        read_table(path, sep=None)


def test_without_options_the_message_does_not_blame_them(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"Cannot read .*t\.parquet' as a table: "
                                        r"\w+"):
        read_table(path)


def test_numbered_columns_become_strings_a_config_can_name(tmp_path):
    # With `header: None` pandas numbers the columns 0, 1, 2; a config's
    # `target: "2"` was "not found in [0, 1, 2]" and `target: 2` a raw
    # TypeError (now a ConfigError: a target is a column name).
    path = tmp_path / "plain.csv"
    path.write_text("1.5,a,0\n2.5,b,1\n", encoding="utf-8")
    frame = read_table(path, header=None)
    assert list(frame.columns) == ["0", "1", "2"]
    assert frame["2"].tolist() == [0, 1]


def test_names_that_collide_as_text_are_a_data_error(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1.5,a\n2.5,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column names \[1, '1'\] are not "
                                        r"distinct as text"):
        read_table(path, header=None, names=[1, "1"])
