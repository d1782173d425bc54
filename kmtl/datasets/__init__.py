"""Real data sets: Palmer penguins (embedded) and UCI Census-Income (KDD)."""

from kmtl.datasets.census_income import CENSUS_CATEGORICAL
from kmtl.datasets.census_income import CENSUS_NUMERIC
from kmtl.datasets.census_income import load_census_income
from kmtl.datasets.penguins import PENGUIN_FEATURES
from kmtl.datasets.penguins import load_penguins
from kmtl.datasets.penguins import penguin_tasks

__all__ = [
    "CENSUS_CATEGORICAL",
    "CENSUS_NUMERIC",
    "PENGUIN_FEATURES",
    "load_census_income",
    "load_penguins",
    "penguin_tasks",
]
