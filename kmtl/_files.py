"""Writing a file whole or not at all."""

import os


def write_atomically(path, write):
    """Calls `write(temporary path)`, then renames the temporary file onto
    `path`: a reader, or a kill at any moment, sees the old file or the new
    one, never half of one.

    The temporary file sits in `path`'s folder and keeps its name as a
    suffix (Keras and pandas read the suffix: `.keras`, `.weights.h5`,
    `.csv.gz`). On any error it is removed and the error propagates.

    Args:
        path: str or path-like, the file to write.
        write: callable taking the temporary path (str).
    """
    folder, name = os.path.split(os.fspath(path))
    temporary = os.path.join(folder, f".partial-{os.getpid()}-{name}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
