"""DeepCTR's own MMoE on Census-Income (KDD): seconds per epoch and test AUC.

Runs in its own virtual environment (DeepCTR needs Keras 2, i.e. tf-keras), not in
kmtl's. Create it with:

    python3 -m venv .venv-deepctr
    .venv-deepctr/bin/pip install "tensorflow~=2.21.0" "tf-keras~=2.21.0" \
        "deepctr==0.9.4" pandas scikit-learn

Usage:

    .venv-deepctr/bin/python benchmarks/deepctr_mmoe.py [DATA_DIR] [EPOCHS]

DATA_DIR defaults to $KMTL_DATA_DIR, else /work/shared/data/census-income (files
census-income.data.gz and census-income.test.gz); EPOCHS defaults to 5.

The data are prepared the way DeepCTR's examples/run_mtl.py does it (LabelEncoder
per categorical column, MinMaxScaler on the numeric ones, SparseFeat of
embedding_dim 4, DenseFeat of 1), with the feature set and protocol of the data
folder's README.md: `instance_weight` dropped, the integer-coded det_ind_code,
det_occ_code, own_or_self, vet_benefits and year categorical, validation and test the
first and second halves of numpy.random.RandomState(0).permutation of the test file.
Unlike run_mtl.py, which encodes train and test together, the encoders and the
scaler are fitted on the training file only; a category not seen in training maps to
index 0, which no training value uses.

The model is `deepctr.models.MMOE` with its defaults (3 experts of (256, 128), towers
of (64,), no gate hidden layers), compiled with adam and binary cross-entropy per
task, trained by stock `fit` with batch_size 1024 on numpy inputs.

Prints one JSON line, and nothing else, on stdout (progress goes to stderr):
  epoch_seconds                  training part of each epoch (on_epoch_begin until
                                 validation starts), comparable with kmtl's timer,
                                 which fits without validation data
  epoch_seconds_with_validation  the whole epoch, validation pass included
  s_per_epoch_after_first        median of epoch_seconds[1:]
  test_auc                       sklearn roc_auc_score per task on the test half
"""

import os
import sys

# tf.keras must be Keras 2 (tf-keras) for DeepCTR: set before tensorflow is imported
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# stdout carries only the JSON line: fit's log and what DeepCTR prints on import
# (its version check, run in a thread) go to stderr.
_STDOUT, sys.stdout = sys.stdout, sys.stderr

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from deepctr.feature_column import DenseFeat  # noqa: E402
from deepctr.feature_column import SparseFeat  # noqa: E402
from deepctr.feature_column import get_feature_names  # noqa: E402
from deepctr.models import MMOE  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

COLUMNS = [
    "age", "class_worker", "det_ind_code", "det_occ_code", "education",
    "wage_per_hour", "hs_college", "marital_stat", "major_ind_code", "major_occ_code",
    "race", "hisp_origin", "sex", "union_member", "unemp_reason", "full_or_part_emp",
    "capital_gains", "capital_losses", "stock_dividends", "tax_filer_stat",
    "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ",
    "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same",
    "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father", "country_mother",
    "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits",
    "weeks_worked", "year", "income_50k",
]
DENSE = ["age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends",
         "num_emp", "weeks_worked"]
DROPPED = ["instance_weight", "income_50k", "marital_stat"]  # weight and both labels
SPARSE = [c for c in COLUMNS if c not in DENSE and c not in DROPPED]
TASKS = ["income", "never_married"]
BATCH_SIZE = 1024


def read(path):
    # Everything as a string first, so that categorical codes such as det_ind_code
    # are categories, and the leading spaces of the file are kept as they are.
    return pd.read_csv(path, header=None, names=COLUMNS, dtype=str,
                       keep_default_na=False)


def labels(frame):
    income = frame["income_50k"] == " 50000+."
    never_married = frame["marital_stat"] == " Never married"
    return {"income": income.to_numpy("float32"),
            "never_married": never_married.to_numpy("float32")}


