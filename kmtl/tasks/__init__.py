"""Tasks: what a multi-task model predicts, how its labels are encoded and scored."""

from kmtl.tasks.base import DEFAULT_LOSSES
from kmtl.tasks.base import DEFAULT_METRICS
from kmtl.tasks.base import LOSS_REDUCTION
from kmtl.tasks.base import TASK_TYPES
from kmtl.tasks.base import Task
from kmtl.tasks.base import derivation_order
from kmtl.tasks.base import get

__all__ = ["DEFAULT_LOSSES", "DEFAULT_METRICS", "LOSS_REDUCTION", "TASK_TYPES",
           "Task", "derivation_order", "get"]
