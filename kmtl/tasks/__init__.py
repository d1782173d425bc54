"""Tasks: what a multi-task model predicts, how its labels are encoded and scored.

Task types are registered classes, one file each: `BinaryTask` ("binary"),
`MulticlassTask` ("multiclass"), `MultilabelTask` ("multilabel"),
`RegressionTask` ("regression"). `Task(name, type, ...)` returns an instance of
the type's class; `get` reads a run config's task dict; `register` adds a type.
`ColumnMetric` is the metric of one label or target column (`auc_<label>`,
`mae_<target>`). `kmtl.tasks.losses` holds the losses of class weights
(`ClassWeightedLoss`) and of a multiclass focal loss
(`SparseCategoricalFocalCrossentropy`).
"""

from kmtl.tasks.base import CONSOLIDATION_COLUMNS
from kmtl.tasks.base import FOLD_COLUMN
from kmtl.tasks.base import LOSS_REDUCTION
from kmtl.tasks.base import PER_COLUMN_DEFAULT_LIMIT
from kmtl.tasks.base import TASK_TYPES
from kmtl.tasks.base import Task
from kmtl.tasks.base import consolidation_columns
from kmtl.tasks.base import deserialize
from kmtl.tasks.base import get
from kmtl.tasks.base import list_task_types
from kmtl.tasks.base import register
from kmtl.tasks.base import serialize
from kmtl.tasks.binary import BinaryTask
from kmtl.tasks.derived import derivation_order
from kmtl.tasks.losses import ClassWeightedLoss
from kmtl.tasks.losses import SparseCategoricalFocalCrossentropy
from kmtl.tasks.metrics import ColumnMetric
from kmtl.tasks.multiclass import MulticlassTask
from kmtl.tasks.multilabel import MultilabelTask
from kmtl.tasks.regression import RegressionTask

__all__ = [
    "CONSOLIDATION_COLUMNS",
    "FOLD_COLUMN",
    "LOSS_REDUCTION",
    "PER_COLUMN_DEFAULT_LIMIT",
    "TASK_TYPES",
    "BinaryTask",
    "ClassWeightedLoss",
    "ColumnMetric",
    "MulticlassTask",
    "MultilabelTask",
    "RegressionTask",
    "SparseCategoricalFocalCrossentropy",
    "Task",
    "consolidation_columns",
    "derivation_order",
    "deserialize",
    "get",
    "list_task_types",
    "register",
    "serialize",
]
