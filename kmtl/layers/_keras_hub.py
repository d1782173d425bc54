"""KerasHub, imported when a layer that needs it is built (so `import kmtl`
does not pay for it)."""


def keras_hub():
    """The `keras_hub` module.

    Raises:
        ImportError: KerasHub is not installed (it is a kmtl dependency).
    """
    try:
        import keras_hub as hub
    except ImportError as error:  # pragma: no cover - keras-hub is a dependency
        raise ImportError("kmtl's text layers need KerasHub: pip install keras-hub"
                          ) from error
    return hub
