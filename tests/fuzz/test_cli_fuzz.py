"""A short end-to-end fuzz of `kmtl train` (issue 14, deliverable 8).

Generated tiny tables (awkward column names, missing and non-finite values,
unicode categories) and configs naming their columns go through the command
line's entry point, `kmtl.cli.main` (what the `kmtl` script calls), for one
epoch. The run ends with exit code 0 (a run directory holding its metrics),
2 (a message naming the problem on stderr), or 1 for a training failure with
a message (`TrainingError`, e.g. a NaN loss); never with a raw exception,
which the script would print as a traceback.
"""

import json
import math
import os

import pytest
import yaml
from fuzz_values import examples
from fuzz_values import run_cases
from fuzz_values import write_case_table
from hypothesis import Phase
from hypothesis import event
from hypothesis import given
from hypothesis import strategies as st

from kmtl.cli import main

# Generated tables often hold categories unseen in training or constant
# columns; kmtl's warnings about them are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# No shrinking (each example trains a model): a failing example is shown as
# drawn.
@examples(6, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(run_cases(min_rows=8, dirty=8), st.sampled_from(["csv", "parquet"]),
       st.sampled_from([None, "uncertainty", "pcgrad"]))
def test_kmtl_train(tmp_path_factory, capsys, case, suffix, weighting):
    frame, config = case
    folder = tmp_path_factory.mktemp("cli")
    table = folder / f"table.{suffix}"
    write_case_table(frame, table)
    config["data"]["train"] = table.name
    config["training"].update(epochs=1, verbose=0, weighting=weighting)
    config["model"] = {"tower_units": [4], "options": {"units": [4]}}
    config["export"] = {"enabled": False}
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    capsys.readouterr()
    code = main(["train", str(path), "--data-dir", str(folder), "--output-dir",
                 str(folder / "runs"), "--no-resume"])
    err = capsys.readouterr().err
    event(f"exit code {code}")
    assert "Traceback" not in err
    runs = sorted((folder / "runs").glob("fuzz-*")) if (
        folder / "runs").is_dir() else []
    if code == 0:
        assert len(runs) == 1 and (runs[0] / "model.keras").is_file()
        metrics = json.loads((runs[0] / "metrics.json").read_text())
        tasks = {task["name"] for task in config["tasks"]}
        for split, by_task in metrics.items():
            assert split in ("validation", "test") and set(by_task) <= tasks
            for task, values in by_task.items():
                # A number, or null for a metric without labelled rows.
                assert all(v is None or math.isfinite(v)
                           for v in values.values()), (split, task, values)
        return
    assert code in (1, 2), code
    assert err.startswith("kmtl train: error: ") and len(err) > 40, err
    if code == 2:
        # Nothing is written before the checks pass.
        assert not runs or not any(
            os.path.exists(r / "model.keras") for r in runs), runs
