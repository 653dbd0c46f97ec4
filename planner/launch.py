"""The ``gpuplan`` command's entry point. Loading the command line imports most of gpuplan (a
few tenths of a second): Ctrl-C then is "interrupted", exit 130, as it is once a command runs
(planner.cli's error boundary), not a Python traceback."""

from __future__ import annotations

import sys

from planner.errors import EXIT_INTERRUPTED


def main() -> None:
    try:
        from planner.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    cli()
