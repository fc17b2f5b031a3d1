"""Atomic file writes: write to a temporary name in the target's folder, then rename over the target.

An interrupted or failing write never leaves a half-written file behind, and never damages the
previous version of the target.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

_GROUP: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "_GROUP", default=None
)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` only if the block succeeds.

    Inside :func:`atomic_group` the rename waits for the whole group to succeed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    tmp: Path | None = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield tmp
        group = _GROUP.get()
        if group is None:
            os.replace(tmp, target)
        else:
            group.append((tmp, target))
            tmp = None  # the group renames or removes it
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Files written atomically inside the block replace their targets together, once the block succeeds.

    If anything in the block fails (or is interrupted), no target changes: the previous versions of
    all of them stay as they were and the temporary files are removed. Nested groups join the outer one.
    """
    if _GROUP.get() is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
    except BaseException:
        _remove(tmp for tmp, _ in pending)
        raise
    finally:
        _GROUP.reset(token)
    renamed = 0
    try:
        for tmp, target in pending:
            os.replace(tmp, target)
            renamed += 1
    finally:
        _remove(tmp for tmp, _ in pending[renamed:])


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(target: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``target``."""
    with atomic_path(target) as tmp:
        write(tmp)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(target: str | Path, obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
