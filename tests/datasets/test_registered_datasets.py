"""Every registered built-in data set: look-up by name, config round trip, and
what `load` returns (one table, or the protocol's three splits)."""

import pandas as pd
import pytest

import kmtl
from kmtl.datasets import Dataset
from kmtl.errors import ConfigError

# Rows of each data set as published (census: train, validation, test).
ROWS = {"penguins": 344, "census_income": (199_523, 49_881, 49_881)}


@pytest.mark.parametrize("name", kmtl.datasets.list_datasets())
def test_registered_dataset_loads_as_declared(name, request):
    assert name in ROWS, f"Add the row counts of {name!r} to ROWS."
    dataset = kmtl.datasets.get(name)
    assert isinstance(dataset, Dataset) and type(dataset).registered_name == name
    config = kmtl.datasets.DATASETS.serialize(dataset)
    assert config == {"class_name": name, "config": {}}
    assert type(kmtl.datasets.DATASETS.deserialize(config)) is type(dataset)
    data_dir = None
    if name == "census_income":
        data_dir = request.getfixturevalue("census_dir")
    loaded = dataset.load(data_dir)
    if dataset.has_splits:
        assert tuple(len(frame) for frame in loaded) == ROWS[name]
        assert all(isinstance(frame, pd.DataFrame) for frame in loaded)
    else:
        assert isinstance(loaded, pd.DataFrame) and len(loaded) == ROWS[name]


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"Unknown data set 'penguin'\. "
                                          r"Available: \['census_income', "
                                          r"'penguins'\]"):
        kmtl.datasets.get("penguin")

