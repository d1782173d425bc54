"""`RunDir`: the one place that writes and reads a run directory.

A run directory `<output-dir>/<name>-<timestamp>[-n]/` holds:

- `config.yaml`: the resolved config (every default filled in), with each
  task's fitted fields (classes, positive label, regression mean and std) and
  the features actually used, by kind (`features.numeric`,
  `features.categorical`), including those chosen automatically, so that the
  file alone reproduces the run's inputs; a closing comment lists the model
  input name of each column whose name is not a valid one (`bill length
  (mm)` -> `bill_length_mm`);
- `split.json`: the split (see `kmtl.runs.data.split_data`): row positions of
  the train, validation and test rows in the training table, or a content
  hash of a split read from its own file;
- `model.keras`: the trained model;
- `metrics.json`: `{split: {task: {metric: value}}}` on the held-out splits;
- `logs/`: TensorBoard logs;
- while the run has not finished: `INCOMPLETE` (with the id of the process
  training it) and `backup/`, the training state after the last finished
  epoch (`kmtl.callbacks.RunBackup`), from which `kmtl train --resume`
  continues; `FAILED.txt` when training diverged.
"""

import datetime
import json
import os
import re
import shutil
import zipfile

import yaml

from kmtl._checks import process_alive
from kmtl._files import write_atomically
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.runs.config import parse_config
from kmtl.runs.config import parse_stored_config

CONFIG_FILE = "config.yaml"
"""The resolved config, with the fitted task fields and the features used."""
SPLIT_FILE = "split.json"
"""The record of the split: row positions or the held-out files' row counts and
content hashes."""
INCOMPLETE_FILE = "INCOMPLETE"
"""The marker of a run directory whose run has not finished (killed, failed
or still training)."""
FAILED_FILE = "FAILED.txt"
"""What a run directory whose training diverged holds: the reason."""
MODEL_FILE = "model.keras"
"""The trained model, as `keras.Model.save` writes it."""
METRICS_FILE = "metrics.json"
"""The held-out metrics, `{split: {task: {metric: value}}}`."""
STAGES_FILE = "stages.json"
"""With `training.stages`: each stage's tasks and held-out metrics."""
LOG_DIR = "logs"
"""The TensorBoard logs."""
DAMAGED_FIX = ("The run directory was changed or damaged after `kmtl train` "
               "wrote it: train again to get a complete one.")
BACKUP_DIR = "backup"
"""The training state after the last finished epoch, while the run has not
finished (`kmtl.callbacks.RunBackup`)."""

__all__ = ["BACKUP_DIR", "CONFIG_FILE", "LOG_DIR", "METRICS_FILE", "MODEL_FILE",
           "SPLIT_FILE", "RunDir", "resolved_config"]


def resolved_config(config, tasks=None, features=None):
    """The config as `config.yaml` stores it: a plain dict with the fitted task
    configs and the features used listed by kind.

    Args:
        config: a `RunConfig`.
        tasks: fitted `kmtl.Task`s (default: the config's task mappings).
        features: fitted features (default: the config's `features` lists).

    Returns:
        A dict that `kmtl.runs.config.parse_config` turns back into the same
        config.
    """
    resolved = config.to_dict()
    if tasks is not None:
        resolved["tasks"] = [task.get_config() for task in tasks]
    if features is not None:
        kinds = {}
        for feature in features:
            kinds.setdefault(feature.kind, []).append(feature.name)
        for kind in ("numeric", "categorical"):
            kinds.setdefault(kind, [])
        resolved["features"].update(kinds)
    return parse_config(resolved).to_dict()


