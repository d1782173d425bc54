"""Small tables: kmtl's default config against logistic regression.

Usage:
    python benchmarks/small_data.py [ROWS ...] [--seeds N]

For each size (default 1,000 and 5,000 rows) and each seed (default 0 to 4),
draws that many rows at random from the Census-Income training set
(`DataFrame.sample(random_state=seed)`) and trains on them:

- kmtl with the default config: only `data`, `features` and `tasks` are given
  (the census example's features and tasks; `training.verbose: 0`, which only
  silences the progress bar). So every size key comes from
  `kmtl.runs.config.size_defaults`, and the default split cuts the validation
  rows (10%) out of the drawn rows for early stopping;
- scikit-learn's `LogisticRegression` (default C, `max_iter=5000`), one model
  per task, on all the drawn rows: categoricals one-hot encoded (unseen
  categories ignored), numerics standardized.

Both are scored by ROC-AUC on the protocol's test half (the second half of the
test file permuted with seed 0, ../shared/data/census-income/README.md).
Prints a table and writes benchmarks/results/small_data.json. About 10 s per
kmtl run and 2 s per logistic regression on 2 cores.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import yaml  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks.common import CENSUS_CONFIG  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from kmtl.datasets.census_income import load_census_income  # noqa: E402
from kmtl.runs.training import prepare_run  # noqa: E402
from kmtl.runs.training import run_model  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TASKS = ("income", "never_married")


def census_setup():
    """The census example's `features` and `tasks` sections."""
    with open(CENSUS_CONFIG) as handle:
        raw = yaml.safe_load(handle)
    return raw["features"], raw["tasks"]


def logistic_regression(train, test, features):
    """`{task: test AUC}` of one LogisticRegression per task."""
    numeric, categorical = features["numeric"], features["categorical"]
    columns = numeric + categorical

    def table(frame):
        return frame[columns].astype({c: str for c in categorical})

    scores = {}
    for task in TASKS:
        model = make_pipeline(
            ColumnTransformer([
                ("numeric", StandardScaler(), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"),
                 categorical)]),
            LogisticRegression(max_iter=5000))
        model.fit(table(train), train[task])
        scores[task] = float(roc_auc_score(
            test[task], model.predict_proba(table(test))[:, 1]))
    return scores


def kmtl_default(train_path, test_path, features, tasks):
    """`({task: test AUC}, record)` of kmtl's default config."""
    raw = {"name": "small_data", "data": {"train": train_path, "test": test_path},
           "features": features, "tasks": tasks, "training": {"verbose": 0}}
    lines = []
    config, data = prepare_run(raw, log=lines.append)
    run = run_model(config, data)
    keras.backend.clear_session()
    scores = {task: run.metrics["test"][task]["auc"] for task in TASKS}
    return scores, {"defaults": lines[0] if lines else "",
                    "training_rows": len(data.train),
                    "epochs": len(run.history["loss"]),
                    "parameters": run.parameters,
                    "seconds": round(run.seconds, 1)}


def main(sizes, seeds):
    features, tasks = census_setup()
    train, _, test = load_census_income(census_dir())
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        test_path = os.path.join(folder, "test.parquet")
        test.to_parquet(test_path)
        for rows in sizes:
            for seed in seeds:
                drawn = train.sample(n=rows, random_state=seed)
                train_path = os.path.join(folder, f"train_{rows}_{seed}.parquet")
                drawn.to_parquet(train_path)
                start = time.perf_counter()
                lr = logistic_regression(drawn, test, features)
                lr_seconds = time.perf_counter() - start
                ours, record = kmtl_default(train_path, test_path, features, tasks)
                runs.append({"rows": rows, "seed": seed, "kmtl": ours, "lr": lr,
                             **record, "lr_seconds": round(lr_seconds, 1)})
                print(f"{rows:,} rows, seed {seed}: " + ", ".join(
                    f"{t} kmtl {ours[t]:.4f} LR {lr[t]:.4f}" for t in TASKS)
                    + f" ({record['defaults']}; {record['epochs']} epochs)",
                    flush=True)
    means = {}
    for rows in sizes:
        chosen = [r for r in runs if r["rows"] == rows]
        means[rows] = {model: {t: sum(r[model][t] for r in chosen) / len(chosen)
                               for t in TASKS} for model in ("kmtl", "lr")}
    os.makedirs(RESULTS, exist_ok=True)
    result = {"benchmark": "small_data",
              "machine": {"python": platform.python_version(),
                          "cpus": os.cpu_count(), "machine": platform.machine()},
              "sizes": list(sizes), "seeds": list(seeds), "runs": runs,
              "means": {str(rows): m for rows, m in means.items()}}
    with open(os.path.join(RESULTS, "small_data.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    print()
    print("| rows | seed | income kmtl | income LR | never_married kmtl | "
          "never_married LR |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['rows']:,} | {r['seed']} | " + " | ".join(
            f"{r[m][t]:.4f}" for t in TASKS for m in ("kmtl", "lr")) + " |")
    for rows, m in means.items():
        print(f"| {rows:,} | mean | " + " | ".join(
            f"{m[model][t]:.4f}" for t in TASKS for model in ("kmtl", "lr"))
            + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", type=int, default=[1000, 5000])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    main(args.rows, list(range(args.seeds)))
