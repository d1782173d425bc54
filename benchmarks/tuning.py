"""`kmtl tune` on census (and reviews): does a 20-trial search beat the
default config on TEST, and what does it cost? (issue 17)

Usage:
    nice -n 10 .venv/bin/python benchmarks/tuning.py [--trials 20] [--seeds 3]
        [--methods famo,db_mtl,fairgrad,upgrad] [--reviews-trials 6]
        [--skip-census] [--skip-reviews] [--epochs N] [--work-dir DIR]
        [--data-dir DIR] [--reviews-data-dir DIR] [--results tuning]

Census (`examples/census_income_tune.yaml`: the census MMoE, 10 epochs,
early stopping): a Bayesian search of `--trials` trials over the two loss
weights (0.25-4, log), the learning rate (3e-4-3e-3, log) and the experts'
sizes ([64], [128, 64], [256, 128], [512, 256]), objective Δm (AUCs of income
and never_married) on the validation half of the census test file against
single-task one-task-MMoE baselines trained once (seed 0). Then, on the TEST
half: the single-task baselines, the default config (the example without its
search) and the best trial's config (`best.yaml`) each trained with seeds 0 ..
`--seeds - 1`; Δm of the default and of the best against the baselines' mean
over seeds (`kmtl.runs.comparison.analyse`: mean ± sample sd over seeds), and
the wall time of the search. `--methods`: the default config with each of
these weightings is trained on TEST beside them, over the same seeds and
baselines.

Reviews (`examples/womens_clothing_reviews.yaml`, unless `--skip-reviews`): a
random search of `--reviews-trials` trials over the three loss weights, the
learning rate and the shared part's units, objective Δm on validation; the
best trial's validation Δm and the search's wall time (no test runs).

Results: benchmarks/results/<--results>.md and .json, rewritten after each
step; the tune directories go to --work-dir (default a temporary folder,
removed at the end).
"""

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import yaml  # noqa: E402

from benchmarks.common import ROOT  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from benchmarks.common import reviews_dir  # noqa: E402
from kmtl.runs.comparison import SINGLE_TASK  # noqa: E402
from kmtl.runs.comparison import analyse  # noqa: E402
from kmtl.runs.comparison import baseline_config  # noqa: E402
from kmtl.runs.comparison import baseline_spec  # noqa: E402
from kmtl.runs.comparison import baseline_tasks  # noqa: E402
from kmtl.runs.comparison import counted_metrics  # noqa: E402
from kmtl.runs.comparison import with_shared_units  # noqa: E402
from kmtl.runs.config import read_config  # noqa: E402
from kmtl.runs.training import prepare_run  # noqa: E402
from kmtl.runs.training import run_model  # noqa: E402
from kmtl.runs.tuning import BEST_FILE  # noqa: E402
from kmtl.runs.tuning import trial_data  # noqa: E402
from kmtl.runs.tuning import tune  # noqa: E402

CENSUS_TUNE = os.path.join(ROOT, "examples", "census_income_tune.yaml")
REVIEWS = os.path.join(ROOT, "examples", "womens_clothing_reviews.yaml")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
REVIEWS_SPACE = {
    "tasks.rating.loss_weight": {"min": 0.25, "max": 4.0, "log": True},
    "tasks.recommended.loss_weight": {"min": 0.25, "max": 4.0, "log": True},
    "tasks.department.loss_weight": {"min": 0.5, "max": 6.0, "log": True},
    "training.learning_rate": {"min": 1e-4, "max": 1e-3, "log": True},
    "model.options.units": [[128], [256], [512]],
}


def _record(name, run, seed, tasks):
    return {"model": name, "tasks": [t.name for t in tasks], "seed": seed,
            "metrics": run.metrics, "parameters": run.parameters,
            "seconds": round(run.seconds, 3)}


def test_delta_m(default, best, data_dir, seeds, log, methods=()):
    """Baselines, the default config, the best config and the default config
    with each of `methods` as its weighting, on TEST, over seeds: `analyse`'s
    results for each of them."""
    default, data = prepare_run(default, data_dir, log)
    best_data = trial_data(data, best)  # best.yaml sets every size key
    baseline = with_shared_units(baseline_spec(default), len(data.train))
    metrics = counted_metrics(default, data.tasks)
    runs = []
    for seed in seeds:
        for task in baseline_tasks(data.tasks):
            run = run_model(baseline_config(default, baseline, seed), data,
                            tasks=[task])
            runs.append(_record(SINGLE_TASK, run, seed, [task]))
            keras.backend.clear_session()
            log(f"  seed {seed} single-task {task.name}: {run.seconds:.0f} s")
        configs = [("default", default, data), ("best", best, best_data)] + [
            (method, default.replace({"training.weighting": method}), data)
            for method in methods]
        for name, config, own in configs:
            run = run_model(config.replace({"training.seed": seed}), own)
            runs.append(_record(name, run, seed, data.tasks))
            keras.backend.clear_session()
            log(f"  seed {seed} {name}: {run.seconds:.0f} s")
    names = ["default", "best", *methods]
    analysis = analyse(runs, names, "test", metrics,
                       default.compare.directions, default.compare.average)
    return {"seeds": list(seeds), "metrics": metrics, "runs": runs,
            "results": {name: {"delta_m": analysis["results"][name]["delta_m"],
                               "summary": analysis["results"][name]["summary"]}
                        for name in names},
            "single_task": analysis["single_task"]["summary"]}


def _without_search(raw):
    raw = copy.deepcopy(raw)
    raw.pop("tune", None)
    return raw


