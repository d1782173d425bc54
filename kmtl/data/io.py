"""Reading tables with pandas: CSV (optionally compressed) and Parquet."""

import os

import pandas as pd

from kmtl.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
BAD_OPTION = (TypeError, LookupError, AttributeError, NotImplementedError)
"""What pandas raises for a read option it cannot use (an unknown argument,
an unknown encoding, a value of the wrong type, a dtype it cannot build, a
column or row number outside the file)."""


def read_table(path, **read_options):
    """Reads a CSV or Parquet file into a DataFrame.

    Args:
        path: str or path-like. `.parquet`/`.pq` files are read with
            `pandas.read_parquet`; anything else with `pandas.read_csv`
            (compression inferred from the suffix, e.g. `.csv.gz`).
        **read_options: passed to the pandas reader (`header`, `names`,
            `skipinitialspace`, `na_values`, `sep`, ...).

    Returns:
        A `pandas.DataFrame` whose column names are strings (`header: None`
        gives "0", "1", ...).

    Raises:
        DataError: the file does not exist, cannot be parsed (with these
            options), or has no rows; a read option pandas refuses. The
            message names the file and the options.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DataError(f"Data path {path!r} is a directory; name a CSV or Parquet "
                        f"file.")
    if not os.path.isfile(path):
        raise DataError(f"Data file not found: {path!r}. Check the path, or pass "
                        f"--data-dir / set KMTL_DATA_DIR.")
    try:
        if path.lower().endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(path, **read_options)
        else:
            frame = pd.read_csv(path, **read_options)
    except MemoryError:
        raise
    except Exception as error:
        # pandas and pyarrow raise many types for a file that is not a table
        # or does not fit the options (ParserError, UnicodeDecodeError,
        # csv.Error, IndexError, ArrowInvalid, ...): each is a DataError.
        if read_options and isinstance(error, BAD_OPTION):
            raise DataError(f"Bad read option for {path!r} (read options "
                            f"{read_options}): {type(error).__name__}: {error}. "
                            f"See the pandas reader's documentation for the "
                            f"allowed options.") from None
        given = f" with read options {read_options}" if read_options else ""
        raise DataError(f"Cannot read {path!r} as a table{given}: "
                        f"{type(error).__name__}: {error}. Is it a CSV or "
                        f"Parquet file, and do the read options fit it?") from None
    if frame.empty:
        raise DataError(f"Data file {path!r} has no rows.")
    if not all(isinstance(c, str) for c in frame.columns):
        # `header: null` numbers the columns 0, 1, ...: a config names them
        # "0", "1", ... (YAML keys and lists of column names are strings).
        names = [str(c) for c in frame.columns]
        if len(set(names)) < len(names):
            raise DataError(f"Data file {path!r}: column names {list(frame.columns)} "
                            f"are not distinct as text. Rename them (read option "
                            f"`names`).")
        frame.columns = names
    return frame
