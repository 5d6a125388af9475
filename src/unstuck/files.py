"""Writing files safely: atomically, and never over a user's file unless asked.

Every file unstuck writes (figures, reports, JSON Lines logs, results) goes through
:func:`write_atomically`: the content goes to a temporary file in the target's directory, which is
then renamed over the target (``os.replace``), so a reader never sees a half-written file and a
failure leaves no partial one. An existing target is only replaced when ``overwrite=True``;
otherwise :class:`FileExistsError` names it.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_text(path, "hello\\n")
    >>> open(path).read()
    'hello\\n'
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import IO, Any

__all__ = ["figure_format", "save_figure", "write_atomically", "write_bytes", "write_text"]


def write_atomically(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], *, overwrite: bool = False
) -> None:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it to ``path``.

    The file gets the permissions of any newly created file (0o666 less the umask), unlike
    ``tempfile.mkstemp``'s private 0o600.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before writing).
        IsADirectoryError: ``path`` is a directory.
        FileNotFoundError: the directory of ``path`` does not exist.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory {directory} of {path} does not exist")
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomically`)."""
    write_atomically(path, lambda stream: stream.write(data), overwrite=overwrite)


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`write_atomically`)."""
    write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def figure_format(path: str | os.PathLike[str]) -> str:
    """The image format of ``path`` from its suffix (``png`` when it has none)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return suffix or "png"


def save_figure(
    figure: Any, path: str | os.PathLike[str], *, overwrite: bool = False, dpi: int = 120
) -> None:
    """Save a matplotlib ``figure`` to ``path`` atomically, in the format its suffix names."""
    write_atomically(
        path,
        lambda stream: figure.savefig(stream, format=figure_format(path), dpi=dpi),
        overwrite=overwrite,
    )
