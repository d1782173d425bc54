"""Census consolidation: does `kmtl consolidate` find injected label noise, and
does training on its table win back the test AUC the noise cost? (issue 16)

Usage:
    nice -n 10 .venv/bin/python benchmarks/consolidation.py [--scenarios b a c]
        [--auc-scenarios b] [--work-dir DIR] [--data-dir DIR]

The results in benchmarks/results/consolidation.md came from (41 minutes
on 2 shared cores):
    nice -n 10 .venv/bin/python benchmarks/consolidation.py --auc-scenarios b a c \
        --work-dir /tmp/cons_full
and those of consolidation_fill.md from:
    nice -n 10 .venv/bin/python benchmarks/consolidation.py --scenarios d \
        --auc-scenarios d --results consolidation_fill

The census TRAINING table (`kmtl.datasets.census_income.load_census_income`,
199,523 rows) gets label noise drawn with `numpy.random.default_rng(seed)`
(seed 0), one generator per scenario:

- `a`: 10% of the rows have their income label flipped, chosen at random;
- `b`: 20% flipped at random;
- `c`: 10% of all rows flipped, all taken from one education level (the
  biggest one, "High school graduate": 48,407 rows, of which 19,952 are
  flipped; when no level is big enough, all its rows, said in the output);
- `d`: no flips, and 95% of the never_married labels hidden: the test of
  `fill`, since hiding half of them costs no test AUC;

and in scenarios a, b and c half of the never_married labels are hidden
(NaN), at random. The noisy table (without the raw label columns `income_50k` and
`marital_stat`) is written to Parquet; the validation and test halves of the
census test file stay clean and are given as `data.validation` and
`data.test`, so the training table is the whole noisy file.
`examples/census_income.yaml` (MMoE; features as there; export off,
verbose 0) gets a `consolidate` section: 5 folds, `compare_detectors: true`
(the single-task detector is cross-fitted too) and the actions of the step.

Measures:

- detection (income): per detector, how many labels cleanlab flags, their
  precision and recall against the injected flips, the ranking AUC of the
  label-quality score for the flips (1 - quality as the score), the
  out-of-fold AUC against the given (noisy) labels (`result.report`) and
  against the true labels (the probability recovered from `suggested` and
  `confidence`, which consolidate derives from the out-of-fold probabilities
  corrected by cleanlab's estimated noise matrix);
- pseudo-labels (never_married): per detector, the share of hidden labels
  whose out-of-fold confidence reaches `pseudo_label_threshold` (0.95) and
  the accuracy of those suggestions against the hidden truth;
- test AUC (clean test half, scikit-learn `roc_auc_score`) of the model
  trained on the clean table, on the noisy table, and on the consolidated
  tables of `consolidate` with actions `[drop]`, `[relabel]`,
  `[relabel, drop]` and `[fill]` (multi-task detector; trained through
  `kmtl.runs.training.train` with `data.train` the consolidated Parquet file,
  whose consolidation columns training leaves out). "Recovered" =
  `(AUC_consolidated - AUC_noisy) / (AUC_clean - AUC_noisy)`.

The detection run of a scenario that also has an AUC table acts with `[drop]`
(detection happens before any action, so its numbers are those of
`[report]`) and its table is the `[drop]` row: one cross-fitting saved. One
seed. Results: benchmarks/results/consolidation.md and .json, rewritten after
every step; the Parquet files and run directories go to --work-dir (default a
temporary folder, removed at the end).
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
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.common import CENSUS_CONFIG  # noqa: E402
from benchmarks.common import ROOT  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from kmtl.data import make_dataset  # noqa: E402
from kmtl.datasets.census_income import load_census_income  # noqa: E402
from kmtl.runs.config import parse_config  # noqa: E402
from kmtl.runs.consolidation import consolidate  # noqa: E402
from kmtl.runs.training import train  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")

SCENARIOS = {
    "a": {"flip": 0.10, "category": None,
          "text": "10% of income labels flipped at random"},
    "b": {"flip": 0.20, "category": None,
          "text": "20% of income labels flipped at random"},
    "c": {"flip": 0.10, "category": "education",
          "text": "10% of all rows flipped, all in one education level"},
    "d": {"flip": 0.0, "category": None, "hide": 0.95,
          "text": "no income flips; 95% of never_married labels hidden"},
}
HIDE = 0.5
"""The share of never_married labels hidden in a scenario without its own
`hide`."""
ACTIONS = {"drop": ["drop"], "relabel": ["relabel"],
           "relabel+drop": ["relabel", "drop"], "fill": ["fill"]}
"""The consolidated tables of the AUC table, by their label there."""
DETECTORS = ("multi_task", "single_task")
THRESHOLD = 0.95
"""`consolidate.pseudo_label_threshold`'s default."""
RELABEL_THRESHOLD = 0.9
"""`consolidate.relabel_threshold`'s default."""
DROPPED_COLUMNS = ("income_50k", "marital_stat")
"""The raw label columns, left out of the noisy table (not features anyway)."""


