"""Runs: what a whole job does from a config. The typed run config (`config`),
preparing the data (`data`), the run directory (`run_dir`), training and
exporting (`train`), comparing multi-task variants with single-task baselines
(`compare`, `report`), consolidating a table's labels with cross-fitted
models (`consolidation`, `consolidation_report`), and searching
hyperparameters with KerasTuner (`tuning`, `tuning_report`).

This is the layer the command line (`kmtl.cli`) calls; everything below it
(models, measures, callbacks) can be used without a config.
"""

from kmtl.runs.comparison import compare
from kmtl.runs.config import RunConfig
from kmtl.runs.config import load_config
from kmtl.runs.config import parse_config
from kmtl.runs.config import read_config
from kmtl.runs.consolidation import consolidate
from kmtl.runs.report import write_report
from kmtl.runs.run_dir import RunDir
from kmtl.runs.training import train
from kmtl.runs.tuning import tune

__all__ = ["RunConfig", "RunDir", "compare", "consolidate", "load_config",
           "parse_config", "read_config", "train", "tune", "write_report"]
