"""Training from tables larger than memory: CSV or Parquet files read in chunks.

`kmtl.data.make_dataset` encodes a whole DataFrame at once. This module reads
the files a record batch at a time with `pyarrow.dataset` and encodes each
chunk with the same code (`kmtl.features.encode_frame` and `encode_labels`), so
memory is bounded by the chunk and the shuffle buffer, not by the file:

1. `TableSource`: a CSV or Parquet file, or a folder of them, read in chunks
   of `chunk_rows` rows, only the columns asked for (Parquet a row group at a
   time and CSV a block at a time, so that memory does not grow with the
   file).
2. `SplitRule`: held-out rows without holding the table. A row goes to
   validation or test when a seeded 64-bit hash (SplitMix64) of its row number
   (or of a group column's value) lands in the first `validation` or the next
   `test` fraction of the hash range: deterministic, disjoint, about the asked
   fractions, and the same whatever the chunk size.
3. `fit_sample`: a uniform random sample of at most `rows` training rows, in
   one pass (bottom-k sampling: each row draws a uniform key and the `rows`
   smallest keys are kept, which is a reservoir sample without replacement).
   A uniform sample, rather than the first rows, because files are often
   sorted (by time, by label): the first rows would fit vocabularies, means
   and classes of one end of the table. The tasks and features are fitted on
   it with their own `fit`; a category that the sample misses is then
   out-of-vocabulary, and quantiles or means are estimates from the sample.
4. `StreamedSplit.dataset`: a `tf.data.Dataset` of `(features, labels,
   sample_weights)` batches, as `make_dataset` gives, built with
   `tf.data.Dataset.from_generator` over the chunks; read again every epoch;
   shuffled (training) within a window of `shuffle_buffer` rows, in an order
   fixed by `(seed, epoch)`.

Reference: Apache Arrow, "Tabular Datasets" (`pyarrow.dataset`), and
TensorFlow's guide "tf.data: Build TensorFlow input pipelines" (consuming
Python generators, shuffling with a bounded buffer).
"""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_dataset
import tensorflow as tf

from kmtl.data.io import PARQUET_SUFFIXES
from kmtl.data.non_finite import handle_non_finite
from kmtl.data.pipeline import encode_labels
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import encode_frame

__all__ = [
    "PARTS",
    "SplitRule",
    "StreamedSplit",
    "TableSource",
    "check_splits",
    "fit_sample",
    "stream_dataset",
]

PARTS = ("train", "validation", "test")
"""The parts a `SplitRule` sends rows to, by code 0, 1, 2."""

CSV_OPTIONS = ("sep", "delimiter", "na_values", "names", "header", "quotechar",
               "encoding")
"""The pandas-style `data.read_options` a streamed CSV takes (mapped onto
`pyarrow.csv` options); a streamed Parquet file takes none."""

_HASH_RANGE = 2.0 ** 64


# === Files ===


