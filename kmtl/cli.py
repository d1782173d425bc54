"""The `kmtl` command line: train, evaluate, predict, export, compare,
consolidate, tune, config-schema."""

import argparse
import json
import os
import sys

from kmtl._files import write_atomically
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.errors import TrainingError


def _open_run(run_dir):
    from kmtl.runs.run_dir import RunDir

    run = RunDir.open(run_dir)
    return run, run.read_config(), run.load_model()


def _read_input(path, config):
    from kmtl.data import read_table

    options = {} if config.data.dataset else config.data.read_options
    return read_table(path, **options)


def _read_config(path, overrides=()):
    """The config file with the command line's overrides, validated together.

    Args:
        overrides: `(key path, flag, value)` triples; a None value is no override.
    """
    from kmtl.runs.config import read_config

    given = [(key, flag, value) for key, flag, value in overrides
             if value is not None]
    return read_config(path, overrides={key: value for key, _, value in given},
                       sources={key: flag for key, flag, _ in given})


def cmd_train(args):
    from kmtl.runs.training import train

    config = _read_config(args.config, [
        ("training.epochs", "--epochs", args.epochs),
        ("training.seed", "--seed", args.seed),
        ("data.split.seed", "--seed", args.seed),
        ("export.dir", "--export-dir", args.export_dir),
        ("training.weighting", "--weighting", args.weighting),
        ("training.strategy", "--strategy", args.strategy),
    ])
    resume = None if args.no_resume else (args.resume or "auto")
    train(config, data_dir=args.data_dir, output_dir=args.output_dir, resume=resume)


def cmd_evaluate(args):
    from kmtl.runs.data import INPUT_HINT
    from kmtl.runs.data import load_splits
    from kmtl.runs.data import load_stored_splits
    from kmtl.runs.data import split_datasets
    from kmtl.runs.data import warn_unseen
    from kmtl.runs.training import evaluate_splits
    from kmtl.runs.training import metrics_table

    run, config, model = _open_run(args.run_dir)
    if args.data:
        frames = {os.path.basename(args.data): _read_input(args.data, config)}
        warn_unseen(model.features, frames, INPUT_HINT)
    else:
        record = run.read_split()
        if record is None:
            print(f"kmtl evaluate: note: {args.run_dir} has no split.json (written "
                  f"by an earlier kmtl): cutting the held-out splits again with "
                  f"data.split.", file=sys.stderr)
            _, validation, test = load_splits(config, args.data_dir, model.tasks)
        else:
            _, validation, test = load_stored_splits(config, record, args.data_dir)
        frames = {"validation": validation, "test": test}
    datasets = split_datasets(frames, model.features, model.tasks,
                              config.training.batch_size)
    metrics = evaluate_splits(model, datasets)
    print(metrics_table(metrics))
    if args.json:
        print(json.dumps(metrics, indent=2))


def _check_output_file(output):
    """Raises a DataError naming `output` when predictions cannot be written
    there: a directory, or a folder that does not exist or is not writable."""
    if os.path.isdir(output):
        raise DataError(f"The output {output!r} is a directory; give a file path "
                        f"such as {os.path.join(output, 'predictions.csv')!r}.")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise DataError(f"The output folder {folder!r} does not exist; create it "
                        f"or choose another path for the predictions.")
    if not os.access(folder, os.W_OK):
        raise DataError(f"The output folder {folder!r} is not writable; choose "
                        f"another path for the predictions.")


def cmd_predict(args):
    import pandas as pd

    from kmtl.data import make_dataset
    from kmtl.data.io import PARQUET_SUFFIXES
    from kmtl.runs.data import INPUT_HINT
    from kmtl.runs.data import warn_unseen

    _check_output_file(args.output)
    _, config, model = _open_run(args.run_dir)
    frame = _read_input(args.input, config)
    warn_unseen(model.features, {"input": frame}, INPUT_HINT)
    dataset = make_dataset(frame, model.features, None, config.training.batch_size)
    predictions = model.predict(dataset, verbose=0)
    columns = {}
    for task in model.tasks:
        columns.update(task.decode(predictions[task.name]))
    result = pd.DataFrame(columns)
    output = args.output

    def write(path):
        if output.lower().endswith(PARQUET_SUFFIXES):
            result.to_parquet(path, index=False)
        else:
            result.to_csv(path, index=False)

    try:
        write_atomically(output, write)
    except OSError as error:
        raise DataError(f"Cannot write the predictions to {output!r}: "
                        f"{error.strerror or error}. Nothing was written; free "
                        f"space or choose another path.") from None
    print(f"Wrote {len(result)} rows x {len(result.columns)} columns to {output}")


