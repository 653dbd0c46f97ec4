"""Atomic file writes: a temp file beside the target, fsync, rename, fsync the folder. A crash
or kill at any point leaves either the old file or the new one, never a mix (the one exception:
a writable file in a folder that cannot hold a temp file is written in place, `_atomic_write`)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from planner.errors import LocalFileError, local_file_error, short


def text_bytes(path: Path) -> bytes:
    """A file's bytes with line endings as text mode reads them (CR LF and a lone CR as LF): a
    checkout that rewrote them (git's core.autocrlf, eol=crlf) is the same file."""
    return path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; an OSError becomes one clear LocalFileError."""
    try:
        return _atomic_write(path, data)
    except OSError as exc:
        exc.filename = str(path)  # the path the user gave, never a temp file's
        raise local_file_error(exc, "write") from None


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only be
    read by setting it, which would race with files other threads create meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _target(path: Path) -> tuple[Path, int]:
    """Where a write to ``path`` lands and the mode the written file gets. A symlink is followed:
    the link stays and the file it points to gets the new content. An existing file keeps its
    permission bits; a new one gets what the user's umask gives any new file (mkstemp's 0600
    would otherwise stay; nothing gpuplan writes holds a secret). A folder, a device, a pipe or
    a file nobody may write is refused: replacing it would lose what the user put there."""
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = real.stat()
    except FileNotFoundError:
        return real, 0o666 & ~_umask()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(st.st_mode):
        raise LocalFileError(
            f"cannot write {short(path)}: not a regular file (a device, a pipe or a socket)",
            "give the path of an ordinary file",
        )
    if not os.access(real, os.W_OK) or not st.st_mode & 0o222:
        raise LocalFileError(
            f"cannot write {short(path)}: the file is read-only",
            "make it writable (chmod u+w) or choose another path",
        )
    return real, stat.S_IMODE(st.st_mode)


def _atomic_write(given: Path, data: bytes) -> Path:
    path, mode = _target(given)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except PermissionError:
        if not path.is_file():
            raise
        # a writable file in a folder the user may not write (a symlink into a shared folder,
        # say): it can only be written in place, as any editor would; not atomic
        with path.open("r+b") as f:
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return given
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return given


def atomic_write_many(items: dict[Path, str]) -> None:
    """Write several files all or nothing: every new content goes to a temp file beside its
    target first (written and fsynced); only when all are on disk are they renamed into place.
    A full disk, a permission error or an interrupt while writing leaves every target exactly
    as it was and no temp file behind. (The renames themselves need no space and take
    microseconds; a kill between two of them is the one window left.)"""
    staged: list[tuple[str, Path]] = []
    given = None
    try:
        for given, text in items.items():
            path, mode = _target(given)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
    except BaseException as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            if given is not None:
                exc.filename = str(given)  # the file it was writing, never a temp file's name
            raise local_file_error(exc, "write") from None
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    for folder in {path.parent for _, path in staged}:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
