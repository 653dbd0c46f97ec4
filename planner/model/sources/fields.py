"""Reading fields of a config.json: dtypes and checked accessors whose errors name the field.

Every integer a config (or a GGUF header) declares is bounded to a plausible range before any
arithmetic sees it: a typo such as ``num_hidden_layers: 1000000000`` must be one clear error,
not minutes of work and gigabytes of memory, and ``1e400`` must not reach ``int()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from planner.errors import ModelSpecError, short

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

# Upper bounds, generous by a factor of 4 to 10 over the largest published open models
# (late 2025: hidden 18,432 / 126 layers / 384 experts / 262,144-token vocab / 10M context for
# Llama 4 Scout). These are plausibility limits, not facts about any model; a field not listed
# gets DEFAULT_MAX.
DEFAULT_MAX = 1 << 20
LIMITS: dict[str, int] = {
    "hidden_size": 1 << 17,
    "num_hidden_layers": 1024,
    "depth": 1024,
    "block_count": 1024,
    "num_attention_heads": 1024,
    "num_key_value_heads": 1024,
    "head_dim": 8192,
    "intermediate_size": 1 << 20,
    "vocab_size": 1 << 23,
    "max_position_embeddings": 1 << 27,
    "context_length": 1 << 27,
    "num_local_experts": 4096,
    "num_experts": 4096,
    "n_routed_experts": 4096,
    "moe_num_experts": 4096,
    "num_experts_per_tok": 4096,
    "experts_per_token": 4096,
    "moe_k": 4096,
    "n_shared_experts": 64,
    "moe_num_shared_experts": 64,
    "first_k_dense_replace": 1024,
    "num_nextn_predict_layers": 64,
    "sliding_window": 1 << 27,
    "sliding_window_size": 1 << 27,
    "attention_chunk_size": 1 << 27,
    "patch_size": 4096,
    "image_size": 1 << 16,
    "num_channels": 64,
    "in_channels": 64,
    "spatial_merge_size": 64,
    "temporal_patch_size": 64,
    "interleave_moe_layer_step": 1024,
    "sliding_window_pattern": 1024,
    "full_attention_interval": 1024,
    "moe_layer_interval": 1024,
    "n_heads_in_group": 1024,
}


def limit_of(key: str) -> int:
    return LIMITS.get(key, DEFAULT_MAX)


def check_int(
    value: Any, key: str, where: str, *, minimum: int = 1, limit_key: str | None = None
) -> int:
    """``value`` as a plausible integer for field ``key`` (bounded as ``limit_key``, default
    ``key``), or an error naming the field."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 4096.0 is 4096; 1e400 (inf) and 1.5 are errors below
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelSpecError(f"{where}: field '{key}' must be an integer, got {short(repr(value))}")
    if value < minimum:
        raise ModelSpecError(
            f"{where}: field '{key}' must be {'positive' if minimum == 1 else f'>= {minimum}'}, "
            f"got {value}"
        )
    top = limit_of(limit_key or key)
    if value > top:
        raise ModelSpecError(
            f"{where}: field '{key}' = {short(value, 30)} is implausible (at most {top:,})",
            "check the config file: no published model comes near this value",
        )
    return value


def check_factor(value: Any, key: str, where: str, top: float = 1024.0) -> float:
    """``value`` as a finite scale factor in (0, ``top``] for field ``key``, or an error naming
    it (a negative or NaN factor would shrink or break the memory it scales). The default
    bound is a judgement: published linear RoPE factors are 2-8."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (math.isfinite(value) and 0 < value <= top):
        raise ModelSpecError(
            f"{where}: field '{key}' must be a number above 0 and at most {top:g}, "
            f"got {short(repr(value))}"
        )
    return float(value)


def get_field(
    cfg: Mapping[str, Any], key: str, where: str, default: Any = ..., kind: type = int
) -> Any:
    """A required (no default) or optional positive integer field, bounded by LIMITS."""
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
    return check_int(value, key, where)


def opt_int(cfg: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
    """An optional integer field where absent, null or 0 means ``default``."""
    value = cfg.get(key)
    if value is None or value is False or value == 0:
        return default
    return check_int(value, key, where, minimum=minimum)
