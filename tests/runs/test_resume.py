"""Resuming an interrupted run: the backup after each epoch, `--resume`, the
automatic resume of an unfinished run, and a run killed with SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import yaml
from helpers import penguins_config as penguins_example

from kmtl import weighting
from kmtl.callbacks import RunBackup
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.runs.config import as_run_config
from kmtl.runs.run_dir import FAILED_FILE
from kmtl.runs.run_dir import INCOMPLETE_FILE
from kmtl.runs.run_dir import RunDir
from kmtl.runs.training import build_run_model
from kmtl.runs.training import prepare_run
from kmtl.runs.training import run_model
from kmtl.runs.training import train


def penguins_config(**training):
    # Tower dropout: a seed generator to resume.
    return penguins_example(training.pop("epochs", 4),
                            training.pop("early_stopping_patience", 2),
                            dropout=0.2, **training)


@pytest.fixture(scope="module")
def prepared():
    return prepare_run(penguins_config())


class Interrupt(keras.callbacks.Callback):
    """Stops `fit` at the start of an epoch, as a kill would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class Snapshot(keras.callbacks.Callback):
    """Copies the backup folder as it is after `epochs` epochs: what a run
    killed then leaves. (It runs before `RunBackup` in `fit`'s callbacks, so
    at the start of the next epoch.)"""

    def __init__(self, epochs, source, target):
        super().__init__()
        self.epochs, self.source, self.target = epochs, source, target

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epochs:
            shutil.copytree(self.source, self.target)


def _keeps_state(name):
    method = weighting.get(name)
    method.build_tasks(["a", "b"])
    if method.gradient_based:
        method.build_gradients(1)
    return bool(method.variables)


# Every method that keeps state (variables a resume must restore), and two that
# keep none (a loss weighting and a gradient method); the other stateless
# methods resume as those do.
RESUMED = [m for m in weighting.list_weightings()
           if m in ("static", "mgda") or _keeps_state(m)]


@pytest.mark.parametrize("method", RESUMED)
def test_resumed_fit_equals_uninterrupted_fit(prepared, method, tmp_path):
    # Resumed after 2 of 4 epochs, every method's state (uncertainty's log
    # variances, DWA's loss history, GradNorm's weights, Nash-MTL's alphas,
    # RLW's and PCGrad's seeds), the optimizer slots, dropout's seeds, early
    # stopping and the epoch orders come back: the weights are bit-identical.
    config, data = prepared
    config = config.replace({"training.weighting": method})
    whole = run_model(config, data, model=build_run_model(config, data),
                      backup_dir=str(tmp_path / "whole"),
                      callbacks=[Snapshot(2, tmp_path / "whole", tmp_path / "cut")])
    assert RunBackup(str(tmp_path / "cut")).read_state()["epoch"] == 2
    resumed = run_model(config, data, model=build_run_model(config, data),
                        backup_dir=str(tmp_path / "cut"))
    assert resumed.history == whole.history
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.metrics == whole.metrics