def _files(path):
    """The data files of `path`: itself, or the CSV/Parquet files of a folder
    (recursively, sorted, hidden files left out)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"Data path not found: {path!r}. Check the path, or pass "
                        f"--data-dir / set KMTL_DATA_DIR.")
    found = []
    for folder, folders, names in os.walk(path):
        folders[:] = sorted(f for f in folders if not f.startswith((".", "_")))
        found += [os.path.join(folder, name) for name in sorted(names)
                  if not name.startswith((".", "_"))]
    if not found:
        raise DataError(f"Data folder {path!r} holds no files; put CSV or Parquet "
                        f"files in it.")
    return found


def _is_parquet(path):
    return path.lower().endswith(PARQUET_SUFFIXES)


def _csv_options(read_options):
    """`pyarrow.csv` `(ReadOptions, ParseOptions, ConvertOptions)` from
    pandas-style read options."""
    unknown = sorted(set(read_options) - set(CSV_OPTIONS))
    if unknown:
        raise ConfigError(
            f"data.read_options {unknown} cannot be used with data.streaming "
            f"(CSV files are read by pyarrow). Allowed there: {list(CSV_OPTIONS)}; "
            f"or convert the table to Parquet.")
    delimiter = read_options.get("sep", read_options.get("delimiter", ","))
    names = read_options.get("names")
    header = read_options.get("header", None if names else 0)
    if header not in (0, None):
        raise ConfigError(f"data.read_options.header must be 0 (the first line) "
                          f"or null (no header) with data.streaming. Received: "
                          f"{header!r}")
    read = pa_csv.ReadOptions(block_size=1 << 22,
                              encoding=read_options.get("encoding", "utf8"))
    if names:
        read.column_names = list(names)
        read.skip_rows = 1 if header == 0 else 0
    elif header is None:
        read.autogenerate_column_names = True
    na_values = read_options.get("na_values") or []
    if isinstance(na_values, str):
        na_values = [na_values]
    convert = pa_csv.ConvertOptions(
        null_values=list(pa_csv.ConvertOptions().null_values) + list(na_values),
        strings_can_be_null=True)
    parse = pa_csv.ParseOptions(delimiter=delimiter,
                                quote_char=read_options.get("quotechar", '"'))
    return read, parse, convert


class TableSource:
    """A CSV or Parquet table read in chunks: Parquet with `pyarrow.dataset`,
    one row group at a time; CSV with `pyarrow.csv.open_csv`, one block at a
    time (its schema, from the first file's first block, by
    `pyarrow.dataset`).

    Args:
        path: str, a file (`.parquet`/`.pq`: Parquet; anything else: CSV) or a
            folder of files of one format (read in sorted path order, so row
            numbers are stable).
        read_options: dict, pandas-style CSV options (`CSV_OPTIONS`); none
            for Parquet.
        chunk_rows: int, rows per chunk (a record batch; a chunk can be
            shorter at a file's or row group's end).

    Raises:
        DataError: the path does not exist, or the files cannot be read as
            tables.
        ConfigError: a read option that streaming does not support.
    """

    def __init__(self, path, read_options=None, chunk_rows=65536):
        self.path = os.fspath(path)
        self.files = _files(self.path)
        self.chunk_rows = int(chunk_rows)
        options = dict(read_options or {})
        parquet = [_is_parquet(f) for f in self.files]
        if any(parquet) and not all(parquet):
            raise DataError(f"Data folder {self.path!r} mixes Parquet and other "
                            f"files; keep one format in it.")
        if all(parquet) and options:
            raise ConfigError(f"data.read_options {sorted(options)} apply to CSV "
                              f"files; {self.path!r} is Parquet. Remove them.")
        self.format = "parquet" if all(parquet) else "csv"
        file_format = "parquet"
        if not all(parquet):
            self._csv = _csv_options(options)
            read, parse, convert = self._csv
            file_format = pa_dataset.CsvFileFormat(
                read_options=read, parse_options=parse, convert_options=convert)
        try:
            self.dataset = pa_dataset.dataset(self.files, format=file_format)
            self.schema = self.dataset.schema
        except (pa.ArrowException, OSError, ValueError) as error:
            raise DataError(f"Cannot read {self.path!r} as {self.format} "
                            f"tables: {error}") from None
        self.columns = list(self.schema.names)

    def check_columns(self, columns, what="a column the config needs"):
        """Raises a DataError naming the columns of `columns` the table lacks."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise DataError(f"{what} {missing} not found in {self.path!r}. Its "
                            f"columns: {self.columns}. Fix the config or the "
                            f"data.")

    def describe(self):
        """`{"path", "format", "files": [{"name", "bytes"}]}`: what a run
        records of its source (sizes, not a content hash: hashing the table
        would take a pass of its own)."""
        return {"path": self.path, "format": self.format,
                "files": [{"name": os.path.relpath(f, self.path) if f != self.path
                           else os.path.basename(f),
                           "bytes": os.path.getsize(f)} for f in self.files]}

    def _batches(self, columns):
        """The record batches of `columns`, file by file and, for Parquet, row
        group by row group: a scan of a whole Parquet file keeps what it has
        read allocated until its end (apache/arrow#39808), so memory would
        grow with the file; one row group at a time, unbuffered, with little
        read-ahead, it stays at about a row group."""
        if self.format == "csv":
            yield from self._csv_batches(columns)
            return
        options = {"schema": self.schema, "columns": columns,
                   "batch_size": self.chunk_rows, "batch_readahead": 2,
                   "fragment_readahead": 1,
                   "fragment_scan_options": pa_dataset.ParquetFragmentScanOptions(
                       pre_buffer=False, use_buffered_stream=True)}
        for fragment in self.dataset.get_fragments():
            for piece in fragment.split_by_row_group():
                yield from piece.to_batches(**options)

    def _csv_batches(self, columns):
        """CSV record batches of up to `chunk_rows` rows, from
        `pyarrow.csv.open_csv` (a streaming reader of one block at a time:
        memory stays bounded, where a dataset scan of a CSV file read ahead
        of a slow consumer), with every file read as the first one's
        column types."""
        read, parse, convert = self._csv
        types = {name: self.schema.field(name).type for name in columns}
        convert = pa_csv.ConvertOptions(
            column_types=types, include_columns=columns,
            null_values=convert.null_values,
            strings_can_be_null=convert.strings_can_be_null)
        for path in self.files:
            with pa_csv.open_csv(path, read_options=read, parse_options=parse,
                                 convert_options=convert) as reader:
                pending = []
                for batch in reader:
                    pending.append(batch)
                    table = pa.Table.from_batches(pending, reader.schema)
                    full = table.num_rows - table.num_rows % self.chunk_rows
                    for start in range(0, full, self.chunk_rows):
                        yield table.slice(start, self.chunk_rows)
                    pending = table.slice(full).to_batches()
                if pending:
                    yield pa.Table.from_batches(pending, reader.schema)

    def chunks(self, columns=None):
        """Yields `(first_row, frame)`: each chunk as a pandas DataFrame of
        `columns` (default: all), with the row number of its first row in the
        whole table.

        Raises:
            DataError: a column is missing, or a file cannot be parsed (e.g. a
                CSV value that does not fit the type read from the first
                block: convert the file to Parquet, which stores types).
        """
        columns = list(self.columns if columns is None else columns)
        self.check_columns(columns)
        first = 0
        try:
            for batch in self._batches(columns):
                if batch.num_rows:
                    yield first, batch.to_pandas()
                    first += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"Cannot read {self.path!r} after row {first:,}: "
                            f"{error}. A CSV column whose later values do not fit "
                            f"the type of its first rows fails so; convert the "
                            f"table to Parquet.") from None