def encode(train, others):
    """Label-encode SPARSE (fit on train, 0 = unseen) and MinMax-scale DENSE."""
    vocab = {}
    for col in SPARSE:
        values = np.unique(train[col].to_numpy())
        index = pd.Index(values)
        vocab[col] = len(values) + 1
        for frame in [train] + others:
            frame[col] = (index.get_indexer(frame[col].to_numpy()) + 1).astype("int32")
    for frame in [train] + others:
        frame[DENSE] = frame[DENSE].astype("float32")
    scaler = MinMaxScaler(feature_range=(0, 1)).fit(train[DENSE])
    for frame in [train] + others:
        frame[DENSE] = scaler.transform(frame[DENSE]).astype("float32")
    return vocab


def peak_rss_mb():
    """Peak resident memory in MB (`VmHWM`, as benchmarks/common.py reads it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall-clock seconds of each epoch, with and without the validation pass."""

    def on_train_begin(self, logs=None):
        self.train_seconds, self.total_seconds = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs=None):
        # fit's validation pass starts here; fit calls no other evaluate
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        self.train_seconds.append((self._train_end or end) - self._start)
        self.total_seconds.append(end - self._start)


def main(argv):
    data_dir = argv[1] if len(argv) > 1 else (
        os.environ.get("KMTL_DATA_DIR") or "/work/shared/data/census-income")
    epochs = int(argv[2]) if len(argv) > 2 else 5
    np.random.seed(0)
    tf.random.set_seed(0)

    train = read(os.path.join(data_dir, "census-income.data.gz"))
    held_out = read(os.path.join(data_dir, "census-income.test.gz"))
    order = np.random.RandomState(0).permutation(len(held_out))
    half = len(held_out) // 2
    validation = held_out.iloc[order[:half]].reset_index(drop=True)
    test = held_out.iloc[order[half:]].reset_index(drop=True)
    y_train, y_val, y_test = labels(train), labels(validation), labels(test)

    vocab = encode(train, [validation, test])
    feature_columns = ([SparseFeat(c, vocabulary_size=vocab[c], embedding_dim=4)
                        for c in SPARSE]
                       + [DenseFeat(c, 1) for c in DENSE])
    names = get_feature_names(feature_columns)

    def inputs(frame):
        return {n: frame[n].to_numpy() for n in names}

    model = MMOE(feature_columns, task_types=["binary", "binary"], task_names=TASKS)
    model.compile("adam", loss=["binary_crossentropy"] * len(TASKS),
                  metrics=[[tf.keras.metrics.AUC(name="auc")] for _ in TASKS])

    timer = EpochTimer()
    model.fit(inputs(train), [y_train[t] for t in TASKS], batch_size=BATCH_SIZE,
              epochs=epochs, verbose=2,
              validation_data=(inputs(validation), [y_val[t] for t in TASKS]),
              callbacks=[timer])

    predictions = model.predict(inputs(test), batch_size=BATCH_SIZE * 4, verbose=0)
    test_auc = {t: round(float(roc_auc_score(y_test[t], p.ravel())), 4)
                for t, p in zip(TASKS, predictions)}
    result = {
        "epoch_seconds": [round(s, 3) for s in timer.train_seconds],
        "epoch_seconds_with_validation": [round(s, 3) for s in timer.total_seconds],
        "s_per_epoch_after_first": (round(statistics.median(timer.train_seconds[1:]), 3)
                                    if len(timer.train_seconds) > 1 else None),
        "test_auc": test_auc,
        "peak_rss_mb": peak_rss_mb(),
        "versions": {"tensorflow": tf.__version__,
                     "tf_keras": metadata.version("tf-keras"),
                     "deepctr": metadata.version("deepctr")},
    }
    sys.stderr.flush()
    print(json.dumps(result), file=_STDOUT, flush=True)


if __name__ == "__main__":
    main(sys.argv)
