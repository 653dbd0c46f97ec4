"""One error type for everything a user can cause or meet, each with a documented exit code.

Exit codes (also in README.md):
  2  usage error (bad flag value, unknown model / quant / GPU, malformed input file)
  3  no feasible offer
  4  provider or network failure
  5  infrastructure-code or deploy failure
  6  `gpuplan check` found the committed project out of date
  130 interrupted
Only ``planner.cli`` prints these; every other module raises them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_USAGE = 2
EXIT_NO_FEASIBLE = 3
EXIT_PROVIDER = 4
EXIT_DEPLOY = 5
EXIT_DRIFT = 6
EXIT_INTERRUPTED = 130


class GpuplanError(Exception):
    """An error with a one-line message, a hint and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


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
