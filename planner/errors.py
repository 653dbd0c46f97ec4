"""One error type for everything a user can cause or meet, each with a documented exit code.

Exit codes (also in README.md):
  2  usage error (bad flag value, unknown model / quant / GPU, malformed input file)
  3  no feasible offer
  4  provider or network failure
  5  infrastructure-code or deploy failure
  6  `gpuplan check` found the committed project out of date
  130 interrupted (SIGINT, or SIGTERM as a cancelled CI job sends)
Only ``planner.cli`` prints these; every other module raises them.
"""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Iterable

EXIT_USAGE = 2
EXIT_NO_FEASIBLE = 3
EXIT_PROVIDER = 4
EXIT_DEPLOY = 5
EXIT_DRIFT = 6
EXIT_INTERRUPTED = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, a stopped container), taken as Ctrl-C is. Unlike Ctrl-C at a
    terminal, which the whole process group gets, it reached gpuplan alone: what gpuplan runs
    (the Pulumi CLI) has to be told (infra.deploy.PulumiEngine)."""


class GpuplanError(Exception):
    """An error with a one-line message, a hint and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # what the user should read first (e.g. cached offers dropped as invalid, which may be
        # why nothing matched): printed as warning lines before the error
        self.warnings: tuple[str, ...] = ()


class UsageError(GpuplanError):
    exit_code = EXIT_USAGE


class ModelSpecError(UsageError):
    """A model could not be found or its description is malformed."""


class NoFeasibleOfferError(GpuplanError):
    exit_code = EXIT_NO_FEASIBLE


class ProviderError(GpuplanError):
    exit_code = EXIT_PROVIDER


class DeployError(GpuplanError):
    exit_code = EXIT_DEPLOY


class LocalFileError(UsageError):
    """A file or folder on this machine could not be read or written (permissions, a full disk,
    a name too long): the user's environment, not gpuplan, has to change."""


# A read (a model folder) and a write (--out, the cache) both end here: the hint fits either.
_PERMISSION_HINT = "check its permissions (reading a model, writing output), or use another path"
_OS_REASONS = {
    errno.ENOSPC: ("no space left on the device", "free some space, or choose another folder"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or choose another folder"),
    errno.EACCES: ("permission denied", _PERMISSION_HINT),
    errno.EPERM: ("operation not permitted", _PERMISSION_HINT),
    errno.EROFS: ("read-only file system", "choose a writable folder"),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter name or path"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EISDIR: ("it is a folder, not a file", "give a file path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EEXIST: ("a file is in the way of a folder", "check the path"),
}


def short(text: object, limit: int = 80) -> str:
    """A value fit for a one-line message: control characters escaped, long values cut."""
    s = str(text).encode("unicode_escape", "backslashreplace").decode("ascii")
    return s if len(s) <= limit else s[: limit - 3] + "..."


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with credentials in URLs (``http://user:pass@host``) replaced by ``***@``: a
    mirror's password never reaches the terminal, a log or a cache file."""
    return _USERINFO.sub("***@", text)


def local_file_error(exc: OSError, action: str = "use") -> LocalFileError:
    """One clear line for an OSError on a local path (never the whole path when it is huge)."""
    reason, hint = _OS_REASONS.get(exc.errno or -1, (exc.strerror or type(exc).__name__, None))
    where = f" {short(exc.filename)}" if exc.filename else ""
    return LocalFileError(f"cannot {action}{where}: {reason}", hint)


def not_utf8(what: str, exc: UnicodeDecodeError) -> str:
    """'<what> is not UTF-8 text (byte 0x.. at offset N)': the first byte that is not."""
    return f"{what} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean …' hint listing the closest known names, or None."""
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    # Substring matches catch short aliases that difflib scores low ("70b" in "llama-3.1-70b").
    if len(close) < n:
        for key in sorted(lowered):
            if name.lower() in key and key not in close:
                close.append(key)
            if len(close) >= n:
                break
    if not close:
        return None
    return "did you mean " + ", ".join(lowered[c] for c in close) + "?"
