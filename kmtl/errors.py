"""Exceptions raised at kmtl's edges (config, data, files) and by a training
run that diverged.

`ConfigError` and `DataError` derive from `ValueError`, so code that catches
Keras-style `ValueError`s keeps working; the command line prints their message
without a traceback (exit code 2), and a `TrainingError`'s (exit code 1).
"""


class ConfigError(ValueError):
    """A configuration key or value is missing, unknown or invalid."""


class DataError(ValueError):
    """The data does not fit the configuration: a column, label or file is wrong."""


class TrainingError(RuntimeError):
    """Training gave a model that cannot be used (a loss or metric that is not
    finite); nothing was saved or exported."""
