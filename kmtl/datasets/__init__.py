"""Data sets: Palmer penguins (embedded), UCI Census-Income (KDD), and the
synthetic two-task regression data of the MMoE paper."""

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

__all__ = [
    "CENSUS_CATEGORICAL",
    "CENSUS_NUMERIC",
    "PENGUIN_FEATURES",
    "SYNTHETIC_TARGETS",
    "load_census_income",
    "load_penguins",
    "make_synthetic_tasks",
    "penguin_tasks",
    "synthetic_feature_names",
    "synthetic_tasks",
]