def markdown(results):
    lines = ["# `kmtl tune` (issue 17)", "", f"Command: `{results['command']}`", ""]
    census = results.get("census")
    if census:
        search = census["search"]
        lines += ["## Census-Income", "",
                  f"{search['trials']} trials ({search['algorithm']}), objective "
                  f"Δm (%) on validation; search wall time "
                  f"{search['wall_minutes']:.1f} minutes. Best trial "
                  f"{search['best']['trial']}: validation Δm "
                  f"{search['best']['objective']:+.3f} %.", "",
                  "| key | best value |", "|---|---|"]
        lines += [f"| `{k}` | {json.dumps(v)} |"
                  for k, v in search["best"]["values"].items()]
        test = census.get("test")
        if test:
            lines += ["", f"TEST, seeds {test['seeds']} (Δm against the single-task "
                      f"baselines' mean over the same seeds):", "",
                      "| config | Δm (%) mean ± sd | per seed | "
                      + " | ".join(f"{t} {m}" for t, ms in test["metrics"].items()
                                   for m in ms) + " |",
                      "|---|---|---|" + "---|" * sum(
                          len(ms) for ms in test["metrics"].values())]
            rows = [("single_task", None, test["single_task"])] + [
                (name, test["results"][name]["delta_m"],
                 test["results"][name]["summary"]) for name in test["results"]]
            for name, delta, summary in rows:
                cells = [f"{summary[t][m]['mean']:.4f} ± {summary[t][m]['std']:.4f}"
                         for t, ms in test["metrics"].items() for m in ms]
                delta_text = ("—" if delta is None else
                              f"{delta['mean']:+.3f} ± {delta['std']:.3f}")
                seeds = ("—" if delta is None else
                         ", ".join(f"{v:+.3f}" for v in delta["per_seed"]))
                lines.append(f"| {name} | {delta_text} | {seeds} | "
                             + " | ".join(cells) + " |")
    reviews = results.get("reviews")
    if reviews:
        lines += ["", "## Women's clothing reviews", "",
                  f"{reviews['trials']} trials ({reviews['algorithm']}), objective "
                  f"Δm (%) on validation; wall time "
                  f"{reviews['wall_minutes']:.1f} minutes. Best trial "
                  f"{reviews['best']['trial']}: validation Δm "
                  f"{reviews['best']['objective']:+.3f} %; its values: "
                  f"`{json.dumps(reviews['best']['values'])}`."]
    lines += ["", f"Wall time: {results['wall_minutes']:.1f} minutes.", ""]
    return "\n".join(lines)


def _search(raw, name, data_dir, work_dir, trials, log):
    start = time.perf_counter()
    report = tune(raw, data_dir=data_dir, output_dir=work_dir, trials=trials,
                  log=log)
    return report, {
        "name": name, "trials": len(report["trials"]),
        "algorithm": report["algorithm"],
        "wall_minutes": (time.perf_counter() - start) / 60,
        "trial_minutes": report["seconds"] / 60,
        "failed": sum(r["status"] != "completed" for r in report["trials"]),
        "best": {k: report["best"][k] for k in ("trial", "objective", "values",
                                                 "metrics")},
        "baselines": (report["baselines"] or {}).get("metrics"),
        "directory": report["directory"]}


def _census(args, work_dir, results, save, log):
    with open(CENSUS_TUNE) as handle:
        raw = yaml.safe_load(handle)
    if args.epochs:
        raw["training"]["epochs"] = args.epochs
    data_dir = args.data_dir or census_dir()
    report, search = _search(raw, "census", data_dir, work_dir, args.trials, log)
    results["census"] = {"search": search}
    save()
    if args.seeds:
        best = read_config(os.path.join(report["directory"], BEST_FILE))
        results["census"]["test"] = test_delta_m(
            _without_search(raw), best, data_dir, range(args.seeds), log,
            [m for m in args.methods.split(",") if m])
        save()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds of the TEST comparison (0 skips it)")
    parser.add_argument("--methods", default="famo,db_mtl,fairgrad,upgrad",
                        help="weightings trained on TEST beside the default "
                        "(EW) and the best config, comma-separated ('' for none)")
    parser.add_argument("--reviews-trials", type=int, default=6)
    parser.add_argument("--skip-reviews", action="store_true")
    parser.add_argument("--skip-census", action="store_true")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override training.epochs (smoke runs)")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--data-dir", default=None, help="the census folder "
                        "(default: $KMTL_DATA_DIR or ../shared/data/census-income)")
    parser.add_argument("--reviews-data-dir", default=None)
    parser.add_argument("--results", default="tuning", help="the stem of the "
                        "result files in benchmarks/results/")
    args = parser.parse_args()
    command = "nice -n 10 .venv/bin/python benchmarks/tuning.py " + " ".join(
        sys.argv[1:])
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="kmtl_tune_")
    started = time.perf_counter()
    results = {"command": command}

    def save():
        results["wall_minutes"] = (time.perf_counter() - started) / 60
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"{args.results}.json"), "w") as handle:
            json.dump(results, handle, indent=1)
        with open(os.path.join(RESULTS, f"{args.results}.md"), "w") as handle:
            handle.write(markdown(results))

    def log(line):
        print(line, flush=True)

    try:
        if not args.skip_census:
            _census(args, work_dir, results, save, log)
        if not args.skip_reviews:
            with open(REVIEWS) as handle:
                raw = yaml.safe_load(handle)
            raw["training"]["verbose"] = 0
            if args.epochs:
                raw["training"]["epochs"] = args.epochs
            raw["tune"] = {"algorithm": "random", "trials": args.reviews_trials,
                           "objective": "delta_m", "space": REVIEWS_SPACE}
            _, results["reviews"] = _search(
                raw, "reviews", args.reviews_data_dir or reviews_dir(), work_dir,
                args.reviews_trials, log)
            save()
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