def cmd_export(args):
    from kmtl.models.export import describe_renamed_inputs
    from kmtl.models.export import export_saved_model

    _, config, model = _open_run(args.run_dir)
    base = args.export_dir or config.export.dir or os.path.join(
        "saved_models", config.name)
    print(f"SavedModel for TF Serving: {export_saved_model(model, base)}")
    renamed = describe_renamed_inputs(model)
    if renamed:
        print(renamed)


def cmd_compare(args):
    from kmtl.runs.comparison import compare

    config = _read_config(args.config, [("training.epochs", "--epochs", args.epochs)])
    compare(config, data_dir=args.data_dir, output_dir=args.output_dir,
            seeds=args.seeds)


def cmd_consolidate(args):
    from kmtl.runs.consolidation import consolidate

    config = _read_config(args.config, [
        ("training.epochs", "--epochs", args.epochs),
        ("consolidate.folds", "--folds", args.folds),
        ("consolidate.output", "--output", args.output)])
    consolidate(config, data_dir=args.data_dir, output_dir=args.output_dir,
                detector="single_task" if args.single_task else None,
                compare_detectors=True if args.compare_detectors else None)


def cmd_tune(args):
    from kmtl.runs.tuning import tune

    config = _read_config(args.config, [
        ("training.epochs", "--epochs", args.epochs),
        ("tune.trials", "--trials", args.trials),
        ("tune.algorithm", "--algorithm", args.algorithm)])
    tune(config, data_dir=args.data_dir, output_dir=args.output_dir,
         overwrite=args.overwrite)


