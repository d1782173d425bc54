"""Keras callbacks for multi-task training, one per file."""

from kmtl.callbacks.backup import RunBackup
from kmtl.callbacks.curriculum import SelfPacedLearning
from kmtl.callbacks.curriculum import TaskCurriculum
from kmtl.callbacks.delta_m import DeltaM
from kmtl.callbacks.gradient_statistics import GradientStatistics
from kmtl.callbacks.sharing_diagnostics import SharingDiagnostics
from kmtl.callbacks.task_frequencies import TaskFrequencies
from kmtl.callbacks.task_interference import TaskInterference
from kmtl.callbacks.tensorboard import TensorBoard

__all__ = [
    "DeltaM",
    "GradientStatistics",
    "RunBackup",
    "SelfPacedLearning",
    "SharingDiagnostics",
    "TaskCurriculum",
    "TaskFrequencies",
    "TaskInterference",
    "TensorBoard",
]