def inject(train, scenario, seed):
    """The noisy training table of `scenario`.

    Args:
        train: the clean census training DataFrame (`income`, `never_married`
            0/1).
        scenario: a key of `SCENARIOS`.
        seed: int, seeds `numpy.random.default_rng`.

    Returns:
        `(noisy, flipped, hidden, note)`: the DataFrame (income flipped,
        never_married float with NaN where hidden, raw label columns
        removed), bool `(rows,)` masks of the flipped and hidden labels, and
        a str saying where the flips were drawn from.
    """
    spec = SCENARIOS[scenario]
    rng = np.random.default_rng(seed)
    n = len(train)
    count = int(round(spec["flip"] * n))
    if spec["category"] is None:
        pool = np.arange(n)
        note = f"{count:,} rows drawn from all {n:,}"
    else:
        column = train[spec["category"]].astype(str)
        sizes = column.value_counts()
        level = sizes.index[0]
        pool = np.flatnonzero((column == level).to_numpy())
        note = (f"{spec['category']} = {level!r} ({len(pool):,} rows, "
                f"{train['income'].to_numpy()[pool].mean():.1%} income positive)")
        if len(pool) < count:
            note += (f"; no level holds {count:,} rows, so all {len(pool):,} of "
                     f"the biggest are flipped")
            count = len(pool)
        else:
            note += f": {count:,} of its rows flipped ({count / len(pool):.0%})"
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(pool, size=count, replace=False)] = True
    hidden = np.zeros(n, dtype=bool)
    hide = spec.get("hide", HIDE)
    hidden[rng.choice(n, size=int(round(hide * n)), replace=False)] = True
    noisy = train.drop(columns=list(DROPPED_COLUMNS))
    income = noisy["income"].to_numpy().copy()
    income[flipped] = 1 - income[flipped]
    noisy["income"] = income
    married = noisy["never_married"].to_numpy().astype("float64")
    married[hidden] = np.nan
    noisy["never_married"] = married
    return noisy, flipped, hidden, note


def run_config(raw, name, train_path, held_out, epochs, consolidate_section=None):
    """The example config on the given files (export off, verbose 0)."""
    training = {**raw["training"], "verbose": 0}
    if epochs is not None:
        training["epochs"] = epochs
    config = {**raw, "name": name, "training": training,
              "data": {"train": train_path, **held_out},
              "export": {"enabled": False}}
    if consolidate_section is not None:
        config["consolidate"] = consolidate_section
    return parse_config(config)


def _rate(numerator, denominator):
    return float(numerator / denominator) if denominator else None


