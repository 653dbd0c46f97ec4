"""Read a TOML file (gpuplan.toml) into a dict: every fault of the file is one UsageError."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from planner.errors import UsageError, not_utf8


def read_toml_file(path: Path) -> dict[str, Any]:
    """The parsed document; a syntax error gives its line and column, and a file nested beyond
    Python's recursion limit (`a = {x={x=...}}` 100,000 deep) is said as such, not a crash. A
    UTF-8 byte-order mark (Windows Notepad writes one) is read past: it carries nothing."""
    try:
        return tomllib.loads(path.read_text("utf-8").removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"{path} is not valid TOML: {exc}",
            "fix that line, or move the file aside: `gpuplan init` writes a commented one",
        ) from None
    except RecursionError:
        raise UsageError(
            f"{path} is nested too deeply to be a gpuplan.toml",
            "settings are plain values and lists of strings: fix the file, or move it aside "
            "(`gpuplan init` writes a commented one)",
        ) from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            not_utf8(str(path), exc),
            "TOML files are UTF-8: save it as UTF-8, or move it aside (`gpuplan init` writes one)",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
