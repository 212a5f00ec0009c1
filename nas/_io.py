"""Result files written atomically, and JSON that every reader can parse.

Every file ``nas`` writes for others to read (architecture files, results, plots, lookup
tables) goes through :func:`atomic_write`: readers, and a crash, see the old file or the whole
new one. The temporary file is opened with ``open(..., "x")`` rather than ``mkstemp`` so that
it gets the usual umask permissions (mkstemp's 0600 would hide results from other workers and
users).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Any], None], *, binary: bool
) -> None:
    """Write ``path`` through ``write(file object)`` into a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb" if binary else "x") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    atomic_write(path, lambda fh: fh.write(text), binary=False)


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure as PNG, atomically and with the usual permissions."""
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), binary=True)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, recursively.

    JSON has no infinity or NaN; Python's ``json`` would write ``Infinity``, which strict
    readers (browsers, ``jq``) refuse.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def to_json(doc: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Standard JSON of a results document: non-finite numbers as ``null``, paths as strings.

    Example:
        >>> to_json({"a": float("inf"), "b": Path("x")}, indent=None)
        '{"a": null, "b": "x"}'
    """
    return json.dumps(
        finite(doc), indent=indent, sort_keys=sort_keys, allow_nan=False, default=_default
    )


def _default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item"):  # numpy and torch scalars
        return finite(value.item())
    return str(value)