def detection_numbers(result, truth, flipped, hidden):
    """Per detector: income detection against `flipped`, never_married
    pseudo-labels against the hidden truth.

    Args:
        result: a `kmtl.runs.consolidation.Consolidation` (both detectors).
        truth: `{task: int (rows,)}`, the clean labels.
        flipped: bool `(rows,)`, the flipped income labels.
        hidden: bool `(rows,)`, the hidden never_married labels.

    Returns:
        `{detector: {"income": {...}, "never_married": {...}}}`.
    """
    out = {}
    for detector in DETECTORS:
        tasks = result.detections.get(detector)
        if tasks is None:
            continue
        numbers = {}
        for name, detection in tasks.items():
            flags = detection["label_issue"].to_numpy(bool)
            scored = detection["scored"].to_numpy(bool)
            confidence = detection["confidence"].to_numpy(float)
            suggested = np.asarray(detection["suggested"].tolist()).reshape(
                len(detection), -1)[:, 0]
            # The out-of-fold probability of the positive class.
            p = np.where(suggested == 1, confidence, 1.0 - confidence)
            out_of_fold = result.report["tasks"][name]["rounds"][0]["out_of_fold"]
            entry = {
                "scored": int(scored.sum()),
                "flagged": int(flags.sum()),
                "oof_auc_given": out_of_fold.get(detector),
                "oof_auc_true": float(roc_auc_score(truth[name], p)),
            }
            if name == "income":
                hits = int((flags & flipped).sum())
                given = np.where(flipped, 1 - truth[name], truth[name])
                # The labels `relabel` would change (its default threshold).
                relabel = flags & (suggested != given) & (
                    confidence >= RELABEL_THRESHOLD)
                quality = detection["label_quality"].to_numpy(float)
                entry.update({
                    "flips": int(flipped.sum()),
                    "flips_up": int((flipped & (truth[name] == 0)).sum()),
                    "true_flags": hits,
                    "precision": _rate(hits, flags.sum()),
                    "recall": _rate(hits, flipped.sum()),
                    "flagged_confidence_median": (
                        float(np.median(confidence[flags])) if flags.any()
                        else None),
                    "relabel_candidates": int(relabel.sum()),
                    "relabel_precision": _rate((relabel & flipped).sum(),
                                               relabel.sum()),
                    "quality_ranking_auc": (float(roc_auc_score(
                        flipped[scored], 1.0 - quality[scored]))
                        if flipped[scored].any() else None),
                })
            else:
                covered = hidden & (confidence >= THRESHOLD)
                entry.update({
                    "hidden": int(hidden.sum()),
                    "covered": int(covered.sum()),
                    "coverage": _rate(covered.sum(), hidden.sum()),
                    "accuracy": _rate((suggested[covered] == truth[name][covered])
                                      .sum(), covered.sum()),
                    "accuracy_all_hidden": _rate(
                        (suggested[hidden] == truth[name][hidden]).sum(),
                        hidden.sum()),
                    "false_flags_given": int((flags & ~hidden).sum()),
                })
            numbers[name] = entry
        out[detector] = numbers
    return out


def action_counts(result):
    """`{task: {flagged, relabelled, dropped, filled}}` of a consolidation."""
    return {name: {key: task["rounds"][0][key] for key in
                   ("flagged", "relabelled", "dropped", "filled")}
            for name, task in result.report["tasks"].items()}


def label_errors(path, truth):
    """How the labels of a training table differ from the truth.

    Args:
        path: a Parquet training table (noisy or consolidated), rows in the
            order of `truth`.
        truth: `{task: int (rows,)}`, the clean labels.

    Returns:
        `{task: {"false_positive", "false_negative", "missing"}}`: labels 1
        where the truth is 0, labels 0 where it is 1, and missing labels.
    """
    table = pd.read_parquet(path, columns=list(truth))
    out = {}
    for name, true in truth.items():
        given = pd.to_numeric(table[name]).to_numpy(dtype="float64")
        out[name] = {"false_positive": int(((given == 1) & (true == 0)).sum()),
                     "false_negative": int(((given == 0) & (true == 1)).sum()),
                     "missing": int(np.isnan(given).sum())}
    return out


def scored_run(config, data_dir, folder, test):
    """Trains `config` and scores the clean `test` frame: `(income AUC,
    never_married AUC, epochs, minutes)`."""
    start = time.perf_counter()
    result = train(config, data_dir=data_dir, output_dir=folder,
                   log=lambda line: None, resume=None)
    model = keras.saving.load_model(os.path.join(result["run_dir"], "model.keras"))
    predicted = model.predict(make_dataset(test, model.features, batch_size=4096),
                              verbose=0)
    keras.backend.clear_session()
    return {
        "income": float(roc_auc_score(test["income"], predicted["income"][:, 0])),
        "never_married": float(roc_auc_score(test["never_married"],
                                             predicted["never_married"][:, 0])),
        "epochs": len(result["history"]["loss"]),
        "minutes": (time.perf_counter() - start) / 60,
    }


MIN_LOSS = 0.001
"""The smallest AUC loss (clean - noisy) a recovered share is given for:
below it the share divides by noise."""