def test_early_stopping_that_stopped_is_not_run_again(prepared, tmp_path):
    # Patience 0 on a tiny learning rate: early stopping ends the run before
    # `epochs`; resuming from the final backup runs no epoch and restores the
    # best epoch's weights, as the finished run did.
    config, data = prepared
    config = config.replace({"training.early_stopping_patience": 0,
                             "training.epochs": 30})
    backup = str(tmp_path / "backup")
    whole = run_model(config, data, model=build_run_model(config, data),
                      backup_dir=backup)
    state = RunBackup(backup).read_state()
    assert state["stopped"] and state["epoch"] == len(whole.history["loss"]) < 30
    again = run_model(config, data, model=build_run_model(config, data),
                      backup_dir=backup)
    assert again.history == whole.history
    for a, b in zip(whole.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_epoch_is_not_backed_up(prepared, tmp_path):
    config, data = prepared
    backup = RunBackup(str(tmp_path))
    backup.set_model(build_run_model(config, data))
    backup.on_epoch_end(0, {"loss": float("nan")})
    assert backup.read_state() is None


def test_a_kill_while_writing_leaves_the_last_backup(prepared, tmp_path):
    # The state file is written last, by a rename: a backup cut short leaves
    # a temporary file, which the next backup removes, and the previous state.
    config, data = prepared
    backup = RunBackup(str(tmp_path))
    backup.set_model(build_run_model(config, data))
    backup.on_epoch_end(0, {"loss": 1.0})
    (tmp_path / ".tmp-1-epoch-2.weights.h5").write_bytes(b"half a file")
    assert backup.read_state()["epoch"] == 1
    backup.on_epoch_end(1, {"loss": 0.5})
    names = sorted(os.listdir(tmp_path))
    assert names == ["epoch-2.seeds.npz", "epoch-2.weights.h5", "state.json"]


# === kmtl train: run directories ===

def killed_run(tmp_path, epochs):
    """A run directory as a kill after `epochs` epochs leaves it (the backup
    of a run interrupted at the start of epoch `epochs`)."""
    config, data = prepare_run(as_run_config(penguins_config()))
    run = RunDir.create(tmp_path / "runs", config.name)
    run.write_config(config, data.tasks, data.features)
    run.write_split(data.split)
    with pytest.raises(KeyboardInterrupt):
        run_model(config, data, model=build_run_model(config, data),
                  backup_dir=run.backup_dir, callbacks=[Interrupt(epochs)])
    # Written by another process that is no longer running.
    (tmp_path / "runs" / os.path.basename(run.path) / INCOMPLETE_FILE).write_text(
        "kmtl train has not finished this run.\npid: 999999999\n")
    return config, run


def test_train_resumes_the_newest_unfinished_run(tmp_path):
    config, killed = killed_run(tmp_path, 2)
    lines = []
    result = train(config, output_dir=tmp_path / "runs", log=lines.append)
    assert result["run_dir"] == killed.path
    assert any(line.startswith(f"Resuming {killed.path} after epoch 2 of 4")
               for line in lines)
    assert not killed.incomplete and not os.path.exists(killed.backup_dir)
    fresh = train(config, output_dir=tmp_path / "fresh", resume=None, log=print)
    assert result["metrics"] == fresh["metrics"]
    assert result["history"] == fresh["history"]
    assert os.listdir(tmp_path / "runs") == [os.path.basename(killed.path)]


def test_train_does_not_resume_another_config(tmp_path):
    config, killed = killed_run(tmp_path, 2)
    other = config.replace({"training.learning_rate": 0.001})
    result = train(other, output_dir=tmp_path / "runs", log=print)
    assert result["run_dir"] != killed.path and killed.incomplete
    with pytest.raises(ConfigError, match=r"training\.learning_rate: 0\.005 -> 0\.001"):
        train(other, output_dir=tmp_path / "runs", resume=killed.path)


def test_resume_refuses_runs_that_cannot_go_on(tmp_path):
    config, killed = killed_run(tmp_path, 1)
    with open(killed.file(INCOMPLETE_FILE), "w") as handle:
        handle.write(f"pid: {os.getpid() + 0}\n")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="no such directory"):
        train(config, resume=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="config.yaml is missing"):
        train(config, resume=str(tmp_path / "other"))
    with open(killed.file(FAILED_FILE), "w") as handle:
        handle.write("Training diverged in epoch 1.\n")
    with pytest.raises(DataError, match="the run failed.*diverged in epoch 1"):
        train(config, resume=killed.path)
    os.remove(killed.file(FAILED_FILE))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(killed.file(INCOMPLETE_FILE), "w") as handle:
            handle.write(f"pid: {sleeper.pid}\n")
        with pytest.raises(DataError, match=f"process {sleeper.pid} is training"):
            train(config, resume=killed.path)
    finally:
        sleeper.kill()
        sleeper.wait()
    finished = train(config, output_dir=tmp_path / "done", log=print)
    with pytest.raises(DataError, match="the run finished"):
        train(config, resume=finished["run_dir"])


def test_sigkill_mid_training_then_rerun_ends_like_an_uninterrupted_run(tmp_path):
    # `kmtl train` in its own process, killed with SIGKILL once epoch 3 is
    # backed up (while it trains epoch 4 or later); the same command again
    # resumes that run and ends with the metrics of an uninterrupted run.
    config = penguins_config(epochs=8, batch_size=4, early_stopping_patience=50)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "kmtl.cli", "train", str(path)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    runs = tmp_path / "runs"
    process = subprocess.Popen(command + ["--output-dir", str(runs)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    state = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(runs.glob("*/backup/state.json"))
        if found:
            try:
                state = json.loads(found[0].read_text())
            except (OSError, json.JSONDecodeError):
                state = None
            if state and state["epoch"] >= 3:
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    (killed,) = runs.iterdir()
    assert (killed / INCOMPLETE_FILE).exists() and not (killed / "model.keras").exists()
    after = json.loads((killed / "backup" / "state.json").read_text())["epoch"]
    assert 3 <= after < 8

    resumed = subprocess.run(command + ["--output-dir", str(runs)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming {killed} after epoch {after} of 8" in resumed.stdout
    fresh = subprocess.run(command + ["--output-dir", str(tmp_path / "fresh")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    (uninterrupted,) = (tmp_path / "fresh").iterdir()
    assert [p.name for p in runs.iterdir()] == [killed.name]
    assert not (killed / INCOMPLETE_FILE).exists()
    ours = json.loads((killed / "metrics.json").read_text())
    theirs = json.loads((uninterrupted / "metrics.json").read_text())
    assert ours.keys() == theirs.keys()
    for split in ours:
        for task in ours[split]:
            for name, value in ours[split][task].items():
                assert value == pytest.approx(theirs[split][task][name],
                                              rel=1e-6, abs=1e-7), (split, task, name)
