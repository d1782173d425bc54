"""The built-in data sets, registered by name (`data.dataset` in a config)."""

from kmtl.registry import Registry


class Dataset:
    """Base class of the built-in data sets.

    A data set either is one table that the config's `data.split` cuts
    (`has_splits = False`), or follows its own published protocol and comes as
    `(train, validation, test)` (`has_splits = True`, Census-Income).
    """

    has_splits = False

    def load(self, data_dir=None):
        """The data: one DataFrame, or `(train, validation, test)` DataFrames when
        `has_splits`.

        Args:
            data_dir: folder holding the data set's files, for those not shipped
                in a package (default `$KMTL_DATA_DIR`).

        Raises:
            DataError: files missing or damaged.
        """
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


DATASETS = Registry("data set", Dataset, keras_serializable=False)
