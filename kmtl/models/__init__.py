"""Models: the `MultiTaskModel` class and the `build_model` builder."""

from kmtl.models.builder import build_model
from kmtl.models.multitask_model import MultiTaskModel

__all__ = ["MultiTaskModel", "build_model"]
