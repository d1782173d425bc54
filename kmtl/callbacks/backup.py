"""`RunBackup`: Keras's `BackupAndRestore` made safe against a kill at any
moment, and carrying the whole training state a resumed run needs to end
where an uninterrupted one would."""

import json
import math
import os

import keras
import numpy as np

from kmtl._files import write_atomically

STATE_FILE = "state.json"
"""The backup's index: the epoch reached and the files holding the state."""


def _save_arrays(path, arrays):
    with open(path, "wb") as handle:
        np.savez(handle, *arrays)


def _load_arrays(path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def _seed_states(model):
    """The model's variables that `Model.save_weights` leaves out: the states
    of the random seed generators (dropout, RLW, PCGrad's orders, ...)."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


class RunBackup(keras.callbacks.BackupAndRestore):
    """Backs up the training state at the end of every epoch and restores it
    when `fit` starts again, so that a run killed at any moment (SIGKILL,
    preemption, a full machine) resumes from its last finished epoch and ends
    with the weights an uninterrupted run would have.

    On top of `keras.callbacks.BackupAndRestore` (model weights, optimizer
    slots and every variable of the weighting method, through
    `Model.save_weights`; the epoch reached), it keeps:

    - the states of the random seed generators (dropout, RLW's draws,
      PCGrad's orders), which `save_weights` leaves out;
    - each file written whole or not at all (a temporary file renamed into
      place; `state.json` names the weights file of its epoch, written
      last), so a kill during a backup leaves the previous one usable;
    - the `keras.callbacks.EarlyStopping` state (the best value and epoch,
      the epochs waited, the best epoch's weights, whether it stopped);
    - the history of the epochs already run (`history`);
    - no backup of an epoch whose logs are not finite (a diverging run is
      not resumed into the same divergence).

    The training data must give epoch `k`'s batches whatever the epoch `fit`
    starts from: see `kmtl.runs.training.run_model`, which advances a
    shuffled dataset's epochs before resuming.

    Args:
        backup_dir: str. The folder of the backup (created when first
            written); nothing else may write there.
        early_stopping: the run's `keras.callbacks.EarlyStopping`, or None.
            It must come before this callback in `fit`'s callback list.
        delete_checkpoint: bool, default False. Remove the folder at the end
            of `fit` (Keras's default is True; kmtl removes it only once the
            run's files are written).

    Attributes:
        restored_epoch: int, the epoch `fit` resumed from (0: a fresh start).
    """

    def __init__(self, backup_dir, early_stopping=None, delete_checkpoint=False):
        super().__init__(backup_dir, save_freq="epoch",
                         delete_checkpoint=delete_checkpoint)
        self.early_stopping = early_stopping
        self.restored_epoch = 0
        self._history = {}
        self._stopped = False

    # === State on disk ===

    @property
    def state_path(self):
        """The path of `state.json` (str)."""
        return os.path.join(self.backup_dir, STATE_FILE)

    def read_state(self):
        """The backup's `state.json` as a dict, or None when there is no
        backup yet."""
        if not os.path.isfile(self.state_path):
            return None
        with open(self.state_path, encoding="utf-8") as handle:
            return json.load(handle)

    def _save_model(self):
        logs = {key: values[-1] for key, values in self._history.items() if values}
        if not all(math.isfinite(v) for v in logs.values()):
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        epoch = self._current_epoch
        weights = f"epoch-{epoch}.weights.h5"
        write_atomically(os.path.join(self.backup_dir, weights),
                            lambda path: self.model.save_weights(path))
        seeds = f"epoch-{epoch}.seeds.npz"
        states = _seed_states(self.model)
        write_atomically(os.path.join(self.backup_dir, seeds),
                            lambda path: _save_arrays(path, [
                                keras.ops.convert_to_numpy(v) for v in states]))
        state = {"epoch": epoch, "weights": weights, "seeds": seeds,
                 "seed_paths": [v.path for v in states], "stopped": self._stopped,
                 "history": self._history, "early_stopping": None}
        stopping = self.early_stopping
        if stopping is not None:
            best = None
            if stopping.best_weights is not None:
                best = f"best-epoch-{stopping.best_epoch}.npz"
                path = os.path.join(self.backup_dir, best)
                if not os.path.isfile(path):
                    write_atomically(path, lambda tmp: _save_arrays(
                        tmp, stopping.best_weights))
            state["early_stopping"] = {
                "wait": stopping.wait, "best": stopping.best,
                "best_epoch": stopping.best_epoch,
                "stopped_epoch": stopping.stopped_epoch, "best_weights": best}

        def write_state(path):
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(state, handle)

        write_atomically(self.state_path, write_state)
        best = (state["early_stopping"] or {}).get("best_weights")
        keep = {STATE_FILE, weights, seeds, best}
        # Earlier epochs' files, and what a kill during a write left.
        for name in os.listdir(self.backup_dir):
            if name not in keep:
                os.remove(os.path.join(self.backup_dir, name))

    def _load_model(self):
        state = self.read_state()
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        states = _seed_states(self.model)
        if len(states) != len(state["seed_paths"]):
            # (Their names carry a process-wide counter: only the number of
            # seed generators says whether the backup fits the model.)
            raise ValueError(
                f"The backup in {self.backup_dir!r} is of another model: it "
                f"holds {len(state['seed_paths'])} random seed states, the "
                f"model has {len(states)}.")
        for variable, value in zip(states, _load_arrays(
                os.path.join(self.backup_dir, state["seeds"]))):
            variable.assign(value)
        self.restored_epoch = state["epoch"]
        self._history = {k: list(v) for k, v in state["history"].items()}
        self._current_epoch = state["epoch"]
        stopping, saved = self.early_stopping, state["early_stopping"]
        if stopping is not None and saved is not None:
            stopping.wait = saved["wait"]
            stopping.best = saved["best"]
            stopping.best_epoch = saved["best_epoch"]
            stopping.stopped_epoch = saved["stopped_epoch"]
            if saved["best_weights"]:
                stopping.best_weights = _load_arrays(
                    os.path.join(self.backup_dir, saved["best_weights"]))
        # An epoch count past the last one makes `fit` run no further epoch.
        self.model._initial_epoch = (10**9 if state["stopped"] else state["epoch"])

    @property
    def history(self):
        """`{log name: [value per epoch]}` of every epoch of the run, those
        before the resume included."""
        return {key: list(values) for key, values in self._history.items()}

    # === Callback hooks ===

    def on_train_begin(self, logs=None):
        self._load_model()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        self._stopped = bool(self.model.stop_training)
        super().on_epoch_end(epoch, logs)
