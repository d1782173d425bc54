"""The `Architecture` base class: the contract every architecture layer keeps,
and `ARCHITECTURES`, the registry of the family."""

import keras

from kmtl._checks import check_task_names
from kmtl.registry import Registry


class Architecture(keras.layers.Layer):
    """Base class of the architecture family: the shared part of a multi-task
    model, from the encoded inputs to one representation per task.

    Subclasses are Keras layers registered in `ARCHITECTURES`
    (`@ARCHITECTURES.register("mmoe")`) whose first argument is `task_names`.
    `kmtl.build_model` puts one on the encoded inputs and the towers on its
    outputs, and the model finds it as `model.architecture`; nothing looks for
    it by name or attribute.

    The contract:
        - `task_names`: list of str, the tasks it serves, in output order.
        - `shares_representation`: bool, class attribute. True when every task
          reads the same tensor (shared bottom), which gradient methods with
          `gradients="representation"` need.
        - `call(inputs)`: `(batch, features)` -> dict `{task: (batch, units)}`.
        - `penalty()`: a scalar loss the layer adds in training (soft
          sharing), or None (the default).
        - `diagnostics(inputs)`: `{name: (matrix, row_labels,
          column_labels)}` of what it shares (see `kmtl.measures.sharing`). An
          architecture with nothing inspectable keeps the base's, which
          returns `{}` (`inspectable` is then False).
        - `owned_slices()`: which slices of its stacked weights belong to one
          task; every subclass must say it, `{}` included.

    Args:
        task_names: list of str, distinct, not empty.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Input shape:
        `(batch, features)`: the encoded inputs.

    Output shape:
        dict `{task_name: (batch, units)}`, one entry per task in `task_names`
        order; `units` is the subclass's.

    Raises:
        ValueError: empty or repeated `task_names`.

    Examples:
        >>> @ARCHITECTURES.register("linear_towers")
        ... class LinearTowers(Architecture):
        ...     '''One linear map per task, stacked: `(T, d, 4)`.'''
        ...     def build(self, input_shape):
        ...         self.kernel = self.add_weight(
        ...             shape=(len(self.task_names), input_shape[-1], 4), name="kernel")
        ...     def call(self, inputs):
        ...         h = keras.ops.einsum("bd,tdu->tbu", inputs, self.kernel)
        ...         return {name: h[t] for t, name in enumerate(self.task_names)}
        ...     def owned_slices(self):
        ...         # Slice t of the kernel only feeds task t's output.
        ...         return self.slices_owned_by([self.kernel], self.task_names)
        ...     def compute_output_shape(self, input_shape):
        ...         return {name: (*input_shape[:-1], 4) for name in self.task_names}
    """

    shares_representation = False
    inspectable = False

    def __init__(self, task_names, **kwargs):
        super().__init__(**kwargs)
        self.task_names = check_task_names(task_names)

    def penalty(self):
        """The sharing penalty added to the loss in training, or None."""
        return None

    def diagnostics(self, inputs=None):
        """What the layer shares, or `{}` when it has nothing learned to show.

        Args:
            inputs: `(batch, features)` tensor, the layer's own input, or None;
                a layer whose sharing does not depend on the input ignores it.

        Returns:
            dict `{name: (matrix, row_labels, column_labels)}`, each matrix a
            2-D array (see `kmtl.measures.sharing`).
        """
        return {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Whether `diagnostics` shows something: the class overrides the base's
        # (MMoE's expert utilisation, cross-stitch units, ...). A class
        # attribute, so it is known without building a layer.
        cls.inspectable = cls.diagnostics is not Architecture.diagnostics

    def owned_slices(self):
        """`{variable.path: owners}`: for each weight that stacks per-task parts
        along its first axis, `owners` is a tuple with one entry per slice, the
        name of the task whose output alone depends on that slice, or None for
        a slice several tasks share. Weights not listed are shared whole.

        A gradient method (MGDA, PCGrad, ...) gives an owned slice its task's
        own gradient and treats every other parameter the tasks reach as
        shared; `tests/architectures` checks the declaration against the graph.
        Build helpers: `slices_owned_by`.

        Raises:
            NotImplementedError: the subclass does not say (return `{}` when no
                weight stacks per-task parts).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement owned_slices() (return {{}} "
            f"when no weight stacks per-task parts).")

    @staticmethod
    def slices_owned_by(variables, owners):
        """`{variable.path: owners}` for each of `variables`, for `owned_slices`.

        Args:
            variables: iterable of Keras variables, each of shape
                `(len(owners), ...)`.
            owners: sequence of str or None, one per slice along the first axis.

        Raises:
            ValueError: a variable whose first axis is not `len(owners)` long.
        """
        owners = tuple(owners)
        declared = {}
        for variable in variables:
            if not variable.shape or variable.shape[0] != len(owners):
                raise ValueError(
                    f"Variable '{variable.path}' of shape {tuple(variable.shape)} "
                    f"cannot carry {len(owners)} slice owners {list(owners)}: its "
                    f"first axis must have one entry per owner.")
            declared[variable.path] = owners
        return declared

    def get_config(self):
        return {**super().get_config(), "task_names": list(self.task_names)}


ARCHITECTURES = Registry("architecture", Architecture, fixed=("task_names",))
"""The registry of architectures (`kmtl.registry.Registry`); `task_names` is
supplied by the caller, so it is not listed as an option."""