class RunDir:
    """A run directory: creates it, writes and reads its files.

    Args:
        path: str or path-like, the directory.

    Examples:
        >>> run = RunDir.create("runs", "penguins")       # runs/penguins-<time>/
        >>> run.write_config(config, data.tasks, data.features)
        >>> RunDir.open(run.path).read_config().training.epochs
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def __fspath__(self):
        return self.path

    # === Creating and opening ===

    @classmethod
    def create(cls, output_dir, name):
        """Creates a fresh directory `output_dir/<name>-<timestamp>[-n]`; never
        reuses an existing one. It holds `INCOMPLETE` until `mark_complete`
        (a run killed or failed keeps it).

        Args:
            output_dir: str or path-like. The parent folder, created if absent.
            name: str. The run's name (`RunConfig.name`).

        Returns:
            A `RunDir` for the new directory.

        Raises:
            DataError: `output_dir` cannot be created or written.
        """
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        output_dir = os.fspath(output_dir)
        try:
            os.makedirs(output_dir, exist_ok=True)
            for attempt in range(1000):
                suffix = f"-{attempt}" if attempt else ""
                path = os.path.join(output_dir, f"{name}-{stamp}{suffix}")
                try:
                    os.mkdir(path)
                    run = cls(path)
                    run._claim()
                    return run
                except FileExistsError:
                    continue
        except OSError as error:
            raise DataError(
                f"Cannot write the output directory {output_dir!r}: "
                f"{error.strerror}. Pass a writable --output-dir.") from None
        raise DataError(f"No free run directory name under {output_dir!r}.")

    @classmethod
    def open(cls, path):
        """An existing run directory, checked to hold a config and a model.

        Args:
            path: str or path-like, the directory `kmtl train` printed.

        Returns:
            A `RunDir`.

        Raises:
            DataError: `path` is not a directory, or `config.yaml` or
                `model.keras` is missing (naming the file).
        """
        run = cls(path)
        if not os.path.isdir(run.path):
            raise DataError(f"{run.path!r} is not a kmtl run directory: no such "
                            f"directory. Pass the directory `kmtl train` printed "
                            f"last.")
        if run.incomplete and not os.path.isfile(run.file(MODEL_FILE)):
            why = ""
            if os.path.isfile(run.file(FAILED_FILE)):
                with open(run.file(FAILED_FILE), encoding="utf-8") as handle:
                    why = f" It failed: {handle.read().strip()}"
            raise DataError(f"{run.path!r} is a run that did not finish (it holds "
                            f"{INCOMPLETE_FILE} and no {MODEL_FILE}).{why} Train "
                            f"again, or pass a finished run.")
        for name in (MODEL_FILE, CONFIG_FILE):
            if not os.path.isfile(run.file(name)):
                raise DataError(f"{run.path!r} is not a kmtl run directory: {name} "
                                f"is missing. Pass the directory `kmtl train` "
                                f"printed last.")
        return run

    @classmethod
    def resume(cls, path):
        """An unfinished run directory, claimed by this process to go on
        training it (`kmtl train --resume`).

        Args:
            path: str or path-like, the run directory.

        Returns:
            A `RunDir`; its `INCOMPLETE` now names this process.

        Raises:
            DataError: naming the path: no such directory, not a run
                directory, a run that finished, that failed (with the reason)
                or that another running process is training.
        """
        run = cls(path)
        if not os.path.isdir(run.path):
            raise DataError(f"--resume {run.path!r}: no such directory. Pass the "
                            f"run directory `kmtl train` printed.")
        if not os.path.isfile(run.file(CONFIG_FILE)):
            raise DataError(f"--resume {run.path!r} is not a kmtl run directory: "
                            f"{CONFIG_FILE} is missing.")
        if not run.incomplete:
            raise DataError(f"--resume {run.path!r}: the run finished; there is "
                            f"nothing to resume. Train without --resume for a new "
                            f"run.")
        if os.path.isfile(run.file(FAILED_FILE)):
            with open(run.file(FAILED_FILE), encoding="utf-8") as handle:
                why = handle.read().strip()
            raise DataError(f"--resume {run.path!r}: the run failed, and resuming "
                            f"would repeat it: {why}")
        owner = run.owner
        if owner is not None and owner != os.getpid() and process_alive(owner):
            raise DataError(f"--resume {run.path!r}: process {owner} is training "
                            f"this run now. Wait for it, or stop it first.")
        run._claim()
        return run

    @classmethod
    def last_resumable(cls, output_dir, name):
        """The newest run directory of the config `name` under `output_dir`
        when it can be resumed: unfinished, not failed, not being trained by a
        running process, with a backup of at least one epoch. None otherwise
        (also when a newer run of `name` exists)."""
        output_dir = os.fspath(output_dir)
        pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?")
        try:
            names = [n for n in os.listdir(output_dir) if pattern.fullmatch(n)]
        except OSError:
            return None
        if not names:
            return None
        run = cls(os.path.join(output_dir, max(
            names, key=lambda n: os.path.getmtime(os.path.join(output_dir, n)))))
        owner = run.owner
        if (not run.incomplete or os.path.isfile(run.file(FAILED_FILE))
                or (owner is not None and process_alive(owner))
                or not os.path.isfile(os.path.join(run.backup_dir, "state.json"))):
            return None
        return run

    def check_same_run(self, config, tasks, features, split):
        """Checks that a resumed run goes on with the config (resolved, with
        its fitted tasks and features) and the split it was started with.

        Raises:
            ConfigError: naming each key that differs, with both values.
        """
        path = self.file(CONFIG_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                stored = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as error:
            raise DataError(f"Cannot resume {self.path!r}: {path!r} cannot be "
                            f"read: {error}") from None
        now = json.loads(json.dumps(resolved_config(config, tasks, features)))
        changed = _differences(stored, now)
        if self.read_split() not in (None, json.loads(json.dumps(split))):
            changed.append("the split (split.json): the data changed")
        if changed:
            listing = "; ".join(changed[:8])
            raise ConfigError(
                f"Cannot resume {self.path!r} with another config or data: "
                f"{listing}. Resume with the config and data it was started "
                f"with, or train afresh without --resume.")

    # === Completion ===

    @property
    def owner(self):
        """The id of the process that last started or resumed training this
        run (from `INCOMPLETE`), or None."""
        try:
            with open(self.file(INCOMPLETE_FILE), encoding="utf-8") as handle:
                match = re.search(r"^pid: (\d+)$", handle.read(), re.MULTILINE)
        except OSError:
            return None
        return int(match.group(1)) if match else None

    def _claim(self):
        with open(self.file(INCOMPLETE_FILE), "w", encoding="utf-8") as handle:
            handle.write(f"kmtl train has not finished this run.\npid: "
                         f"{os.getpid()}\n")

    @property
    def incomplete(self):
        """True while the run has not finished (its `INCOMPLETE` file)."""
        return os.path.isfile(self.file(INCOMPLETE_FILE))

    def mark_complete(self):
        """Removes `backup/`, then `INCOMPLETE`: every file of the run is
        written."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)
        if self.incomplete:
            os.remove(self.file(INCOMPLETE_FILE))

    def write_failure(self, message):
        """Writes `FAILED.txt` (why the run stopped); `INCOMPLETE` stays."""
        with open(self.file(FAILED_FILE), "w", encoding="utf-8") as handle:
            handle.write(f"{message}\n")

    # === Paths ===

    def file(self, name):
        """The path of the file `name` in the run directory (str)."""
        return os.path.join(self.path, name)

    @property
    def log_dir(self):
        """The TensorBoard log directory, `logs/`."""
        return self.file(LOG_DIR)

    @property
    def backup_dir(self):
        """The training state of an unfinished run, `backup/`."""
        return self.file(BACKUP_DIR)

    @property
    def model_path(self):
        """The path of `model.keras` (str)."""
        return self.file(MODEL_FILE)

    # === config.yaml ===

    def write_config(self, config, tasks=None, features=None):
        """Writes `config.yaml` (see `resolved_config`); returns the dict written.

        When a feature's model input name differs from its column name
        (`bill length (mm)` -> `bill_length_mm`, see
        `kmtl.features.input_name`), the file ends with a comment listing
        `column: input name` for those features.
        """
        resolved = resolved_config(config, tasks, features)
        renamed = {f.name: f.input_name for f in features or []
                   if f.input_name != f.name}

        def write(path):
            with open(path, "w", encoding="utf-8") as handle:
                yaml.safe_dump(resolved, handle, sort_keys=False)
                if renamed:
                    handle.write(_input_names_comment(renamed))

        self._write(CONFIG_FILE, write)
        return resolved

    def read_config(self):
        """The stored config as a `RunConfig` (`parse_stored_config`: values an
        older kmtl accepted and this one refuses fall back to their defaults,
        with a warning).

        Raises:
            DataError: `config.yaml` is missing or not YAML.
            ConfigError: it is no valid config.
        """
        path = self.file(CONFIG_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                raw = yaml.safe_load(handle)
        except FileNotFoundError:
            raise DataError(f"{self.path!r} is not a kmtl run directory: "
                            f"{CONFIG_FILE} is missing.") from None
        except yaml.YAMLError as error:
            raise DataError(f"{path!r} is not valid YAML: {error}. {DAMAGED_FIX}"
                            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"Cannot read {path!r}: {error}. {DAMAGED_FIX}") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path!r} holds no config (a YAML mapping); it "
                            f"holds {type(raw).__name__} {raw!r:.80}. {DAMAGED_FIX}")
        try:
            return parse_stored_config(raw)
        except ConfigError as error:
            raise ConfigError(f"{path!r}: {error} {DAMAGED_FIX}") from None

    # === split.json ===

    def write_split(self, record):
        """Writes `split.json` (a record from `kmtl.runs.data.split_data`)."""
        self._write_json(SPLIT_FILE, record, indent=None)

    def read_split(self):
        """The stored split record, or None for a run directory written before
        splits were stored."""
        path = self.file(SPLIT_FILE)
        if not os.path.isfile(path):
            return None
        return self._read_json(SPLIT_FILE)

    # === model.keras ===

    def save_model(self, model):
        """Saves `model` (a `keras.Model`) as `model.keras`, whole or not at
        all (written to a temporary file, then renamed).

        Raises:
            DataError: the file cannot be written (a full disk, ...), naming
                it; no `model.keras` is left behind.
        """
        self._write(MODEL_FILE, model.save)

    def load_model(self):
        """The trained model.

        Raises:
            DataError: `model.keras` is missing, or is no complete `.keras`
                file (cut short, or overwritten), naming it.
        """
        import keras

        if not os.path.isfile(self.model_path):
            raise DataError(f"{self.path!r} is not a kmtl run directory: "
                            f"{MODEL_FILE} is missing.")
        if not zipfile.is_zipfile(self.model_path):
            raise DataError(f"{self.model_path!r} is damaged: it is no complete "
                            f".keras (zip) file. {DAMAGED_FIX}")
        try:
            return keras.saving.load_model(self.model_path)
        except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"{self.model_path!r} cannot be loaded: {error} "
                            f"{DAMAGED_FIX}") from None

    # === metrics.json ===

    def write_metrics(self, metrics):
        """Writes `metrics.json`: `{split: {task: {metric: value}}}`."""
        self._write_json(METRICS_FILE, metrics)

    def write_stages(self, stages):
        """Writes `stages.json`: one entry per stage of `training.stages`,
        `{tasks, added, frozen, epochs, metrics}` (see
        `kmtl.runs.training.RunResult.stages`)."""
        self._write_json(STAGES_FILE, stages)

    def read_metrics(self):
        """`metrics.json` as written by `write_metrics`: `{split: {task:
        {metric: value}}}`."""
        return self._read_json(METRICS_FILE)

    def _write(self, name, write):
        """Calls `write(temporary path)` and renames the file to `name`: the
        run directory holds the whole file or none (a kill, a full disk).

        Raises:
            DataError: naming the file and the fix, the temporary file removed.
        """
        path = self.file(name)
        try:
            write_atomically(path, write)
        except OSError as error:
            raise DataError(f"Cannot write {path!r}: {error.strerror or error}. "
                            f"Free disk space (or choose another --output-dir) "
                            f"and train again.") from None

    def _write_json(self, name, value, indent=2):
        def write(path):
            with open(path, "w") as handle:
                json.dump(value, handle, indent=indent)

        self._write(name, write)

    def _read_json(self, name):
        path = self.file(name)
        try:
            with open(path) as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise DataError(f"{path!r} is missing. {DAMAGED_FIX}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path!r} is not valid JSON: {error}. {DAMAGED_FIX}"
                            ) from None


def _differences(stored, now, prefix=""):
    """`key.path: stored -> now` for each value that differs between two
    nested mappings."""
    if isinstance(stored, dict) and isinstance(now, dict):
        found = []
        for key in list(stored) + [k for k in now if k not in stored]:
            found += _differences(stored.get(key), now.get(key),
                                  f"{prefix}{key}.")
        return found
    if stored != now:
        return [f"{prefix.rstrip('.')}: {stored!r} -> {now!r}"]
    return []


def _input_names_comment(renamed):
    """`{column: input name}` as a YAML comment block (the stored model holds
    the same names in its features)."""
    listing = yaml.safe_dump(renamed, sort_keys=False, allow_unicode=True)
    lines = ["Model input names of the columns whose names are not valid input",
             "names (kmtl.features.input_name); model.keras stores them with",
             "its features and the SavedModel signature takes them:",
             *("  " + line for line in listing.splitlines())]
    return "".join(f"# {line}\n" for line in lines)
