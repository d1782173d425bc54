"""Models: the `MultiTaskModel` class and the `build_model` builder."""

from kmtl.models.builder import build_model
from kmtl.models.multitask_model import MultiTaskModel
from kmtl.models.progressive import add_tasks
from kmtl.models.progressive import freeze_layers
from kmtl.models.progressive import unfreeze_layers

__all__ = ["MultiTaskModel", "add_tasks", "build_model", "freeze_layers",
           "unfreeze_layers"]
