"""Data sets: Palmer penguins (embedded), UCI Census-Income (KDD), Women's
E-Commerce Clothing Reviews (text), and the synthetic two-task regression data
of the MMoE paper.

The first three are registered by name for `data.dataset` in a config:
`kmtl.datasets.get("penguins").load()`, `kmtl.datasets.list_datasets()`.
"""

from kmtl.datasets.base import DATASETS
from kmtl.datasets.base import Dataset
from kmtl.datasets.census_income import CENSUS_CATEGORICAL
from kmtl.datasets.census_income import CENSUS_NUMERIC
from kmtl.datasets.census_income import load_census_income
from kmtl.datasets.penguins import PENGUIN_FEATURES
from kmtl.datasets.penguins import load_penguins
from kmtl.datasets.penguins import penguin_tasks
from kmtl.datasets.synthetic import SYNTHETIC_TARGETS
from kmtl.datasets.synthetic import make_synthetic_tasks
from kmtl.datasets.synthetic import synthetic_feature_names
from kmtl.datasets.synthetic import synthetic_tasks
from kmtl.datasets.womens_clothing_reviews import REVIEWS_TEXT
from kmtl.datasets.womens_clothing_reviews import load_womens_clothing_reviews

get = DATASETS.get
"""A built-in data set by name: `get("penguins")` (`Registry.get`)."""
list_datasets = DATASETS.names
"""The built-in data set names, sorted: `["census_income", "penguins",
"womens_clothing_reviews"]`."""

__all__ = [
    "Dataset",
    "get",
    "list_datasets",
    "CENSUS_CATEGORICAL",
    "CENSUS_NUMERIC",
    "PENGUIN_FEATURES",
    "REVIEWS_TEXT",
    "SYNTHETIC_TARGETS",
    "load_census_income",
    "load_penguins",
    "load_womens_clothing_reviews",
    "make_synthetic_tasks",
    "penguin_tasks",
    "synthetic_feature_names",
    "synthetic_tasks",
]
