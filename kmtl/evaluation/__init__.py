"""Does multi-task help? Single-task baselines, the Δm score, task interference
and reports.

`compare` trains single-task baselines and multi-task variants over seeds and
writes a report; `delta_m`, `relative_changes` and `negative_transfer` score
results against baselines; `gradient_cosines` and `lookahead_affinity` measure how
tasks interfere.
"""

from kmtl.evaluation.compare import compare
from kmtl.evaluation.delta_m import delta_m
from kmtl.evaluation.delta_m import metric_direction
from kmtl.evaluation.delta_m import negative_transfer
from kmtl.evaluation.delta_m import relative_changes
from kmtl.evaluation.delta_m import summarize_runs
from kmtl.evaluation.interference import gradient_cosines
from kmtl.evaluation.interference import lookahead_affinity
from kmtl.evaluation.report import write_report

__all__ = [
    "compare",
    "delta_m",
    "gradient_cosines",
    "lookahead_affinity",
    "metric_direction",
    "negative_transfer",
    "relative_changes",
    "summarize_runs",
    "write_report",
]
