"""Exceptions raised at kmtl's edges (config, data, files).

Both derive from `ValueError`, so code that catches Keras-style `ValueError`s
keeps working; the command line prints their message without a traceback.
"""


class ConfigError(ValueError):
    """A configuration key or value is missing, unknown or invalid."""


class DataError(ValueError):
    """The data does not fit the configuration: a column, label or file is wrong."""
