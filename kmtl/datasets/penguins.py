"""Palmer penguins: the small real data set kmtl trains by default."""

from kmtl.datasets.base import DATASETS
from kmtl.datasets.base import Dataset
from kmtl.tasks import Task

PENGUIN_FEATURES = {
    "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "year"],
    "categorical": ["island"],
}
"""The penguin feature columns by kind: `{"numeric": [...], "categorical":
[...]}`."""


def penguin_tasks():
    """The three penguin tasks.

    Returns:
        list of unfitted `kmtl.Task`: `species` (multiclass), `sex` (binary,
        positive `"female"`; 11 rows without a label) and `body_mass_g`
        (regression, in grams).
    """
    return [
        Task("species", "multiclass"),
        Task("sex", "binary", positive="female"),
        Task("body_mass_g", "regression"),
    ]


def load_penguins():
    """The Palmer penguins table (344 rows, 8 columns) from the `palmerpenguins`
    package, which ships the data: no download.

    Gorman, Williams and Fraser, "Ecological sexual dimorphism and environmental
    variability within a community of Antarctic penguins", PLoS ONE 9(3), 2014.

    Returns:
        A DataFrame with columns species, island, bill_length_mm, bill_depth_mm,
        flipper_length_mm, body_mass_g, sex, year. Missing values stay NaN (`sex`
        is missing on 11 rows; two rows miss every measurement).
    """
    import palmerpenguins

    return palmerpenguins.load_penguins()


@DATASETS.register("penguins")
class Penguins(Dataset):
    """The Palmer penguins table (`load_penguins`), split by the config."""

    def load(self, data_dir=None):
        return load_penguins()
