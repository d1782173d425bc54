"""kmtl: multi-task learning for Keras 3 / TensorFlow."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up logging, unless the user set a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kmtl import architectures  # noqa: E402
from kmtl import callbacks  # noqa: E402
from kmtl import data  # noqa: E402
from kmtl import datasets  # noqa: E402
from kmtl import layers  # noqa: E402
from kmtl import measures  # noqa: E402
from kmtl import plotting  # noqa: E402
from kmtl import runs  # noqa: E402
from kmtl import weighting  # noqa: E402
from kmtl.errors import ConfigError  # noqa: E402
from kmtl.errors import DataError  # noqa: E402
from kmtl.features import Feature  # noqa: E402
from kmtl.models import MultiTaskModel  # noqa: E402
from kmtl.models import build_model  # noqa: E402
from kmtl.models.export import export_saved_model  # noqa: E402
from kmtl.runs.consolidation import consolidate  # noqa: E402
from kmtl.runs.tuning import tune  # noqa: E402
from kmtl.tasks import Task  # noqa: E402

__version__ = "0.8.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Feature",
    "MultiTaskModel",
    "Task",
    "architectures",
    "callbacks",
    "build_model",
    "consolidate",
    "data",
    "datasets",
    "export_saved_model",
    "layers",
    "measures",
    "plotting",
    "runs",
    "tune",
    "weighting",
]
