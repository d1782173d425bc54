"""kmtl.runs.distribution: the strategies of `training.strategy`, and training
with several processes on 127.0.0.1.

The cluster cases start fresh processes (`distributed_worker.py`) with their
own TF_CONFIG, on free loopback ports, each with a timeout, and compare what
they trained with one process on the same data (penguins, 96 rows, shuffled
global batches of 48, two epochs of SGD, plus 32 validation rows):

- MultiWorkerMirroredStrategy, two workers of one CPU replica each: with EW
  the update is the global batch mean, so it equals the one-device run; MGDA
  combines each replica's own task gradients (kmtl.models.steps), so it
  equals the one-process MirroredStrategy run over two logical CPUs, whose
  replicas see the same halves of each batch, and not the one-device run.
- ParameterServerStrategy, one chief, one worker, one ps: with one worker the
  asynchronous steps run in order, so EW, MGDA and DWA (with its epoch
  callback, and early stopping restoring the best epoch) equal the
  one-device run, and so does a run resumed from its backup after epoch 1.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kmtl.errors import ConfigError
from kmtl.runs import distribution

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 120


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(cluster=None, task_type=None, index=0):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    if cluster is not None:
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": task_type, "index": index}})
    return env


def _start(mode, env):
    return subprocess.Popen([sys.executable, str(WORKER), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(process):
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"a training process hung for {TIMEOUT} s:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _cluster(jobs):
    return {job: [f"127.0.0.1:{_free_port()}" for _ in range(count)]
            for job, count in jobs.items()}


@pytest.fixture(scope="module")
def reference():
    return _result(_start("reference", _env()))


@pytest.fixture(scope="module")
def multi_worker():
    cluster = _cluster({"worker": 2})
    processes = [_start("multi_worker", _env(cluster, "worker", i)) for i in (0, 1)]
    try:
        return [_result(p) for p in processes]
    finally:
        for p in processes:
            p.kill()


@pytest.fixture(scope="module")
def parameter_server():
    cluster = _cluster({"chief": 1, "worker": 1, "ps": 1})
    servers = [_start("parameter_server", _env(cluster, job, 0))
               for job in ("ps", "worker")]
    try:
        return _result(_start("parameter_server", _env(cluster, "chief", 0)))
    finally:
        for server in servers:
            server.kill()
            server.communicate()


def _assert_same_run(run, expected, rtol, restored=False):
    assert len(run["weights"]) == len(expected["weights"])
    for got, want in zip(run["weights"], expected["weights"]):
        assert got == pytest.approx(want, rel=rtol, abs=1e-6)
    for key in ("loss", "val_loss", "sex_loss", "species_loss"):
        assert run["history"][key] == pytest.approx(expected["history"][key],
                                                    rel=rtol)
    assert run["evaluate"] == pytest.approx(expected["evaluate"], rel=rtol)
    # evaluate() after training: the validation loss of the weights kept
    # (the best epoch's with early stopping, else the last one's).
    val_loss = run["history"]["val_loss"]
    kept = min(val_loss) if restored else val_loss[-1]
    assert run["evaluate"]["loss"] == pytest.approx(kept, rel=1e-6)


def test_mirrored_mgda_differs_from_one_device(reference):
    # What the multi-worker MGDA case relies on: two replicas aggregate their
    # own task gradients, which is not the one-device update, while EW is.
    single, mirrored = reference["single"], reference["mirrored"]
    assert mirrored["ew"]["replicas"] == 2
    _assert_same_run(mirrored["ew"], single["ew"], rtol=1e-5)
    differences = [abs(a - b) for x, y in zip(mirrored["mgda"]["weights"],
                                              single["mgda"]["weights"])
                   for a, b in zip(x, y)]
    assert max(differences) > 1e-4


@pytest.mark.parametrize("weighting,against", [("ew", "single"),
                                               ("mgda", "mirrored")])
def test_multi_worker_two_processes(reference, multi_worker, weighting, against):
    chief, other = multi_worker
    assert (chief["task"], other["task"]) == (["worker", 0], ["worker", 1])
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief[weighting]["replicas"] == 2
    # Synchronous: both workers hold the same weights and logs.
    _assert_same_run(other[weighting], chief[weighting], rtol=1e-6)
    _assert_same_run(chief[weighting], reference[against][weighting], rtol=1e-5)


@pytest.mark.parametrize("weighting", ["ew", "mgda", "dwa"])
def test_parameter_server_one_worker_equals_one_device(reference, parameter_server,
                                                       weighting):
    assert parameter_server["task"] == ["chief", 0]
    assert parameter_server["chief"] is True
    run = parameter_server[weighting]
    _assert_same_run(run, reference["single"][weighting], rtol=1e-5,
                     restored=weighting == "dwa")
    if weighting == "dwa":
        # Early stopping restored epoch 1's weights: the case is exercised.
        first, second = run["history"]["val_loss"]
        assert first < second


def test_parameter_server_resumes_from_a_run_backup(reference, parameter_server):
    # One epoch, then a fresh model resumed from the RunBackup of it: the
    # weights and logs of the uninterrupted run.
    _assert_same_run(parameter_server["ew_resumed"], reference["single"]["ew"],
                     rtol=1e-5)


# === make_strategy and TF_CONFIG ===

def test_unknown_strategy_names_the_key_and_choices():
    with pytest.raises(ConfigError, match=r"training\.strategy must be one of "
                       r"\['default', 'mirrored', 'multi_worker', "
                       r"'parameter_server'\]\. "
                       r"Received: training\.strategy='horovod'"):
        distribution.make_strategy("horovod")


def test_default_strategy_is_the_one_in_scope():
    import tensorflow as tf

    assert distribution.make_strategy() is tf.distribute.get_strategy()
    assert distribution.is_chief(distribution.make_strategy())
    assert distribution.cluster_task(distribution.make_strategy()) == (None, 0)


@pytest.mark.parametrize("name", ["multi_worker", "parameter_server"])
def test_missing_tf_config(monkeypatch, name):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=rf"training.strategy '{name}' reads its "
                       r"cluster from the TF_CONFIG environment variable, and "
                       r"TF_CONFIG is not set\. Set TF_CONFIG in every process"):
        distribution.make_strategy(name)


WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
PS = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:3"]}


@pytest.mark.parametrize("strategy,config,problem", [
    ("multi_worker", "{cluster: 1}", "TF_CONFIG is not valid JSON"),
    ("multi_worker", '["a"]', "TF_CONFIG has no 'cluster' object"),
    ("multi_worker", {"cluster": {**WORKERS, "ps": ["127.0.0.1:3"]},
                      "task": {"type": "worker", "index": 0}},
     r"it needs \['worker'\] and may have only \['chief', 'worker'\]"),
    ("parameter_server", {"cluster": WORKERS, "task": {"type": "worker"}},
     r"it needs \['chief', 'ps', 'worker'\]"),
    ("multi_worker", {"cluster": {"worker": "127.0.0.1:1"},
                      "task": {"type": "worker", "index": 0}},
     "cluster job 'worker' must be a non-empty list of 'host:port' strings"),
    ("multi_worker", {"cluster": WORKERS}, "its 'task' must name a job"),
    ("multi_worker", {"cluster": WORKERS, "task": {"type": "ps", "index": 0}},
     "its 'task' must name a job"),
    ("multi_worker", {"cluster": WORKERS, "task": {"type": "worker", "index": 2}},
     "its task index 2 is not one of the 2 'worker' addresses"),
    ("parameter_server", {"cluster": {**PS, "chief": PS["chief"] * 2},
                          "task": {"type": "chief", "index": 0}},
     "more than one chief"),
])
def test_invalid_tf_config(strategy, config, problem):
    text = config if isinstance(config, str) else json.dumps(config)
    with pytest.raises(ConfigError, match=problem) as error:
        distribution.read_tf_config(strategy, {"TF_CONFIG": text})
    assert "TF_CONFIG='{\"cluster\"" in str(error.value)  # the example fix


def test_valid_tf_config_and_server_roles():
    config = {"cluster": PS, "task": {"type": "ps", "index": 0}}
    environ = {"TF_CONFIG": json.dumps(config)}
    assert distribution.read_tf_config("parameter_server", environ) == (
        PS, {"type": "ps", "index": 0})
    assert distribution.needs_server("parameter_server", environ)
    config["task"]["type"] = "chief"
    environ = {"TF_CONFIG": json.dumps(config)}
    assert not distribution.needs_server("parameter_server", environ)
    assert not distribution.needs_server("multi_worker", environ)


def test_parameter_server_strategy_only_on_the_chief(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": PS, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="task is 'worker', and only the chief "
                       r"trains\. Start the worker and ps processes with "
                       r"run_server\(\)"):
        distribution.make_strategy("parameter_server")


# === kmtl train --strategy, end to end ===

def _kmtl_train(config_path, output, strategy, env):
    command = [sys.executable, "-m", "kmtl.cli", "train", str(config_path),
               "--output-dir", str(output / "runs"),
               "--export-dir", str(output / "exported"), "--strategy", strategy]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finished(process):
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"kmtl train hung for {TIMEOUT} s:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    return out


def _metrics(output):
    (run,) = (output / "runs").iterdir()
    assert not (run / "INCOMPLETE").exists()
    assert [p.name for p in (output / "exported").iterdir()] == ["1"]
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def train_config(tmp_path_factory):
    import yaml

    folder = tmp_path_factory.mktemp("strategy")
    with open(Path(__file__).parents[2] / "examples" / "penguins.yaml") as handle:
        config = yaml.safe_load(handle)
    config["training"].update({"epochs": 3, "batch_size": 48, "verbose": 0})
    path = folder / "penguins.yaml"
    path.write_text(yaml.safe_dump(config))
    reference = folder / "default"
    _finished(_kmtl_train(path, reference, "default", _env()))
    return path, _metrics(reference)


def _assert_close(metrics, expected, rel, abs_=0.0):
    for split, tasks in expected.items():
        for task, values in tasks.items():
            assert metrics[split][task] == pytest.approx(values, rel=rel, abs=abs_), (
                split, task)


def test_kmtl_train_multi_worker(train_config, tmp_path):
    # Two `kmtl train --strategy multi_worker` processes: worker 0 writes the
    # run directory and the export; worker 1 writes only to a temporary folder
    # it removes. The metrics are those of one process, up to the replicas'
    # mean of per-replica masked means (sex is missing on some rows), which
    # may move a test row across the threshold (1 of 50 rows: 0.02).
    path, expected = train_config
    cluster = _cluster({"worker": 2})
    outputs = [tmp_path / f"worker{i}" for i in (0, 1)]
    processes = [_kmtl_train(path, outputs[i], "multi_worker",
                             _env(cluster, "worker", i)) for i in (0, 1)]
    try:
        for process in processes:
            _finished(process)
    finally:
        for process in processes:
            process.kill()
    _assert_close(_metrics(outputs[0]), expected, rel=1e-2, abs_=0.03)
    assert not outputs[1].exists()


def test_kmtl_train_parameter_server(train_config, tmp_path):
    # The ps and the worker run the same command and serve; the chief trains:
    # with one worker, the metrics of one process.
    path, expected = train_config
    cluster = _cluster({"chief": 1, "worker": 1, "ps": 1})
    servers = [_kmtl_train(path, tmp_path / job, "parameter_server",
                           _env(cluster, job, 0)) for job in ("ps", "worker")]
    try:
        out = _finished(_kmtl_train(path, tmp_path / "chief", "parameter_server",
                                    _env(cluster, "chief", 0)))
    finally:
        for server in servers:
            server.kill()
            server.communicate()
    assert "Run directory:" in out
    _assert_close(_metrics(tmp_path / "chief"), expected, rel=1e-5)
    assert not (tmp_path / "ps").exists() and not (tmp_path / "worker").exists()