# === Held-out rows ===


def _splitmix64(values, seed):
    """SplitMix64's finalizer (Steele, Lea and Flood, "Fast splittable
    pseudorandom number generators", OOPSLA 2014) of `values + seed * golden`:
    uint64 `(rows,)`, well spread even for consecutive row numbers."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(seed) * np.uint64(
            0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class SplitRule:
    """Which rows of a table are held out, decided row by row.

    A row's key is its row number in the table (0-based, files in sorted
    order), or with `by` the value of that column (rows with the same value
    stay on one side, like `data.split.method: group`). Its hash
    `h = SplitMix64(key, seed) / 2**64` is uniform in [0, 1): the row is
    validation when `h < validation`, test when `validation <= h <
    validation + test`, else training.

    Args:
        validation: float in [0, 1), the expected fraction of validation rows.
        test: float in [0, 1), the expected fraction of test rows.
        seed: int >= 0, the hash's seed.
        by: str or None, a column whose values are the keys.

    Raises:
        ConfigError: fractions outside [0, 1) or summing to 1 or more.

    Example:
        >>> rule = SplitRule(validation=0.1, test=0.1, seed=0)
        >>> parts = rule.parts(pd.DataFrame(index=range(100_000)), first_row=0)
        >>> round(float((parts == 1).mean()), 2)
        0.1
    """

    def __init__(self, validation=0.1, test=0.1, seed=0, by=None):
        if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
            raise ConfigError(f"Split fractions must be in [0, 1) and sum to less "
                              f"than 1. Received: validation={validation!r}, "
                              f"test={test!r}")
        self.validation = float(validation)
        self.test = float(test)
        self.seed = int(seed)
        self.by = by

    def parts(self, frame, first_row):
        """int8 `(rows,)` part codes (0 train, 1 validation, 2 test) of the rows
        of `frame`, whose first row is row `first_row` of the table."""
        if self.by is None:
            keys = np.arange(first_row, first_row + len(frame), dtype=np.uint64)
        else:
            keys = pd.util.hash_array(frame[self.by].astype(str).to_numpy(object))
        share = _splitmix64(keys, self.seed) / _HASH_RANGE
        codes = np.zeros(len(share), np.int8)
        codes[share < self.validation + self.test] = 2
        codes[share < self.validation] = 1
        return codes

    def describe(self):
        """The rule as a JSON-able dict (stored in a run's `split.json`)."""
        key = "row number" if self.by is None else f"column {self.by!r}"
        return {"rule": f"SplitMix64({key}, seed) / 2**64: < validation -> "
                        f"validation, < validation + test -> test, else train",
                "by": self.by, "validation": self.validation, "test": self.test,
                "seed": self.seed}


# === The fit sample ===


def fit_sample(source, rows, seed=0, rule=None, columns=None):
    """A uniform random sample of at most `rows` training rows, in one pass.

    Bottom-k sampling: every row draws a uniform key from a generator seeded
    with `seed`, and the rows with the `rows` smallest keys are kept, which
    is a uniform sample without replacement (a reservoir sample), whatever
    the order of the file. Memory: the sample plus one chunk.

    Args:
        source: a `TableSource`, or a path (read with default options).
        rows: int >= 1, the sample's size (the whole training part when it
            is smaller).
        seed: int, the sample's seed.
        rule: a `SplitRule` or None (every row is a training row). Rows it
            holds out are not sampled.
        columns: list of column names to read, or None for all.

    Returns:
        `(sample, counts)`: the sample as a DataFrame in table order (index
        0..n-1), and `{part: rows}` of every part of the table.

    Raises:
        DataError: the table cannot be read, or has no training rows.
    """
    if not isinstance(source, TableSource):
        source = TableSource(source)
    rng = np.random.default_rng(seed)
    kept, keys, positions = None, np.empty(0), np.empty(0, np.int64)
    counts = dict.fromkeys(PARTS, 0)
    for first, chunk in source.chunks(columns):
        parts = (np.zeros(len(chunk), np.int8) if rule is None
                 else rule.parts(chunk, first))
        for code, part in enumerate(PARTS):
            counts[part] += int((parts == code).sum())
        train = parts == 0
        chunk_keys = rng.random(int(train.sum()))
        chunk_positions = np.flatnonzero(train) + first
        chunk = chunk[train]
        if len(keys) >= rows:
            # Only rows whose key beats the current largest kept key can enter.
            better = chunk_keys < keys.max()
            chunk = chunk[better]
            chunk_keys, chunk_positions = chunk_keys[better], chunk_positions[better]
        if not len(chunk):
            continue
        kept = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
        keys = np.concatenate([keys, chunk_keys])
        positions = np.concatenate([positions, chunk_positions])
        if len(keys) > rows:
            best = np.argpartition(keys, rows - 1)[:rows]
            kept = kept.iloc[best].reset_index(drop=True)
            keys, positions = keys[best], positions[best]
    if kept is None:
        raise DataError(f"{source.path!r} has no training rows (rows per part: "
                        f"{counts}).")
    order = np.argsort(positions, kind="stable")
    return kept.iloc[order].reset_index(drop=True), counts


# === Streamed splits ===


def _needed_columns(features, tasks, rule):
    """The columns the features, the tasks and the rule read, in order."""
    columns = [f.name for f in features]
    columns += [c for t in tasks or () for c in t.target_columns]
    if rule is not None and rule.by is not None:
        columns.append(rule.by)
    return list(dict.fromkeys(columns))


class StreamedSplit:
    """One split of a streamed table: the rows of `source` that `rule` sends
    to `part` (every row when `rule` is None).

    Stands where the in-memory path has a DataFrame: `len()` is its number of
    rows, `sample()` draws rows from the fit sample (training split only).

    Args:
        source: a `TableSource`.
        part: one of `PARTS`.
        rule: a `SplitRule`, or None when the source is the split's own file.
        rows: int, the split's rows (`check_splits` makes it exact).
        non_finite: `"error"`, `"drop"` or `"impute"`, applied to each chunk
            (`kmtl.data.handle_non_finite`).
        fitted_on: the fit sample (a DataFrame) of a training split, or None.
        shuffle_buffer: int, rows in the training shuffle window.

    Attributes:
        exact: bool, whether `rows` was counted after `non_finite` (by
            `check_splits`, or `non_finite` is not `"drop"`): the dataset then
            asserts its number of batches, so Keras shows epoch progress.
    """

    def __init__(self, source, part="train", rule=None, rows=0, non_finite="error",
                 fitted_on=None, shuffle_buffer=262_144):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}. Received: part={part!r}")
        self.source = source
        self.part = part
        self.rule = rule
        self.rows = int(rows)
        self.non_finite = non_finite
        self.fitted_on = fitted_on
        self.shuffle_buffer = int(shuffle_buffer)
        self.exact = non_finite != "drop"

    def __len__(self):
        return self.rows

    def __repr__(self):
        return (f"StreamedSplit({self.source.path!r}, part={self.part!r}, "
                f"rows={self.rows})")

    def sample(self, n, random_state=None):
        """`n` rows (at most the fit sample's) drawn from the fit sample, a
        uniform sample of the split, as `DataFrame.sample` draws them."""
        if self.fitted_on is None:
            raise ValueError(f"{self!r} has no fit sample to draw rows from.")
        n = min(n, len(self.fitted_on))
        return self.fitted_on.sample(n=n, random_state=random_state)

    def select(self, chunk, first):
        """The rows of `chunk` (table rows from `first`) in this split."""
        if self.rule is None:
            return chunk
        return chunk[self.rule.parts(chunk, first) == PARTS.index(self.part)]

    def frames(self, columns, counts=None):
        """Yields this split's rows chunk by chunk as DataFrames (index from
        0), with non-finite values handled; adds `{column: count}` of those
        values found to `counts` when given."""
        for first, chunk in self.source.chunks(columns):
            chunk = self.select(chunk, first)
            if self.non_finite != "error":
                chunk, found = handle_non_finite(chunk, self.non_finite)
                if counts is not None:
                    for column, count in found.items():
                        counts[column] = counts.get(column, 0) + count
            if len(chunk):
                yield chunk.reset_index(drop=True)


