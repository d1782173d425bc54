"""Every registered built-in data set: look-up by name, config round trip, and
what `load` returns (one table, or the protocol's three splits)."""

import pandas as pd
import pytest

import kmtl
from kmtl.datasets import Dataset
from kmtl.errors import ConfigError

# Rows of each data set as published (census: train, validation, test).
ROWS = {"penguins": 344, "census_income": (199_523, 49_881, 49_881),
        "womens_clothing_reviews": (18_788, 2_349, 2_349)}
DATA_DIRS = {"census_income": "census_dir", "womens_clothing_reviews": "reviews_dir"}


@pytest.mark.parametrize("name", kmtl.datasets.list_datasets())
def test_registered_dataset_loads_as_declared(name, request):
    assert name in ROWS, f"Add the row counts of {name!r} to ROWS."
    dataset = kmtl.datasets.get(name)
    assert isinstance(dataset, Dataset) and type(dataset).registered_name == name
    config = kmtl.datasets.DATASETS.serialize(dataset)
    assert config == {"class_name": name, "config": {}}
    assert type(kmtl.datasets.DATASETS.deserialize(config)) is type(dataset)
    data_dir = None
    if name in DATA_DIRS:
        data_dir = request.getfixturevalue(DATA_DIRS[name])
    loaded = dataset.load(data_dir)
    if dataset.has_splits:
        assert tuple(len(frame) for frame in loaded) == ROWS[name]
        assert all(isinstance(frame, pd.DataFrame) for frame in loaded)
    else:
        assert isinstance(loaded, pd.DataFrame) and len(loaded) == ROWS[name]


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"Unknown data set 'penguin'\. "
                                          r"Available: \['census_income', "
                                          r"'penguins', 'womens_clothing_reviews'"
                                          r"\]"):
        kmtl.datasets.get("penguin")



def test_reviews_split_is_the_protocols_permutation(reviews_dir):
    import numpy as np

    from kmtl.datasets.womens_clothing_reviews import reviews_file

    frame = pd.read_parquet(reviews_file(reviews_dir))
    order = np.random.RandomState(0).permutation(len(frame))
    train, validation, test = kmtl.datasets.load_womens_clothing_reviews(
        reviews_dir)
    pd.testing.assert_frame_equal(
        test, frame.iloc[order[21_137:]].reset_index(drop=True))
    pd.testing.assert_frame_equal(
        validation, frame.iloc[order[18_788:21_137]].reset_index(drop=True))
    # The data README's majority-class rating accuracy on the test split.
    assert (test["Rating"] == 5).mean() == pytest.approx(0.5534, abs=1e-4)


def test_reviews_file_errors_name_the_folder_and_the_fix(tmp_path, monkeypatch):
    from kmtl.datasets.womens_clothing_reviews import REVIEWS_FILE
    from kmtl.errors import DataError

    monkeypatch.delenv("KMTL_DATA_DIR", raising=False)
    with pytest.raises(DataError, match=r"womens_clothing_reviews.parquet is not "
                                        r"in \[.*\]. Pass --data-dir"):
        kmtl.datasets.load_womens_clothing_reviews(str(tmp_path))
    (tmp_path / REVIEWS_FILE).write_bytes(b"not parquet")
    with pytest.raises(DataError, match="sha256 differs"):
        kmtl.datasets.load_womens_clothing_reviews(str(tmp_path))