def recovered(row, clean, noisy, task):
    lost = clean[task] - noisy[task]
    return (row[task] - noisy[task]) / lost if lost >= MIN_LOSS else None


def _f(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def markdown(results, command):
    """The Markdown of the results so far."""
    lines = [
        "# Consolidation on Census-Income: injected label noise (issue 16)",
        "",
        f"Command: `{command}`",
        "",
        f"Census training table ({results['rows']:,} rows) with income "
        f"labels flipped (seed {results['seed']}, `numpy.random.default_rng`) "
        "and half the never_married labels hidden; "
        "`examples/census_income.yaml` (MMoE), `consolidate: {folds: 5, "
        "compare_detectors: true}`; the validation and test halves stay clean. "
        "One seed.",
        "",
    ]
    for key, scenario in results["scenarios"].items():
        lines.append(f"- scenario {key}: {scenario['text']} ({scenario['note']}); "
                     f"{scenario['hidden']:,} never_married labels hidden")
    lines += [
        "",
        "## Income: flagged labels against the injected flips",
        "",
        "Precision: share of the flagged labels that were flipped; recall: "
        "share of the flips flagged; ranking AUC: the label-quality score "
        "(low: doubted) as a detector of the flips over all labels; "
        "relabel: the flagged labels whose "
        "out-of-fold confidence in the other label reaches "
        f"{RELABEL_THRESHOLD} (those `relabel` changes), and the share of them "
        "that were flipped; confidence: the median out-of-fold confidence "
        "of the model's label on the flagged rows. OOF AUC: out-of-fold AUC "
        "against the given (noisy) labels "
        "(`report`) and against the true labels (the noise-corrected "
        "probability consolidate's `suggested` and `confidence` come from).",
        "",
        "| scenario | detector | flips injected | flagged | precision | recall "
        "| ranking AUC | confidence | relabel (precision) | OOF AUC (given) "
        "| OOF AUC (true) "
        "| minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, scenario in results["scenarios"].items():
        for detector, numbers in scenario.get("detection", {}).items():
            n = numbers["income"]
            lines.append(
                f"| {key} | {detector} | {n['flips']:,} | {n['flagged']:,} | "
                f"{_f(n['precision'])} | {_f(n['recall'])} | "
                f"{_f(n['quality_ranking_auc'])} | "
                f"{_f(n['flagged_confidence_median'])} | "
                f"{n['relabel_candidates']:,} ({_f(n['relabel_precision'])}) | "
                f"{_f(n['oof_auc_given'], 4)} | {_f(n['oof_auc_true'], 4)} | "
                f"{_f(scenario['consolidate_minutes'], 1)} |")
    lines += [
        "",
        "## never_married: pseudo-labels for the hidden labels",
        "",
        f"Coverage: share of the hidden labels whose out-of-fold confidence "
        f"reaches {THRESHOLD}; accuracy: of those suggestions against the hidden "
        f"truth (and over all hidden labels); false flags: given (true) "
        f"never_married labels flagged.",
        "",
        "| scenario | detector | hidden | coverage | accuracy | accuracy (all "
        "hidden) | false flags | OOF AUC (given) | OOF AUC (true) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, scenario in results["scenarios"].items():
        for detector, numbers in scenario.get("detection", {}).items():
            n = numbers["never_married"]
            lines.append(
                f"| {key} | {detector} | {n['hidden']:,} | {_f(n['coverage'])} | "
                f"{_f(n['accuracy'], 4)} | {_f(n['accuracy_all_hidden'], 4)} | "
                f"{n['false_flags_given']:,} | {_f(n['oof_auc_given'], 4)} | "
                f"{_f(n['oof_auc_true'], 4)} |")
    clean = results.get("auc", {}).get("clean")
    for key, scenario in results["scenarios"].items():
        auc = scenario.get("auc")
        if not auc:
            continue
        noisy = auc.get("noisy")
        lines += [
            "",
            f"## Test AUC, scenario {key} ({scenario['text']})",
            "",
            "Clean test half; trained on the table named; recovered = "
            "(AUC - AUC noisy) / (AUC clean - AUC noisy), n/a when the noise "
            f"cost less than {MIN_LOSS} AUC. Label counts: income "
            "flagged / relabelled / dropped; never_married filled; the training "
            "table's labels against the truth: wrong 0 -> 1, wrong 1 -> 0, and "
            "missing.",
            "",
            "| data | income AUC | never_married AUC | recovered (income) "
            "| recovered (never_married) | income flagged/relabelled/dropped "
            "| never_married filled | income labels 0->1 / 1->0 / missing "
            "| never_married labels 0->1 / 1->0 / missing | epochs | minutes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [("clean", clean)] + list(auc.items())
        for label, row in rows:
            if row is None:
                continue
            share = {task: (recovered(row, clean, noisy, task)
                            if clean and noisy and label not in ("clean", "noisy")
                            else None) for task in ("income", "never_married")}
            counts = row.get("counts")
            errors = row.get("errors")
            wrong = {task: (f"{e['false_positive']:,} / {e['false_negative']:,} / "
                            f"{e['missing']:,}") for task, e in errors.items()
                     } if errors else {"income": "", "never_married": ""}
            changed = (f"{counts['income']['flagged']:,} / "
                       f"{counts['income']['relabelled']:,} / "
                       f"{counts['income']['dropped']:,}" if counts else "")
            filled = f"{counts['never_married']['filled']:,}" if counts else ""
            lines.append(
                f"| {label} | {row['income']:.4f} | {row['never_married']:.4f} | "
                f"{_f(share['income'], 2)} | {_f(share['never_married'], 2)} | "
                f"{changed} | {filled} | {wrong['income']} | "
                f"{wrong['never_married']} | {row['epochs']} | "
                f"{row['minutes'] + row.get('consolidate_minutes', 0):.1f} |")
    goal = results.get("goal")
    if goal:
        lines += ["", "## Issue 16's goal (scenario b)", ""] + [
            f"- {line}" for line in goal]
    lines += ["", f"Wall time so far: {results['wall_minutes']:.1f} minutes.", ""]
    return "\n".join(lines)


def goal_lines(results):
    """Whether scenario b meets issue 16's goal, in words."""
    scenario = results["scenarios"].get("b")
    if not scenario:
        return None
    lines = []
    detection = scenario.get("detection", {}).get("multi_task")
    if detection:
        precision = detection["income"]["precision"]
        met = precision is not None and precision >= 0.8
        lines.append(f"flag precision >= 0.8 (multi-task): {_f(precision)} -> "
                     f"{'met' if met else 'NOT met'}")
    auc = scenario.get("auc", {})
    clean = results.get("auc", {}).get("clean")
    noisy = auc.get("noisy")
    if clean and noisy:
        for label in ACTIONS:
            if label in auc:
                share = recovered(auc[label], clean, noisy, "income")
                verdict = ("met" if share is not None and share >= 0.5
                           else "NOT met")
                lines.append(f"`{label}` recovers >= half of the income AUC lost "
                             f"({clean['income'] - noisy['income']:.4f}): "
                             f"{_f(share, 2)} -> {verdict}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["b", "a", "c"],
                        choices=list(SCENARIOS),
                        help="the detection scenarios, in this order")
    parser.add_argument("--auc-scenarios", nargs="*", default=["b"],
                        choices=list(SCENARIOS),
                        help="the scenarios with a test-AUC table (each also in "
                        "--scenarios)")
    parser.add_argument("--work-dir", default=None,
                        help="folder of the Parquet files and run directories "
                        "(default: a temporary folder, removed at the end)")
    parser.add_argument("--data-dir", default=None,
                        help="the census folder (default benchmarks.common."
                        "census_dir())")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="consolidation",
                        help="the stem of the result files in benchmarks/results/ "
                        "(default: consolidation -> .md and .json)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override training.epochs (default: the config's)")
    parser.add_argument("--rows", type=int, default=None,
                        help="a random subset of the training rows (smoke tests)")
    args = parser.parse_args()
    command = ("nice -n 10 .venv/bin/python benchmarks/consolidation.py " +
               " ".join(sys.argv[1:])).strip()
    started = time.perf_counter()
    data_dir = args.data_dir or census_dir()
    with open(CENSUS_CONFIG, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    train_frame, validation, test = load_census_income(data_dir)
    if args.rows:
        train_frame = train_frame.sample(args.rows, random_state=args.seed
                                         ).reset_index(drop=True)
    truth = {name: train_frame[name].to_numpy() for name in ("income",
                                                             "never_married")}
    os.makedirs(RESULTS, exist_ok=True)
    results = {"command": command, "seed": args.seed, "rows": len(train_frame),
               "scenarios": {}, "auc": {}}

    def save():
        results["wall_minutes"] = (time.perf_counter() - started) / 60
        results["goal"] = goal_lines(results)
        with open(os.path.join(RESULTS, f"{args.results}.json"), "w",
                  encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
        with open(os.path.join(RESULTS, f"{args.results}.md"), "w",
                  encoding="utf-8") as handle:
            handle.write(markdown(results, command))

    def log(line):
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {line}",
              flush=True)

    with tempfile.TemporaryDirectory() as temporary:
        work = args.work_dir or temporary
        os.makedirs(work, exist_ok=True)
        runs = os.path.join(work, "runs")
        held_out = {}
        for split, frame in (("validation", validation), ("test", test)):
            held_out[split] = os.path.join(work, f"census_{split}.parquet")
            frame.to_parquet(held_out[split], index=False)

        def consolidation(key, noisy_path, actions, compare):
            label = "+".join(actions)
            output = os.path.join(work, f"scenario_{key}.{label}.parquet")
            if os.path.exists(output):
                os.remove(output)
            config = run_config(raw, f"consolidate_{key}_{label.replace('+', '_')}",
                                noisy_path, held_out, args.epochs,
                                {"folds": 5, "actions": actions,
                                 "compare_detectors": compare, "output": output})
            start = time.perf_counter()
            result = consolidate(config, output_dir=runs,
                                 log=lambda line: log(f"{key} {label}: {line}"))
            return result, (time.perf_counter() - start) / 60

        def trained(name, path):
            scores = scored_run(run_config(raw, name, path, held_out, args.epochs),
                              None, runs, test)
            log(f"trained {name}: income {scores['income']:.4f}, never_married "
                f"{scores['never_married']:.4f} ({scores['minutes']:.1f} min)")
            return scores

        for key in args.scenarios:
            noisy, flipped, hidden, note = inject(train_frame, key, args.seed)
            noisy_path = os.path.join(work, f"scenario_{key}.parquet")
            noisy.to_parquet(noisy_path, index=False)
            scenario = results["scenarios"][key] = {
                "text": SCENARIOS[key]["text"], "note": note,
                "flips": int(flipped.sum()), "hidden": int(hidden.sum())}
            log(f"scenario {key}: {SCENARIOS[key]['text']}; {note}")
            with_auc = key in args.auc_scenarios
            actions = ACTIONS["drop"] if with_auc else ["report"]
            result, minutes = consolidation(key, noisy_path, actions, True)
            scenario["consolidate_minutes"] = minutes
            scenario["detection"] = detection_numbers(result, truth, flipped,
                                                      hidden)
            log(f"scenario {key} detection: "
                f"{json.dumps(scenario['detection'])}")
            save()
            if not with_auc:
                continue
            auc = scenario["auc"] = {}
            if "clean" not in results["auc"]:
                clean_path = os.path.join(work, "census_train.parquet")
                train_frame.drop(columns=list(DROPPED_COLUMNS)).to_parquet(
                    clean_path, index=False)
                results["auc"]["clean"] = {**trained("clean", clean_path),
                                           "errors": label_errors(clean_path,
                                                                  truth)}
                save()
            auc["noisy"] = {**trained(f"noisy_{key}", noisy_path),
                            "errors": label_errors(noisy_path, truth)}
            save()
            auc["drop"] = {**trained(f"drop_{key}", result.output),
                           "counts": action_counts(result),
                           "errors": label_errors(result.output, truth),
                           "consolidate_minutes": minutes}
            save()
            del result
            for label, chosen in ACTIONS.items():
                if label == "drop":
                    continue
                result, minutes = consolidation(key, noisy_path, chosen, False)
                auc[label] = {**trained(f"{label.replace('+', '_')}_{key}",
                                        result.output),
                              "counts": action_counts(result),
                              "errors": label_errors(result.output, truth),
                              "consolidate_minutes": minutes}
                del result
                save()
        save()
    print(markdown(results, command))


if __name__ == "__main__":
    main()
