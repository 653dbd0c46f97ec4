"""Reading fields of a config.json: dtypes and one checked accessor whose errors name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import ModelSpecError

DTYPES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "float32": "fp32",
    "half": "fp16",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp32": "fp32",
    "float": "fp32",
}

# model_type -> family. Families decide layout details below.


def get_field(
    cfg: Mapping[str, Any], key: str, where: str, default: Any = ..., kind: type = int
) -> Any:
    value = cfg.get(key, default)
    if value is ...:
        raise ModelSpecError(
            f"{where}: missing field '{key}'",
            "the config.json of a decoder model names it; check the file is a model config",
        )
    if value is None and default is None:
        return None
    if key not in cfg:
        return value  # the caller's default
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ModelSpecError(f"{where}: field '{key}' must be an integer, got {value!r}")
    if kind is int and value <= 0:
        raise ModelSpecError(f"{where}: field '{key}' must be positive, got {value}")
    return value
