"""Training schedules on real data: task sampling, progressive and curriculum
training (issue 15).

Usage:
    python benchmarks/schedules.py sampling [--seeds 0 1 2]
    python benchmarks/schedules.py progressive [--seeds 0]
    python benchmarks/schedules.py curriculum [--seeds 0 1 2]
    python benchmarks/schedules.py reviews [--seeds 0]

Every experiment trains the census example's model (examples/census_income.yaml:
MMoE, 3 experts of (256, 128), towers (64,), batch 1024, at most 10 epochs,
patience 3) through `kmtl.runs.training.run_model`, changing only what the
experiment names, and scores ROC-AUC on the protocol's test half
(../shared/data/census-income/README.md).

- `sampling`: per-task tables from the census training set by survey year:
  income from the 1994 rows, subsampled to 10% (seed 0), never_married from
  the 1995 rows, given as `data.task_tables` (so each row is labelled for one
  task); `year` is left out of the features (it would name the task).
  Compared: no sampling (every row once per epoch, today's joint
  training), and joint batches drawn with `training.sampling` methods
  proportional, uniform, temperature 2 and 5. Validation and test are the
  protocol's halves, labelled for both tasks.
- `progressive`: never_married alone (stage 1), then income added with the
  shared part (and never_married's tower) frozen, or with nothing frozen, or
  frozen then everything fine-tuned at learning rate 3e-4 (a third stage,
  examples/census_income_progressive.yaml), against joint training.
- `curriculum`: joint training against `training.curriculum` (one task
  first, the other joining at epoch 2 with its weight ramped over 2 epochs,
  both orders; and `by_loss`) and `training.self_paced`.
- `reviews`: the women's clothing reviews example
  (examples/womens_clothing_reviews.yaml) with and without a task curriculum
  (`by_loss`).

Each writes benchmarks/results/schedules_<experiment>.json and prints a
markdown table (means over seeds, each seed in parentheses).
"""

import argparse
import copy
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from benchmarks.common import CENSUS_CONFIG  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from benchmarks.common import reviews_dir  # noqa: E402
from kmtl.datasets.census_income import load_census_income  # noqa: E402
from kmtl.runs.training import prepare_run  # noqa: E402
from kmtl.runs.training import run_model  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REVIEWS_CONFIG = os.path.join(os.path.dirname(CENSUS_CONFIG),
                              "womens_clothing_reviews.yaml")
TASKS = ("income", "never_married")


def _config(path=CENSUS_CONFIG):
    with open(path) as handle:
        raw = yaml.safe_load(handle)
    raw["training"]["verbose"] = 0
    raw["export"] = {"enabled": False}
    return raw


def _run(raw, seed, data_dir):
    raw = copy.deepcopy(raw)
    raw["training"]["seed"] = seed
    raw.setdefault("data", {}).setdefault("split", {})["seed"] = seed
    start = time.perf_counter()
    config, data = prepare_run(raw, data_dir)
    result = run_model(config, data)
    return result, time.perf_counter() - start


def _auc(metrics, task):
    return metrics["test"][task]["auc"]


def _cell(values):
    values = [v for v in values if v is not None]
    shown = ", ".join(f"{v:.4f}" for v in values)
    return f"{np.mean(values):.4f} ({shown})" if len(values) > 1 else f"{values[0]:.4f}"


def sampling_tables(folder, data_dir):
    """Writes the per-task tables and the held-out halves; returns the
    `data` section."""
    train, validation, test = load_census_income(data_dir)
    targets = ["income", "never_married", "income_50k", "marital_stat"]
    features = train.drop(columns=[c for c in targets if c in train.columns])
    year = train["year"].astype(str).str[-2:]
    income = features[year == "94"].assign(label=train["income"])
    income = income.sample(frac=0.1, random_state=0)
    married = features[year == "95"].assign(label=train["never_married"])
    paths = {}
    for name, frame in (("income", income), ("never_married", married),
                        ("validation", validation), ("test", test)):
        paths[name] = os.path.join(folder, f"{name}.parquet")
        frame.to_parquet(paths[name], index=False)
    print(f"income table: {len(income):,} rows (1994, 10%); never_married "
          f"table: {len(married):,} rows (1995)", flush=True)
    return {"task_tables": {"income": paths["income"],
                            "never_married": paths["never_married"]},
            "validation": paths["validation"], "test": paths["test"]}


