"""Shared bottom vs MMoE on the MMoE paper's synthetic data, across task
correlations.

Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts", KDD 2018, section 5 (Figure 4): on two regression tasks
whose correlation `p` is set by hand (`kmtl.datasets.synthetic`), the shared
bottom model's loss grows as `p` falls, MMoE's much less, so the gap between
them widens as the tasks become less related.

For each correlation and seed, one data set (the same `x`, `u1`, `u2`, sines and
noise for every correlation with that seed) is split into training and test
rows, and every model is trained on it with the same budget (Adam, same epochs,
batch size, initialization seed). Sizes follow the paper as quoted by
reproductions: MMoE and OMoE with 8 experts of one hidden layer of 16 units,
the shared bottom one hidden layer of 113 units (comparable parameter counts),
towers of 8 units. OMoE (one gate for every task) is the MMoE layer with a
single gate. Reported per model: the final training loss (the paper's Figure 4
measure, evaluated on the training rows after the last epoch) and the test loss
per task. kmtl takes regression losses on standardized labels, so each task
loss is the MSE divided by the label variance (about 1 - R^2) and the training
loss is their sum.

Usage (the defaults took 377 s on 2 CPU cores shared with other jobs):

    .venv/bin/python benchmarks/synthetic_correlation.py \\
        [--seeds 3] [--epochs 20] [--samples 10000] [--test-samples 2000] \\
        [--correlations 1.0 0.9 0.5] [--models shared_bottom mmoe] \\
        [--out benchmarks/results/synthetic_correlation.json]

Writes the JSON and prints a Markdown table. Not part of `make bench`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

import kmtl  # noqa: E402
from kmtl.architectures import MMoE  # noqa: E402
from kmtl.data import make_dataset  # noqa: E402
from kmtl.datasets.synthetic import make_synthetic_tasks  # noqa: E402
from kmtl.datasets.synthetic import synthetic_feature_names  # noqa: E402
from kmtl.datasets.synthetic import synthetic_tasks  # noqa: E402
from kmtl.features import resolve_features  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TASKS = ("y1", "y2")


class OneGateMoE(keras.layers.Layer):
    """OMoE: the MMoE layer with one gate that every task reads."""

    def __init__(self, task_names, **options):
        super().__init__(name="omoe")
        self.task_names = list(task_names)
        self.moe = MMoE(["shared"], **options)

    def call(self, inputs, training=None):
        mixed = self.moe(inputs, training=training)["shared"]
        return {name: mixed for name in self.task_names}

    def compute_output_shape(self, input_shape):
        return {name: (*input_shape[:-1], self.moe.expert_units[-1])
                for name in self.task_names}


def model_options(name):
    """`build_model` keyword arguments of each compared model."""
    if name == "shared_bottom":
        return {"architecture": "shared_bottom", "units": [113]}
    if name == "mmoe":
        return {"architecture": "mmoe", "num_experts": 8, "expert_units": [16]}
    if name == "omoe":
        return {"architecture": OneGateMoE(TASKS, num_experts=8,
                                           expert_units=[16])}
    raise ValueError(f"Unknown model {name!r}. Use shared_bottom, mmoe or omoe.")


def prepare(correlation, seed, samples, test_samples):
    frame = make_synthetic_tasks(samples + test_samples, correlation=correlation,
                                 seed=seed)
    train, test = frame.iloc[:samples], frame.iloc[samples:]
    tasks = synthetic_tasks()
    for task in tasks:
        task.fit(train)
    features = resolve_features(train, numeric=synthetic_feature_names())
    for feature in features:
        feature.fit(train)
    return train, test, features, tasks


def train_one(model_name, seed, train, test, features, tasks, args):
    keras.utils.set_random_seed(seed)
    options = model_options(model_name)
    model = kmtl.build_model(features, tasks, tower_units=[8], **options)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    train_data = make_dataset(train, features, tasks, args.batch_size,
                              shuffle=True, seed=seed)
    start = time.perf_counter()
    model.fit(train_data, epochs=args.epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    on_train = model.evaluate(make_dataset(train, features, tasks, 1024),
                              verbose=0, return_dict=True)
    on_test = model.evaluate(make_dataset(test, features, tasks, 1024),
                             verbose=0, return_dict=True)
    architecture = options["architecture"]
    shared = model.get_layer(architecture if isinstance(architecture, str)
                             else architecture.name)
    return {
        "train_loss": on_train["loss"],
        **{f"test_{t}": on_test[f"{t}_loss"] for t in TASKS},
        "test_loss": sum(on_test[f"{t}_loss"] for t in TASKS),
        "parameters": model.count_params(),
        "shared_parameters": shared.count_params(),
        "seconds": seconds,
    }


def summarize(runs):
    """mean and population std over seeds of every measure."""
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    return {k: {"mean": statistics.fmean(r[k] for r in runs),
                "std": statistics.pstdev(r[k] for r in runs)} for k in keys}


def table(summary, correlations, models):
    lines = []
    header = "| p | " + " | ".join(
        f"{m} train loss | {m} test loss" for m in models)
    gaps = [m for m in models if m != "shared_bottom"]
    if "shared_bottom" in models:
        header += "".join(f" | {m} - shared_bottom (train) | "
                          f"{m} - shared_bottom (test)" for m in gaps)
    lines.append(header + " |")
    lines.append("|" + "---|" * (header.count("|")))
    for p in correlations:
        cells = []
        for m in models:
            s = summary[str(p)][m]
            cells += [f"{s['train_loss']['mean']:.4f} ± {s['train_loss']['std']:.4f}",
                      f"{s['test_loss']['mean']:.4f} ± {s['test_loss']['std']:.4f}"]
        if "shared_bottom" in models:
            for m in gaps:
                gap = summary[str(p)]["gap"][m]
                cells += [f"{gap['train_loss']['mean']:+.4f} ± "
                          f"{gap['train_loss']['std']:.4f}",
                          f"{gap['test_loss']['mean']:+.4f} ± "
                          f"{gap['test_loss']['std']:.4f}"]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3,
                        help="runs per correlation and model (seeds 0..N-1)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10000,
                        help="training rows")
    parser.add_argument("--test-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--correlations", type=float, nargs="+",
                        default=[1.0, 0.9, 0.5])
    parser.add_argument("--models", nargs="+", default=["shared_bottom", "mmoe"],
                        choices=["shared_bottom", "mmoe", "omoe"])
    parser.add_argument("--out", default=os.path.join(
        RESULTS, "synthetic_correlation.json"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    runs = {str(p): {m: [] for m in args.models} for p in args.correlations}
    for p in args.correlations:
        for seed in range(args.seeds):
            data = prepare(p, seed, args.samples, args.test_samples)
            for m in args.models:
                result = train_one(m, seed, *data, args)
                runs[str(p)][m].append(result)
                print(f"p={p} seed={seed} {m}: train {result['train_loss']:.4f} "
                      f"test {result['test_loss']:.4f} "
                      f"({result['seconds']:.0f} s)", flush=True)
    summary = {}
    for p in args.correlations:
        key = str(p)
        summary[key] = {m: summarize(runs[key][m]) for m in args.models}
        if "shared_bottom" in args.models:
            summary[key]["gap"] = {}
            for m in args.models:
                if m == "shared_bottom":
                    continue
                # Per seed: same data, same initialization seed.
                gaps = [{k: r[k] - b[k] for k in ("train_loss", "test_loss")}
                        for r, b in zip(runs[key][m], runs[key]["shared_bottom"])]
                summary[key]["gap"][m] = summarize(gaps)
    result = {
        "benchmark": "synthetic_correlation",
        "paper": "Ma et al., KDD 2018, section 5, Figure 4",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "machine": platform.machine()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "loss_units": "sum over the two tasks of MSE / label variance",
        "seconds": time.perf_counter() - start,
        "summary": summary,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(table(summary, args.correlations, args.models))
    print(f"{result['seconds']:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
