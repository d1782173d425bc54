"""The `Architecture` base class: the contract every architecture layer keeps."""

import keras


class Architecture(keras.layers.Layer):
    """Base class of the architecture family: the shared part of a multi-task
    model, from the encoded inputs to one representation per task.

    Subclasses are registered Keras layers (`kmtl.architectures.register`) whose
    first argument is `task_names`. `kmtl.build_model` puts one on the encoded
    inputs and the towers on its outputs, and the model finds it as
    `model.architecture`; nothing looks for it by name or attribute.

    The contract:
        task_names: list of str, the tasks it serves, in output order.
        shares_representation: bool, class attribute. True when every task reads
            the same tensor (shared bottom), which gradient methods with
            `gradients="representation"` need.
        call(inputs): `(batch, features)` -> dict `{task: (batch, units)}`.
        penalty(): a scalar loss the layer adds in training (soft sharing), or
            None.
        diagnostics(inputs): `{name: (matrix, row_labels, column_labels)}` of
            what it shares, or `{}` (see `kmtl.measures.sharing`).
        owned_slices(): which slices of its stacked weights belong to one task.

    Args:
        task_names: list of str.
        **kwargs: `keras.layers.Layer` arguments (`name`).
    """

    shares_representation = False

    def penalty(self):
        """The sharing penalty added to the loss in training, or None."""
        return None

    def diagnostics(self, inputs=None):
        """What the layer shares, or `{}` when it has nothing learned to show."""
        return {}

    def owned_slices(self):
        """`{variable.path: owners}`: for each weight that stacks per-task parts
        along its first axis, one entry per slice, the name of the task whose
        output alone depends on it, or None for a slice several tasks share.

        Every subclass must say it, `{}` included: a gradient method (MGDA,
        PCGrad, ...) treats an undeclared slice as shared.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement owned_slices() (return {{}} "
            f"when no weight stacks per-task parts).")