def experiment_sampling(seeds, data_dir):
    variants = {
        "no sampling (every row once)": None,
        "proportional": {"method": "proportional"},
        "uniform": {"method": "uniform"},
        "temperature T=2": {"method": "temperature", "temperature": 2},
        "temperature T=5": {"method": "temperature", "temperature": 5},
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        raw = _config()
        raw["data"] = sampling_tables(folder, data_dir)
        # The survey year tells the two tables apart: as a feature, it
        # would stand for the task (every income row is from 1994).
        raw["features"]["categorical"].remove("year")
        for name, sampling in variants.items():
            runs = []
            for seed in seeds:
                variant = copy.deepcopy(raw)
                if sampling is not None:
                    variant["training"]["sampling"] = sampling
                result, seconds = _run(variant, seed, data_dir)
                history = result.history
                runs.append({
                    "seed": seed, "seconds": seconds,
                    "auc": {t: _auc(result.metrics, t) for t in TASKS},
                    "income_frequency": (float(np.mean(history["income_frequency"]))
                                         if "income_frequency" in history else None),
                    "epochs": len(history["loss"])})
                print(name, runs[-1], flush=True)
            rows.append({"variant": name, "runs": runs})
    header = ("| sampling | income test AUC | never_married test AUC | income "
              "share of drawn rows |\n|---|---|---|---|")
    lines = [header]
    for row in rows:
        runs = row["runs"]
        share = [r["income_frequency"] for r in runs]
        shown = "0.094 (its share of the rows)" if share[0] is None else (
            f"{np.mean(share):.3f}")
        lines.append(f"| {row['variant']} | "
                     f"{_cell([r['auc']['income'] for r in runs])} | "
                     f"{_cell([r['auc']['never_married'] for r in runs])} | "
                     f"{shown} |")
    return rows, "\n".join(lines)


def experiment_progressive(seeds, data_dir):
    raw = _config()
    first = {"tasks": ["never_married"]}
    variants = {
        "joint training": None,
        "add income, shared part frozen": [
            first, {"tasks": ["income"], "frozen": ["shared", "never_married"]}],
        "add income, nothing frozen": [first, {"tasks": ["income"]}],
        "add income frozen, then all fine-tuned at lr 3e-4": [
            first, {"tasks": ["income"], "frozen": ["shared", "never_married"]},
            {"tasks": [], "learning_rate": 0.0003}],
    }
    rows = []
    for name, stages in variants.items():
        runs = []
        for seed in seeds:
            variant = copy.deepcopy(raw)
            if stages is not None:
                variant["training"]["stages"] = stages
            result, seconds = _run(variant, seed, data_dir)
            run = {"seed": seed, "seconds": seconds,
                   "auc": {t: _auc(result.metrics, t) for t in TASKS}}
            if result.stages:
                run["stages"] = [{"tasks": s["tasks"], "epochs": s["epochs"],
                                  "auc": {t: _auc(s["metrics"], t)
                                          for t in s["tasks"]}}
                                 for s in result.stages]
            runs.append(run)
            print(name, run, flush=True)
        rows.append({"variant": name, "runs": runs})
    lines = ["| variant | never_married after stage 1 | never_married at the end "
             "| income at the end | epochs per stage |", "|---|---|---|---|---|"]
    for row in rows:
        runs = row["runs"]
        staged = "stages" in runs[0]
        first_auc = (_cell([r["stages"][0]["auc"]["never_married"] for r in runs])
                     if staged else "-")
        epochs = (" + ".join(str(s["epochs"]) for s in runs[0]["stages"]) if staged
                  else "")
        lines.append(f"| {row['variant']} | {first_auc} | "
                     f"{_cell([r['auc']['never_married'] for r in runs])} | "
                     f"{_cell([r['auc']['income'] for r in runs])} | {epochs} |")
    return rows, "\n".join(lines)


def _curriculum_rows(raw, variants, seeds, data_dir, score):
    rows = []
    for name, training in variants.items():
        runs = []
        for seed in seeds:
            variant = copy.deepcopy(raw)
            variant["training"].update(training or {})
            result, seconds = _run(variant, seed, data_dir)
            joins = {k[:-len("_scale")]: next((e for e, x in enumerate(v) if x > 0),
                                               None)
                     for k, v in result.history.items() if k.endswith("_scale")}
            runs.append({"seed": seed, "seconds": seconds,
                         "scores": score(result.metrics), "joins": joins,
                         "epochs": len(result.history["loss"])})
            print(name, runs[-1], flush=True)
        rows.append({"variant": name, "runs": runs})
    return rows


def _score_table(rows, columns):
    lines = ["| curriculum | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row in rows:
        runs = row["runs"]
        cells = [_cell([r["scores"][c] for r in runs]) for c in columns]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def experiment_curriculum(seeds, data_dir):
    variants = {
        "none (joint)": None,
        "never_married, then income (epoch 2, ramp 2)": {"curriculum": {
            "order": ["never_married", "income"], "interval": 2,
            "ramp_epochs": 2}},
        "income, then never_married (epoch 2, ramp 2)": {"curriculum": {
            "order": ["income", "never_married"], "interval": 2,
            "ramp_epochs": 2}},
        "by_loss (1-epoch probes), interval 2, ramp 2": {"curriculum": {
            "order": "by_loss", "interval": 2, "ramp_epochs": 2}},
        "self-paced rows (from 0.5, all by epoch 5)": {"self_paced": {
            "start_fraction": 0.5, "epochs": 5}},
    }
    columns = ["income", "never_married"]
    rows = _curriculum_rows(_config(), variants, seeds, data_dir,
                            lambda m: {t: _auc(m, t) for t in TASKS})
    return rows, _score_table(rows, [f"{c}" for c in columns])


def experiment_reviews(seeds, data_dir):
    raw = _config(REVIEWS_CONFIG)
    variants = {"none (joint)": None,
                "by_loss (1-epoch probes), interval 1, ramp 2": {"curriculum": {
                    "order": "by_loss", "interval": 1, "ramp_epochs": 2}}}

    def score(metrics):
        test = metrics["test"]
        return {"recommended AUC": test["recommended"]["auc"],
                "rating accuracy": test["rating"]["accuracy"],
                "department accuracy": test["department"]["accuracy"]}

    rows = _curriculum_rows(raw, variants, seeds, data_dir, score)
    return rows, _score_table(rows, ["recommended AUC", "rating accuracy",
                                     "department accuracy"])


EXPERIMENTS = {"sampling": experiment_sampling,
               "progressive": experiment_progressive,
               "curriculum": experiment_curriculum,
               "reviews": experiment_reviews}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    data_dir = reviews_dir() if args.experiment == "reviews" else census_dir()
    start = time.perf_counter()
    rows, table = EXPERIMENTS[args.experiment](args.seeds, data_dir)
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"schedules_{args.experiment}.json")
    with open(path, "w") as handle:
        json.dump({"seeds": args.seeds, "rows": rows, "table": table,
                   "seconds": time.perf_counter() - start}, handle, indent=1)
    print(f"wrote {path} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
