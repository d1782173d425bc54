"""The reviews example against the data README's references, in one run.

Usage:
    python benchmarks/reviews.py [--seeds N] [--config PATH]

Trains `examples/womens_clothing_reviews.yaml` (export off, progress bar off)
once per seed (default 0, 1, 2; `training.seed`, the split is the protocol's),
and scores each model on the test split:

- `rating`: accuracy, and the MAE of the expected rating (the probabilities'
  mean over the ratings 1-5), as the data README defines it;
- `recommended`: ROC-AUC (scikit-learn's `roc_auc_score`);
- `department`: accuracy on the labelled rows.

In the same run, the references of the data README: one scikit-learn
`LogisticRegression(C=4)` per task on the TF-IDF of `Title + " . " + Review
Text` (word 1-2-grams, `min_df=2`, sublinear tf), trained on the training split.
Prints a Markdown table (mean over seeds, each seed in brackets) and writes
benchmarks/results/reviews.json. About 2 minutes per seed on 2 cores.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.common import ROOT  # noqa: E402
from benchmarks.common import reviews_dir  # noqa: E402
from kmtl.data import make_dataset  # noqa: E402
from kmtl.datasets import load_womens_clothing_reviews  # noqa: E402
from kmtl.runs.training import train  # noqa: E402

CONFIG = os.path.join(ROOT, "examples", "womens_clothing_reviews.yaml")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
RATINGS = np.arange(1, 6)


def scores(rating_probabilities, recommended_probability, department_labels,
           test):
    """The README's four test measures from predictions on `test`."""
    labelled = test["Department Name"].notna().to_numpy()
    truth = test["Rating"].to_numpy()
    return {
        "rating_accuracy": float(np.mean(
            RATINGS[rating_probabilities.argmax(1)] == truth)),
        "rating_expected_mae": float(np.mean(np.abs(
            rating_probabilities @ RATINGS - truth))),
        "recommended_auc": float(roc_auc_score(test["Recommended IND"],
                                               recommended_probability)),
        "department_accuracy": float(np.mean(
            department_labels[labelled]
            == test["Department Name"].to_numpy()[labelled])),
    }


def kmtl_scores(config, seed, test, folder):
    config = {**config, "training": {**config["training"], "seed": seed,
                                     "verbose": 0},
              "export": {"enabled": False}}
    start = time.perf_counter()
    result = train(config, data_dir=reviews_dir(), output_dir=folder,
                   log=lambda line: None)
    seconds = time.perf_counter() - start
    model = keras.saving.load_model(os.path.join(result["run_dir"], "model.keras"))
    predicted = model.predict(make_dataset(test, model.features), verbose=0)
    tasks = {task.name: task for task in model.tasks}
    rating_classes = [int(c) for c in tasks["rating"].classes]
    assert rating_classes == RATINGS.tolist(), rating_classes
    departments = np.array(tasks["department"].classes, dtype=object)
    measured = scores(predicted["rating"], predicted["recommended"][:, 0],
                      departments[predicted["department"].argmax(1)], test)
    return {**measured, "seconds": seconds,
            "epochs": len(result["history"]["loss"])}


def reference_scores(train_frame, test):
    def documents(frame):
        return (frame["Title"].fillna("") + " . "
                + frame["Review Text"].fillna("")).to_numpy()

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform(documents(train_frame))
    x_test = vectorizer.transform(documents(test))

    def fit(target):
        labelled = train_frame[target].notna().to_numpy()
        return LogisticRegression(C=4, max_iter=2000).fit(
            x_train[labelled], train_frame[target][labelled])

    rating = fit("Rating")
    assert rating.classes_.tolist() == RATINGS.tolist()
    recommended = fit("Recommended IND")
    department = fit("Department Name")
    return scores(rating.predict_proba(x_test),
                  recommended.predict_proba(x_test)[:, 1],
                  department.predict(x_test).astype(object), test)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config", default=CONFIG)
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    train_frame, _, test = load_womens_clothing_reviews(reviews_dir())
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            runs.append(kmtl_scores(config, seed, test, folder))
            print(f"seed {seed}: {runs[-1]}", flush=True)
    reference = reference_scores(train_frame, test)
    measures = list(reference)
    print("| test measure | kmtl multi-task model, mean (seeds) | TF-IDF + "
          "LogisticRegression, one per task |")
    print("|---|---|---|")
    for measure in measures:
        values = [run[measure] for run in runs]
        seeds = ", ".join(f"{v:.4f}" for v in values)
        print(f"| {measure} | {np.mean(values):.4f} ({seeds}) | "
              f"{reference[measure]:.4f} |")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "reviews.json"), "w") as handle:
        json.dump({"config": os.path.relpath(args.config, ROOT), "runs": runs,
                   "reference": reference}, handle, indent=2)


if __name__ == "__main__":
    main()
