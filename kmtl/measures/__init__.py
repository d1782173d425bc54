"""Measures: pure functions that score a trained model or its results.

- `delta_m`, `relative_changes`, `negative_transfer`, `summarize_runs`: results
  against single-task baselines (the Δm score, Maninis et al., CVPR 2019);
- `gradient_cosines`, `lookahead_affinity`: how tasks interfere
  (Fifty et al., NeurIPS 2021);
- `sharing`, `plot_sharing`: what an architecture shares between its tasks.

They read a model and data and write nothing; callbacks (`kmtl.callbacks`) and
runs (`kmtl.runs`) call them.
"""

from kmtl.measures.delta_m import delta_m
from kmtl.measures.delta_m import metric_direction
from kmtl.measures.delta_m import negative_transfer
from kmtl.measures.delta_m import relative_changes
from kmtl.measures.delta_m import summarize_runs
from kmtl.measures.diagnostics import plot_sharing
from kmtl.measures.diagnostics import sharing
from kmtl.measures.interference import cosine_matrix
from kmtl.measures.interference import gradient_cosines
from kmtl.measures.interference import lookahead_affinity

__all__ = [
    "cosine_matrix",
    "delta_m",
    "gradient_cosines",
    "lookahead_affinity",
    "metric_direction",
    "negative_transfer",
    "plot_sharing",
    "relative_changes",
    "sharing",
    "summarize_runs",
]