def _encode(frame, features, tasks):
    """`make_dataset`'s arrays for `frame`'s rows: the encoded feature
    blocks, and with `tasks` the labels and sample weights."""
    blocks = encode_frame(features, frame)
    if not tasks:
        return blocks
    labels, weights = encode_labels(frame, tasks)
    return blocks, labels, weights


def check_splits(splits, features, tasks):
    """Encodes every row of `splits` once (one pass per source), so a bad
    value is a `DataError` before training; sets each split's exact `rows`.

    Args:
        splits: `{name: StreamedSplit or None}`.
        features: fitted features.
        tasks: fitted tasks.

    Returns:
        `{name: {column: count}}` of the non-finite values `non_finite`
        dropped or imputed in each split (splits without any left out).

    Raises:
        DataError: a value that does not fit its feature or task, named by
            the feature's or task's own message, with the split and path.
    """
    found = {}
    by_source = {}
    for name, split in splits.items():
        if split is not None:
            by_source.setdefault(id(split.source), []).append((name, split))
    for members in by_source.values():
        source = members[0][1].source
        rule = next((s.rule for _, s in members if s.rule is not None), None)
        columns = _needed_columns(features, tasks, rule)
        rows = dict.fromkeys((name for name, _ in members), 0)
        counts = {name: {} for name, _ in members}
        for first, chunk in source.chunks(columns):
            for name, split in members:
                part = split.select(chunk, first)
                if split.non_finite != "error":
                    part, bad = handle_non_finite(part, split.non_finite)
                    for column, count in bad.items():
                        counts[name][column] = counts[name].get(column, 0) + count
                if not len(part):
                    continue
                try:
                    _encode(part.reset_index(drop=True), features, tasks)
                except DataError as error:
                    raise DataError(f"{error} (Rows counted in the chunk of "
                                    f"{name} rows of {source.path!r} that starts "
                                    f"at table row {first:,}.)") from None
                rows[name] += len(part)
        for name, split in members:
            split.rows, split.exact = rows[name], True
            if counts[name]:
                found[name] = counts[name]
    return found


