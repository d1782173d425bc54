"""Reading tables with pandas: CSV (optionally compressed) and Parquet."""

import os

import pandas as pd

from kmtl.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path, **read_options):
    """Reads a CSV or Parquet file into a DataFrame.

    Args:
        path: str or path-like. `.parquet`/`.pq` files are read with
            `pandas.read_parquet`; anything else with `pandas.read_csv`
            (compression inferred from the suffix, e.g. `.csv.gz`).
        **read_options: passed to the pandas reader (`header`, `names`,
            `skipinitialspace`, `na_values`, `sep`, ...).

    Returns:
        A `pandas.DataFrame`.

    Raises:
        DataError: the file does not exist, cannot be parsed, or has no rows.
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
    except TypeError as error:
        raise DataError(f"Bad read option for {path!r}: {error}. See the pandas "
                        f"reader's documentation for the allowed options.") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"Cannot read {path!r} as a table: {error}. Is it a CSV or "
                        f"Parquet file, and do the read options fit it?") from None
    if frame.empty:
        raise DataError(f"Data file {path!r} has no rows.")
    return frame
