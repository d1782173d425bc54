"""UCI Census-Income (KDD), the benchmark of the MMoE paper."""

import hashlib
import os

import keras
import numpy as np

from kmtl.data.io import read_table
from kmtl.datasets.base import DATASETS
from kmtl.datasets.base import Dataset
from kmtl.errors import DataError

CENSUS_ORIGIN = ("https://archive.ics.uci.edu/ml/machine-learning-databases/"
                 "census-income-mld")
CENSUS_FILES = {
    "census-income.data.gz":
        "f8e10dd0c1b6ca6cefddcee15ff102bb7404a8fdbcd0d8cc8c540190f0c3a12c",
    "census-income.test.gz":
        "04b8d3be381c5f8ec9ecd6d3042d787a874ac0b0fd70354bd8253aea6c5546d4",
}
CENSUS_COLUMNS = [
    "age", "class_worker", "det_ind_code", "det_occ_code", "education",
    "wage_per_hour", "hs_college", "marital_stat", "major_ind_code",
    "major_occ_code", "race", "hisp_origin", "sex", "union_member", "unemp_reason",
    "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends",
    "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg",
    "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father",
    "country_mother", "country_self", "citizenship", "own_or_self", "vet_question",
    "vet_benefits", "weeks_worked", "year", "income_50k",
]
CENSUS_NUMERIC = ["age", "wage_per_hour", "capital_gains", "capital_losses",
                  "stock_dividends", "num_emp", "weeks_worked"]
"""The numeric feature columns of Census-Income."""
CENSUS_NOT_FEATURES = ("instance_weight", "income_50k", "marital_stat")
CENSUS_CATEGORICAL = [c for c in CENSUS_COLUMNS
                      if c not in CENSUS_NUMERIC and c not in CENSUS_NOT_FEATURES]
"""The categorical feature columns of Census-Income: every column but the
numeric ones, the instance weight and the two targets."""
CENSUS_READ_OPTIONS = {"header": None, "names": CENSUS_COLUMNS,
                       "skipinitialspace": True, "na_values": ["?"],
                       "keep_default_na": False}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def census_files(data_dir=None, origin=None):
    """Paths of `census-income.data.gz` and `.test.gz`, checked by sha256.

    Looks in `data_dir`, then `$KMTL_DATA_DIR` (and its `census-income/`
    subfolder), else downloads each file from `origin` (a URL prefix; a
    `file://` URL works) into the Keras cache with `keras.utils.get_file`,
    checking the checksum. `origin` defaults to the UCI archive's folder.

    Raises:
        DataError: a file is missing or its checksum differs.
    """
    data_dir = data_dir or os.environ.get("KMTL_DATA_DIR")
    paths = {}
    for name, sha in CENSUS_FILES.items():
        found = None
        if data_dir:
            for candidate in (os.path.join(data_dir, name),
                              os.path.join(data_dir, "census-income", name)):
                if os.path.isfile(candidate):
                    found = candidate
                    break
        if found is None:
            url = (origin or CENSUS_ORIGIN).rstrip("/") + "/" + name
            try:
                found = keras.utils.get_file(name, origin=url, file_hash=sha,
                                             cache_subdir="kmtl")
            except Exception as error:
                raise DataError(
                    f"{name} is not in data_dir={data_dir!r} and downloading {url} "
                    f"failed ({error}). Pass --data-dir (or set KMTL_DATA_DIR) to "
                    f"the folder holding the Census-Income files.") from None
        elif _sha256(found) != sha:
            raise DataError(f"{found}: sha256 differs from the published {sha}; the "
                            f"file is damaged or a different version.")
        paths[name] = found
    return paths["census-income.data.gz"], paths["census-income.test.gz"]


def load_census_income(data_dir=None, origin=None, seed=0):
    """Census-Income with the two tasks of Ma et al. (KDD 2018), group 1.

    Tasks: `income` (1 when `income_50k == "50000+."`, 6.2% positive) and
    `never_married` (1 when `marital_stat == "Never married"`, 43.4%). The
    features are the other columns except `instance_weight`. Protocol: train on
    `census-income.data`; the test file is permuted with
    `numpy.random.RandomState(seed).permutation` and split 1:1, first half
    validation, second half test.

    Args:
        data_dir: folder with the two `.gz` files; default `$KMTL_DATA_DIR`.
        origin: URL prefix to download from when the files are not found
            locally; default the UCI archive.
        seed: int, default 0 (the protocol's).

    Returns:
        `(train, validation, test)` DataFrames (199,523 / 49,881 / 49,881 rows)
        with the raw columns (text columns as pandas categoricals) plus 0/1
        columns `income` and `never_married`.

    Raises:
        DataError: files missing or damaged.
    """
    train_path, test_path = census_files(data_dir, origin)
    frames = []
    for path in (train_path, test_path):
        frame = read_table(path, **CENSUS_READ_OPTIONS)
        frame["income"] = (frame["income_50k"] == "50000+.").astype("int64")
        frame["never_married"] = (frame["marital_stat"] == "Never married").astype(
            "int64")
        # 33 text columns of a few dozen values each: as pandas categoricals
        # they take 8 MB instead of 150 MB of Python strings (same values).
        text = frame.select_dtypes("object").columns
        frame[text] = frame[text].astype("category")
        frames.append(frame)
    train, test = frames
    order = np.random.RandomState(seed).permutation(len(test))
    half = len(test) // 2
    validation = test.iloc[order[:half]].reset_index(drop=True)
    test = test.iloc[order[half:]].reset_index(drop=True)
    return train, validation, test


@DATASETS.register("census_income")
class CensusIncome(Dataset):
    """Census-Income with the MMoE paper's split (`load_census_income`)."""

    has_splits = True

    def load(self, data_dir=None):
        return load_census_income(data_dir)