def _signature(split, features, tasks, columns):
    """The `tf.TensorSpec` structure of `_encode`'s output, from the source's
    first row."""
    _, chunk = next(split.source.chunks(columns))
    row, _ = handle_non_finite(chunk.head(1).reset_index(drop=True), "impute")
    return tf.nest.map_structure(
        lambda a: tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)),
        _encode(row, features, tasks))


def stream_dataset(split, features, tasks=None, batch_size=256, shuffle=False,
                   seed=0, first_epoch=0, shuffle_buffer=None):
    """A `tf.data.Dataset` of batches read from files in chunks: what
    `make_dataset` gives for a DataFrame, for a `StreamedSplit`.

    Each chunk (`TableSource.chunk_rows` rows) is filtered to the split's
    rows, its non-finite values handled, and encoded with
    `kmtl.features.encode_frame` and `encode_labels`, as `make_dataset`
    encodes a frame; rows left over at a chunk's end start the next batch, so
    without shuffling the batches equal `make_dataset`'s on the same rows.
    With `shuffle`, rows are gathered into a window of about `shuffle_buffer`
    rows, permuted, and the first half of the window's full batches emitted
    (the rest stays, to mix with the next chunks); the order depends on
    `(seed, epoch)` only. The files are read again every epoch; memory is
    bounded by the chunk, the window and two prefetched batches.

    Args:
        split: a `StreamedSplit`.
        features: list of fitted `kmtl.features.Feature`.
        tasks: list of fitted `kmtl.Task`, or None for features only.
        batch_size: int, rows per batch.
        shuffle: bool. Shuffle within the window, differently every epoch.
        seed: int, the shuffle's seed.
        first_epoch: int, the epoch number of the first pass (a resumed run
            passes the epochs done, to see the orders an uninterrupted run
            sees).
        shuffle_buffer: int or None (the split's `shuffle_buffer`).

    Returns:
        A dataset of `(features, labels, sample_weights)` (or `features`),
        with the structure, dtypes and shapes `make_dataset(encoded=True)`
        gives. Its cardinality is known when `split.exact`.

    Raises:
        DataError: a column is missing (here), or a value does not fit its
            feature or task (while iterating, wrapped by TensorFlow in an
            `InvalidArgumentError` whose message holds the DataError's).
        ValueError: `batch_size` is not a positive integer.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: "
                         f"batch_size={batch_size!r}")
    window = int(shuffle_buffer or split.shuffle_buffer)
    columns = _needed_columns(features, tasks, split.rule)
    split.source.check_columns(columns)
    signature = _signature(split, features, tasks, columns)
    epochs = iter(range(first_epoch, 2**62))

    def generate():
        rng = (np.random.default_rng([seed, next(epochs)]) if shuffle else None)
        pending = None
        for frame in split.frames(columns):
            flat = tf.nest.flatten(_encode(frame, features, tasks))
            pending = flat if pending is None else [
                np.concatenate([a, b]) for a, b in zip(pending, flat)]
            rows = len(pending[0])
            if shuffle:
                if rows < window + batch_size:
                    continue
                order = rng.permutation(rows)
                pending = [a[order] for a in pending]
                count = (rows - window // 2) // batch_size
            else:
                count = rows // batch_size
            for b in range(count):
                yield tf.nest.pack_sequence_as(
                    signature, [a[b * batch_size:(b + 1) * batch_size]
                                for a in pending])
            pending = [a[count * batch_size:] for a in pending]
        if pending is None or not len(pending[0]):
            return
        if shuffle:
            order = rng.permutation(len(pending[0]))
            pending = [a[order] for a in pending]
        for start in range(0, len(pending[0]), batch_size):
            yield tf.nest.pack_sequence_as(
                signature, [a[start:start + batch_size] for a in pending])

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if split.exact:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            -(-split.rows // batch_size)))
    return dataset.prefetch(2)
