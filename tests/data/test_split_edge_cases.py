"""Regression tests for `kmtl.data.split_frame` found by the fuzz tests
(tests/fuzz): a held-out part with fewer rows than strata, and seeds that
scikit-learn cannot take."""

import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.data import split_frame
from kmtl.errors import ConfigError


def _four_classes():
    """20 rows, classes a, b, c, d five times each."""
    return pd.DataFrame({"x": np.arange(20.0), "k": list("abcd") * 5})


def test_fewer_test_rows_than_strata_cuts_validation_and_test_at_random():
    # 8 held-out rows (5 + 3) hold two rows of each of the 4 classes; 3 test
    # rows cannot hold one of each, so validation and test are cut at random
    # (this was scikit-learn's raw ValueError "The test_size = 3 should be
    # greater or equal to the number of classes = 4").
    frame = _four_classes()
    train, validation, test = split_frame(frame, [kmtl.Task("k", "multiclass")],
                                          "stratified", 0.25, 0.15, seed=0)
    assert [len(train), len(validation), len(test)] == [12, 5, 3]
    # Train is still stratified: 3 rows of each class.
    assert train["k"].value_counts().to_dict() == {c: 3 for c in "abcd"}
    rows = pd.concat([train, validation, test])["x"]
    assert sorted(rows) == list(range(20))


@pytest.mark.parametrize("method", ["random", "stratified", "group"])
@pytest.mark.parametrize("seed", [-1, 2**32, 10**30, 1.5, True, None])
def test_a_seed_outside_32_bits_is_a_config_error(method, seed):
    # Before: a DataError blaming the strata ("cannot stratify ...") for
    # `random` and `stratified`, a raw ValueError for `group`.
    options = {"group_by": "x"} if method == "group" else {}
    with pytest.raises(ConfigError, match=r"split\.seed must be an integer in "
                                          r"\[0, 2\*\*32 - 1\].*Received: seed="):
        split_frame(_four_classes(), [kmtl.Task("k", "multiclass")], method,
                    0.25, 0.25, seed=seed, **options)


def test_the_largest_seed_splits():
    parts = split_frame(_four_classes(), [kmtl.Task("k", "multiclass")],
                        "random", 0.25, 0.25, seed=2**32 - 1)
    assert [len(p) for p in parts] == [10, 5, 5]
    again = split_frame(_four_classes(), [kmtl.Task("k", "multiclass")],
                        "random", 0.25, 0.25, seed=np.int64(2**32 - 1))
    for a, b in zip(parts, again):
        pd.testing.assert_frame_equal(a, b)
