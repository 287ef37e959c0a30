"""Write files and folders atomically: readers never see half-written outputs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from m3lung.errors import InputError


def _not_a_folder(p: Path) -> Path | None:
    """``p`` or its nearest existing ancestor when that is not a folder (a file), else None."""
    for q in (p, *p.parents):
        if q.exists() or q.is_symlink():
            return None if q.is_dir() else q
    return None


def require_output_folder(path: str | os.PathLike[str], *, what: str = "the output folder (--out)") -> Path:
    """``path`` as a Path; an :class:`InputError` when it, or a folder above it, exists as a file.

    Outputs are folders: new ones are made, existing ones are written into by the caller's rules;
    a file in the way is never replaced.
    """
    p = Path(path)
    blocker = _not_a_folder(p)
    if blocker is not None:
        where = "is a file" if blocker == p else f"cannot be made: {blocker} is a file"
        raise InputError(f"{p}: {what} {where}, not a folder; pass a folder path (new or existing)")
    return p


def require_input_folder(path: str | os.PathLike[str], *, what: str = "the data folder (--data)") -> Path:
    """``path`` as a Path; an :class:`InputError` when it does not exist or is not a folder."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such folder; {what} must be an existing folder")
    if not p.is_dir():
        raise InputError(f"{p}: {what} is a file, not a folder; pass the folder that holds the data")
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes); move it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` when the block succeeds.

    An existing ``path`` is an error unless ``overwrite``; then it is replaced only after the new
    folder is complete. A file at ``path`` (or above it) is always an error: it is never replaced.
    """
    target = require_output_folder(path)
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
