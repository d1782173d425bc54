"""`SharingDiagnostics`: the architecture's sharing matrices, every few epochs."""

import os

import keras
import numpy as np
import tensorflow as tf

from kmtl._checks import check_positive_int
from kmtl.measures import diagnostics

DIAGNOSTICS_RUN = "diagnostics"


class SharingDiagnostics(keras.callbacks.Callback):
    """Logs the sharing diagnostics of the model's architecture layer (MMoE
    expert utilisation, cross-stitch units, ...) every `every` epochs.

    Each matrix cell becomes one scalar named `<matrix>/<row>/<column>`, e.g.
    `expert_utilisation/income/expert_0`, computed by `kmtl.measures.diagnostics` on
    up to `batches` batches of `data`. In TensorBoard the slashes group the
    scalars by matrix.

    Where the scalars go:

    - with `add_to_logs` (the default when there is no `log_dir`), into the epoch
      logs, so `model.fit`'s History records them and a
      `keras.callbacks.TensorBoard` writes them. This callback must then come
      **before** `keras.callbacks.TensorBoard` in the callback list: Keras calls
      callbacks in order, and a TensorBoard placed earlier has already written
      the logs. The progress bar prints them too (one number per matrix cell,
      which makes its epoch line long: pass `log_dir` instead for large
      matrices).
    - with `log_dir`, straight to TensorBoard event files in
      `<log_dir>/diagnostics` (a run of its own beside Keras's `train` and
      `validation`), at step `epoch` like Keras's epoch scalars, together with
      one heatmap image per matrix (`images=True`). The progress bar stays
      unchanged.

    Args:
        data: what `kmtl.measures.diagnostics` takes: a `tf.data.Dataset` of
            `(features, labels, sample_weights)` batches (e.g. the validation
            data), a dict of feature arrays, or None for a layer whose
            diagnostics do not depend on its inputs (cross-stitch units).
        every: int, default 1. Log every `every` epochs.
        batches: int, default 1. At most this many batches of `data` are used.
        log_dir: str or None. A TensorBoard log directory, e.g. the one given to
            `keras.callbacks.TensorBoard`.
        add_to_logs: bool or None. Whether to add the scalars to the epoch logs;
            default: only when `log_dir` is None.
        images: bool, default True. With `log_dir`, also write each matrix as a
            heatmap image (`kmtl.plotting.heatmap.plot_heatmap`).

    Raises:
        ValueError: `every` or `batches` is not a positive integer. At the first
            logging epoch, from `kmtl.measures.diagnostics`: the model has no
            architecture, or one with no diagnostics, or the layer needs inputs and
            `data` is None.

    Examples:
        >>> model.fit(train, validation_data=val, epochs=20, callbacks=[
        ...     SharingDiagnostics(val),                      # before TensorBoard
        ...     keras.callbacks.TensorBoard("logs")])
        >>> model.history.history["expert_utilisation/income/expert_0"]
    """

    def __init__(self, data=None, every=1, batches=1, log_dir=None,
                 add_to_logs=None, images=True):
        super().__init__()
        check_positive_int(every, "every")
        check_positive_int(batches, "batches")
        self.data = data
        self.every = every
        self.batches = batches
        self.log_dir = log_dir
        self.add_to_logs = log_dir is None if add_to_logs is None else add_to_logs
        self.images = images
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, DIAGNOSTICS_RUN))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        frames = diagnostics.sharing(self.model, self.data, self.batches)
        scalars = {
            f"{name}/{row}/{column}": float(value)
            for name, frame in frames.items()
            for row, values in frame.iterrows()
            for column, value in values.items()
        }
        if self.add_to_logs and logs is not None:
            logs.update(scalars)
        if self._writer is not None:
            self._write(frames, scalars, epoch)

    def _write(self, frames, scalars, step):
        with self._writer.as_default(step=step):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value)
            if self.images:
                for name, figure in diagnostics.plot_sharing(frames).items():
                    figure.canvas.draw()
                    pixels = np.asarray(figure.canvas.buffer_rgba())
                    tf.summary.image(name, pixels[None])
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
