"""Strategies shared by the fuzz tests: awkward values, awkward names, and
the per-test number of examples."""

import math
import os

import pandas as pd
from hypothesis import assume
from hypothesis import settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("KMTL_FUZZ_EXAMPLES", "0"))


def examples(default, **options):
    """Settings with `default` examples (`KMTL_FUZZ_EXAMPLES` overrides it)
    and any other hypothesis `options`."""
    return settings(max_examples=EXAMPLES or default, **options)


# Unicode text without surrogates (they cannot be written as UTF-8) and
# without NUL (no file format or YAML keeps it).
unicode_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\0"),
    max_size=12)

awkward_names = st.one_of(
    unicode_text.filter(lambda s: s.strip() != ""),
    st.sampled_from(["x", "é à", "naïve col", "a b", "Größe (kg)", "列", "1",
                     "-", "col,with,commas", 'quote"d', "tab\tname", "émoji 🐧",
                     "__kmtl_row__", "label", "NaN", "null", "True"]))

special_floats = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e30,
                                  -1e30, 3.5e38, 1e-320, 1.0])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), special_floats,
    st.floats(allow_nan=True, allow_infinity=True), unicode_text,
    st.sampled_from(["", "yes", "off", "1e-3", "nan", "inf", "-1", "0", "adam",
                     "mmoe", "binary", "a/b", ".", ".."]))

# Values nested a few levels deep: lists and mappings of scalars.
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(unicode_text, inner, max_size=3)),
    max_leaves=8)

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([math.nan, math.inf, -math.inf, 1e39, 0.5]))


def has_carriage_return(frame):
    """Whether a cell or column name holds a carriage return: pandas writes
    it unquoted and a CSV reader takes it for the end of a line, so the file
    holds other rows than the frame (pandas' doing, not kmtl's)."""
    return any("\r" in str(c) for c in frame.columns) or bool(frame.map(
        lambda v: isinstance(v, str) and "\r" in v).any().any())


def write_case_table(frame, path):
    """Writes a generated frame as CSV or Parquet (by `path`'s suffix), or
    rejects the example (`hypothesis.assume`) when the file could not hold
    the frame: a carriage return in a CSV, a column of mixed types in
    Parquet."""
    if str(path).endswith(".csv"):
        assume(not has_carriage_return(frame))
        frame.to_csv(path, index=False)
        return
    try:
        frame.to_parquet(path, index=False)
    except Exception:  # pyarrow refuses a column of mixed types
        assume(False)



# === Tables and configs for a run ===

ROW_COLUMN = "__kmtl_row__"
"""The column `kmtl.runs.data.split_data` numbers rows in: a table's own
column of that name is lost (test_a_column_named_like_the_row_counter)."""
# Unicode categories, some with spaces, accents and punctuation.
CATEGORIES = st.one_of(st.none(), st.sampled_from(["a", "b", "é", "Ω 1", "列",
                                                   "", " ", "nan", "🐧"]),
                       unicode_text)
# Each column is clean (valid values and missing ones) or, one time in four,
# dirty: it may also hold values that do not fit (inf, 1e39, 2 in a binary
# column, a stray string in a number column).
CLEAN = {
    "numeric": st.one_of(st.none(), st.floats(-10, 10)),
    "binary": st.sampled_from([0.0, 1.0, 0.0, 1.0, None]),
    "regression": st.one_of(st.none(), st.floats(-1e6, 1e6)),
    "multiclass": st.sampled_from(["A", "B", "C", "ü", None]),
}
DIRTY = {
    "numeric": FLOATS,
    "binary": st.sampled_from([math.nan, math.inf, 2.0, 0.5, -1.0]),
    "regression": st.sampled_from([math.nan, math.inf, -math.inf, 1e39, -1e300]),
    "multiclass": st.sampled_from(["", " A", "🐧"]),
}


@st.composite
def run_cases(draw, min_rows=0, dirty=4):
    """`(frame, config)`: a table of `min_rows` to 24 rows with a numeric, a
    categorical and optionally a text feature, under awkward names, labels
    for a binary, a regression and a multiclass task, and a config naming its
    columns. One column in `dirty` may hold values that do not fit."""
    rows = draw(st.integers(min_rows, 24))
    names = draw(st.lists(awkward_names.filter(lambda n: n != ROW_COLUMN),
                          min_size=6, max_size=6, unique=True))
    x, color, notes, clicked, price, kind = names

    def column(kind):
        cells = CLEAN[kind]
        if draw(st.integers(1, dirty)) == 1:
            cells = st.one_of(cells, DIRTY[kind])
        return draw(st.lists(cells, min_size=rows, max_size=rows))

    many = draw(st.booleans())
    frame = pd.DataFrame({
        x: pd.Series(column("numeric"), dtype="float64"),
        color: ([f"c{i}·{draw(unicode_text)}" for i in range(rows)] if many
                else draw(st.lists(CATEGORIES, min_size=rows, max_size=rows))),
        notes: draw(st.lists(st.none() | unicode_text, min_size=rows,
                             max_size=rows)),
        clicked: column("binary"),
        price: column("regression"),
        kind: column("multiclass"),
    })
    if rows and draw(st.integers(1, 2 * dirty + 2)) == 1:  # a stray text
        frame[x] = frame[x].astype(object)
        frame.loc[draw(st.integers(0, rows - 1)), x] = draw(unicode_text)
    fraction = st.sampled_from([0.0, 0.2, 0.34])
    config = {
        "name": "fuzz",
        "data": {"train": "table", "non_finite": draw(st.sampled_from(
            ["error", "drop", "impute"])),
            "split": {"method": draw(st.sampled_from(
                ["random", "per_task", "stratified", "stratified", "ordered",
                 "group"])), "validation": draw(fraction),
                "test": draw(fraction)}},
        "features": {"numeric": [x], "categorical": [color]},
        "tasks": [{"name": "clicked", "type": "binary", "target": clicked},
                  {"name": "price", "type": "regression", "target": price},
                  {"name": "kind", "type": "multiclass", "target": kind}],
        "training": {"batch_size": draw(st.sampled_from([1, 4, 1000]))},
    }
    split = config["data"]["split"]
    if split["method"] == "ordered":
        split["order_by"] = draw(st.sampled_from([None, x, notes]))
    elif split["method"] == "group":
        # The group column (unicode categories with gaps) is not a feature.
        split["group_by"] = color
        config["features"]["categorical"] = []
    if draw(st.booleans()):
        config["features"]["text"] = [{"column": notes, "encoder": "bag",
                                       "min_frequency": 1}]
    config["tasks"] = draw(st.lists(st.sampled_from(config["tasks"]), min_size=1,
                                    max_size=3, unique_by=lambda t: t["name"]))
    return frame, config


