"""Every private Keras (`keras.src`) name kmtl uses, in one place.

`keras.src` is not Keras's public API and may change in any release; a Keras
upgrade that breaks kmtl should break here, in one module, with the reason each
name is needed beside it. Import these names from this module, never from
`keras.src` directly.

Not here because Keras exports them publicly (use those):
`keras.utils.unpack_x_y_sample_weight` (a batch -> `(x, y, sample_weight)`) and
`keras.saving.deserialize_keras_object` (what `serialization_lib` offers under
the same name).
"""

# A Keras loss's per-replica scaling under `tf.distribute`: each replica's loss
# is divided by the number of replicas, so that the summed gradients are the
# global batch mean. Keras's own trainer does it with these two functions and
# does not export them; kmtl applies the same convention to its task losses and
# must undo it for logging.
from keras.src.losses.loss import scale_loss_for_distribution
from keras.src.losses.loss import unscale_loss_for_distribution

# The wrapper that turns a plain loss function into a `keras.losses.Loss` with
# a reduction (`mean_with_sample_weight`) and a serializable config; the public
# `keras.losses.Loss` subclasses each wrap one built-in function, so kmtl.tasks
# builds its own (task-specific) losses on it.
from keras.src.losses.losses import LossFunctionWrapper

# The key of a layer's call (node) in a Functional model's graph
# (`model._nodes` holds the keys of the model's own calls). A layer's
# `_inbound_nodes` also lists calls from other graphs over the same layers (a
# sub-model such as the encoded path, `MultiTaskModel.submodel`); this tells
# the model's own call apart.
from keras.src.ops.function import make_node_key

# Holds the arguments of `compile` untracked (no Keras attribute tracking of
# the optimizer or the weighting inside it) and serializes them when the model
# is saved, as `keras.Model.compile` does; Keras has no public equivalent.
from keras.src.saving.serialization_lib import SerializableDict


def own_nodes(model, layer):
    """The calls (`keras` Nodes) of `layer` that are part of `model`'s graph,
    not of another graph over the same layer."""
    return [node for index, node in enumerate(layer._inbound_nodes)
            if make_node_key(layer, index) in model._nodes]


def replay_graph(function, inputs):
    """Runs a Functional's graph on `inputs` with each of its layers as it is
    (no copies, no nested model): every layer is called on the new tensors,
    so the calls join the graph `inputs` belong to.

    `Functional._run_through_graph` is what `Functional.call` and
    `keras.models.clone_model` run; Keras does not export it. `add_tasks`
    (kmtl.models.progressive) replays the old towers on a rebuilt
    architecture layer's outputs with it.
    """
    return function._run_through_graph(inputs, operation_fn=lambda layer: layer)


__all__ = [
    "own_nodes",
    "replay_graph",
    "LossFunctionWrapper",
    "SerializableDict",
    "scale_loss_for_distribution",
    "unscale_loss_for_distribution",
]
