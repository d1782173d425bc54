"""Shared fixtures for the kmtl tests."""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import kmtl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CENSUS_FILES = ("census-income.data.gz", "census-income.test.gz")


@pytest.fixture
def penguins():
    """The Palmer penguins table (344 rows)."""
    return kmtl.datasets.load_penguins()


@pytest.fixture
def tiny_frame():
    """Six hand-made rows: numeric `x1` (one NaN) and `x2`, categorical `color`,
    and labels for a binary task `clicked` (row 2 unlabelled), a multiclass task
    `kind` and a regression task `price`."""
    return pd.DataFrame({
        "x1": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
        "x2": [0.5, -0.5, 1.5, 0.0, 2.0, -1.0],
        "color": ["red", "blue", "red", "green", "blue", "red"],
        "clicked": [1.0, 0.0, np.nan, 1.0, 0.0, 1.0],
        "kind": ["b", "a", "c", "a", "b", "c"],
        "price": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    })


@pytest.fixture(scope="session")
def census_dir():
    """The folder holding the Census-Income files; skips when they are absent."""
    folder = os.environ.get("KMTL_DATA_DIR") or os.path.join(
        REPO, "..", "shared", "data", "census-income")
    candidates = (folder, os.path.join(folder, "census-income"))
    for candidate in candidates:
        if all(os.path.isfile(os.path.join(candidate, f)) for f in CENSUS_FILES):
            return os.path.abspath(candidate)
    pytest.skip(f"Census-Income files {CENSUS_FILES} not found in {folder}")


@pytest.fixture(scope="session")
def reviews_dir():
    """The folder holding `womens_clothing_reviews.parquet`; skips when it is
    absent."""
    from kmtl.datasets.womens_clothing_reviews import REVIEWS_FILE
    from kmtl.datasets.womens_clothing_reviews import REVIEWS_FOLDER

    root = os.environ.get("KMTL_DATA_DIR") or os.path.join(
        REPO, "..", "shared", "data")
    for candidate in (root, os.path.join(root, REVIEWS_FOLDER)):
        if os.path.isfile(os.path.join(candidate, REVIEWS_FILE)):
            return os.path.abspath(candidate)
    pytest.skip(f"{REVIEWS_FILE} not found in {root}")
