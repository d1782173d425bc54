"""Helpers shared by test modules (import as `from helpers import ...`)."""

from pathlib import Path


def snapshot(root):
    """Every path under `root` -> (size, mtime_ns, bytes) for files, None for dirs."""
    result = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            result[key] = None
        else:
            stat = path.stat()
            result[key] = (stat.st_size, stat.st_mtime_ns, path.read_bytes())
    return result