def cmd_config_schema(args):
    from kmtl.runs.config import RunConfig

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **RunConfig.model_json_schema()}
    print(json.dumps(schema, indent=2, ensure_ascii=False))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kmtl", description="Multi-task learning with Keras 3: train, evaluate, "
        "predict and export multi-task models from tables.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a model from a YAML config",
        description="Train a multi-task model from a YAML config. Creates a fresh run "
        "directory (config.yaml, split.json, model.keras, metrics.json, logs/) and "
        "exports a SavedModel; the last line printed names the run directory. "
        "Nothing is written when the config or the data fails a check. A run that "
        "was killed goes on from its last finished epoch: with --resume RUN_DIR, "
        "or by itself when the newest run of the config's name is unfinished and "
        "was started with the same config and data.")
    train.add_argument("config", help="path of the YAML config (see docs/config.md)")
    train.add_argument("--data-dir", help="folder that relative data paths and "
                       "built-in data sets are read from (default: KMTL_DATA_DIR)")
    train.add_argument("--output-dir", default="runs",
                       help="where run directories are created (default: runs)")
    train.add_argument("--export-dir", help="SavedModel base directory (default: "
                       "export.dir, else saved_models/<config name>)")
    train.add_argument("--epochs", type=int, help="override training.epochs")
    train.add_argument("--seed", type=int, help="override training.seed and the "
                       "split seed")
    train.add_argument("--weighting", help="override training.weighting: a method "
                       "name or spec such as 'static(mean=True)' or 'cagrad(c=0.4)' "
                       "(see kmtl.weighting.list_weightings())")
    train.add_argument("--strategy", help="override training.strategy: default, "
                       "mirrored, multi_worker or parameter_server (the last two "
                       "read TF_CONFIG; see docs/guides/distributed.md)")
    resuming = train.add_mutually_exclusive_group()
    resuming.add_argument("--resume", metavar="RUN_DIR", help="go on training this "
                          "unfinished run directory from its last finished epoch")
    resuming.add_argument("--no-resume", action="store_true", help="start a fresh "
                          "run even when the newest run of this config is "
                          "unfinished")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="per-task metrics of a trained run",
        description="Print per-task metrics of a run's model on DATA, or on the "
        "validation and test rows stored in the run directory (split.json).")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("data", metavar="DATA", nargs="?",
                          help="a CSV/Parquet file with features and labels")
    evaluate.add_argument("--data-dir", help="as for train")
    evaluate.add_argument("--json", action="store_true", help="also print JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = commands.add_parser(
        "predict", help="predict every task for a table",
        description="Predict every task for the rows of INPUT (CSV/Parquet) and write "
        "OUTPUT (CSV/Parquet by suffix) with one column per task output.")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument("input", metavar="INPUT")
    predict.add_argument("output", metavar="OUTPUT")
    predict.set_defaults(func=cmd_predict)

    export = commands.add_parser(
        "export", help="export a run's model for TF Serving",
        description="Export a run's model as a SavedModel in <base>/<next version>/ "
        "with the serving_default signature.")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--export-dir", help="base directory (default: the run's "
                        "export.dir, else saved_models/<config name>)")
    export.set_defaults(func=cmd_export)

    compare = commands.add_parser(
        "compare", help="single-task baselines vs multi-task variants, over seeds",
        description="Train one single-task model per task and every multi-task "
        "variant of the config's `compare` section, each over N seeds on the same "
        "split, and write report.md, report.json and plots (Δm, negative transfer, "
        "validation curves, task weights, interference) to a fresh directory "
        "<output-dir>/<name>-compare-<timestamp>/; the last line printed names it.")
    compare.add_argument("config", help="path of the YAML config (see docs/config.md, "
                         "section compare)")
    compare.add_argument("--seeds", type=_positive_int, help="override compare.seeds: "
                         "how many seeds, from training.seed on")
    compare.add_argument("--data-dir", help="as for train")
    compare.add_argument("--output-dir", default="runs",
                         help="where the compare directory is created (default: runs)")
    compare.add_argument("--epochs", type=int, help="override training.epochs")
    compare.set_defaults(func=cmd_compare)

    consolidate = commands.add_parser(
        "consolidate", help="find label errors and fill missing labels with "
        "cross-fitted models",
        description="Cut the config's training table into k folds, score every "
        "row with a model trained on the other folds, flag likely label errors "
        "(cleanlab's confident learning; a residual rule for regression), and "
        "apply consolidate.actions (report, drop, relabel, fill). Writes a new "
        "Parquet table beside the input (never overwriting it) with "
        "<task>__label_issue, __label_quality, __pseudo and __suggested columns, "
        "and report.md, report.json and plots to a fresh directory "
        "<output-dir>/<name>-consolidate-<timestamp>/.")
    consolidate.add_argument("config", help="path of the YAML config (see "
                             "docs/config.md, section consolidate)")
    consolidate.add_argument("--single-task", action="store_true",
                             help="score the labels with one single-task model "
                             "per task (consolidate.detector: single_task)")
    consolidate.add_argument("--compare-detectors", action="store_true",
                             help="also cross-fit the other detector and report "
                             "how the two agree (consolidate.compare_detectors)")
    consolidate.add_argument("--folds", type=int, help="override consolidate.folds")
    consolidate.add_argument("--output", help="override consolidate.output (a "
                             "Parquet path that does not exist)")
    consolidate.add_argument("--data-dir", help="as for train")
    consolidate.add_argument("--output-dir", default="runs", help="where the "
                             "consolidate directory is created (default: runs)")
    consolidate.add_argument("--epochs", type=int, help="override training.epochs")
    consolidate.set_defaults(func=cmd_consolidate)

    tune = commands.add_parser(
        "tune", help="search loss weights, learning rate, sizes and methods "
        "with KerasTuner",
        description="Search the config's `tune.space` (random, bayesian or "
        "hyperband, KerasTuner): each trial trains the config with the trial's "
        "values as `kmtl train` would and is scored on the validation split "
        "(one metric, a weighted sum, or Δm against single-task baselines "
        "trained once). Writes best.yaml (ready for kmtl train), trials.csv, "
        "report.md, report.json and plots to <output-dir>/<name>-tune/; "
        "running the same command again resumes the search there (finished "
        "trials are not run again). The last line printed names the tune "
        "directory.")
    tune.add_argument("config", help="path of the YAML config (see docs/config.md, "
                      "section tune)")
    tune.add_argument("--trials", type=_positive_int, help="override tune.trials "
                      "(a larger budget extends a finished search)")
    tune.add_argument("--algorithm", help="override tune.algorithm: random, "
                      "bayesian or hyperband")
    tune.add_argument("--data-dir", help="as for train")
    tune.add_argument("--output-dir", default="runs", help="where the tune "
                      "directory is (default: runs)")
    tune.add_argument("--epochs", type=int, help="override training.epochs")
    tune.add_argument("--overwrite", action="store_true", help="delete the "
                      "earlier search of this config's tune directory and start "
                      "afresh (default: resume it)")
    tune.set_defaults(func=cmd_tune)

    schema = commands.add_parser(
        "config-schema", help="print the JSON Schema of the run config",
        description="Print the JSON Schema of the YAML run config (every key, its "
        "type, default and meaning), for editors that complete and check YAML "
        "(see docs/config.md).")
    schema.set_defaults(func=cmd_config_schema)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, DataError) as error:
        print(f"kmtl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"kmtl {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
