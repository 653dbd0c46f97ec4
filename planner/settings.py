"""gpuplan.toml: the deployment a repository commits, validated, with overrides.

Precedence: command-line flag > GPUPLAN_<KEY> environment variable > gpuplan.toml > default.
Every error names the key, what it got and what it accepts.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from planner.errors import UsageError

OBJECTIVES = ("cost-per-token", "cost", "speed", "latency")

# key -> (section, type, default, allowed values or None, help)
SCHEMA: dict[str, tuple[str, type, Any, tuple[Any, ...] | None, str]] = {
    "model": ("model", str, None, None, "registry name, Hugging Face id or local folder"),
    "quant": ("model", str, None, None, "auto, bf16, fp8, awq, ... (default: the checkpoint's)"),
    "context": ("workload", int, 8192, None, "longest request in tokens (--max-model-len)"),
    "concurrency": ("workload", int, 1, None, "requests of `context` tokens served at once"),
    "prompt_tokens": ("workload", int, 1000, None, "typical prompt"),
    "output_tokens": ("workload", int, 250, None, "typical answer"),
    "kv_cache_dtype": ("workload", str, "auto", ("auto", "fp8"), "KV cache dtype"),
    "gpu_memory_utilization": ("workload", float, 0.92, None, "vLLM's share of GPU memory"),
    "objective": ("constraints", str, "cost-per-token", OBJECTIVES, "what to minimise"),
    "providers": ("constraints", list, None, None, 'e.g. ["aws", "gcp"]'),
    "regions": ("constraints", list, None, None, "substrings of regions"),
    "gpu": ("constraints", str, None, None, "only this GPU"),
    "instance_type": ("constraints", str, None, None, "only this instance type"),
    "spot": ("constraints", bool, False, None, "spot / interruptible prices"),
    "max_price": ("constraints", float, None, None, "USD per hour"),
    "min_tokens_per_s": ("constraints", float, None, None, "per stream"),
    "max_ttft": ("constraints", float, None, None, "ms"),
    "horizon_months": ("constraints", float, 1.0, None, "spreads monthly setup fees"),
    "target_rps": ("constraints", float, None, None, "requests a second: sizes replicas"),
    "target_output_tokens_per_s": ("constraints", float, None, None, "sizes replicas"),
    "replica_headroom": ("constraints", float, 0.2, None, "spare capacity above the target"),
    "out": ("deploy", str, "infra/gpuplan", None, "folder of the generated project"),
    "stack": ("deploy", str, "dev", None, "Pulumi stack"),
    "allow_cidrs": ("deploy", list, None, None, "networks allowed to reach the serving port"),
    "ssh_cidr": ("deploy", str, None, None, "network allowed to SSH in"),
    "ssh_key": ("deploy", str, None, None, "path of an OpenSSH public key"),
    "wait_healthy": ("deploy", int, 1800, None, "seconds deploy waits for the model"),
}


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    model: str | None = None
    quant: str | None = None
    context: int = 8192
    concurrency: int = 1
    prompt_tokens: int = 1000
    output_tokens: int = 250
    kv_cache_dtype: str = "auto"
    gpu_memory_utilization: float = 0.92
    objective: str = "cost-per-token"
    providers: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    gpu: str | None = None
    instance_type: str | None = None
    spot: bool = False
    max_price: float | None = None
    min_tokens_per_s: float | None = None
    max_ttft: float | None = None
    horizon_months: float = 1.0
    target_rps: float | None = None
    target_output_tokens_per_s: float | None = None
    replica_headroom: float = 0.2
    out: str = "infra/gpuplan"
    stack: str = "dev"
    allow_cidrs: tuple[str, ...] = ()
    ssh_cidr: str | None = None
    ssh_key: str | None = None
    wait_healthy: int = 1800
    path: str | None = None  # the file read, if any


def _coerce(key: str, value: Any, source: str) -> Any:
    section, typ, _, allowed, help_text = SCHEMA[key]
    where = f"{source}: '{section}.{key}'" if source.endswith(".toml") else f"{source}"
    ok = (isinstance(value, typ) and not (typ is int and isinstance(value, bool))) or (
        typ is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if typ is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        raise UsageError(f"{where} must be {typ.__name__} ({help_text}), got {value!r}")
    if allowed is not None and value not in allowed:
        raise UsageError(f"{where} is {value!r}; allowed: {', '.join(map(str, allowed))}")
    if (typ in (int, float) and value < 0) or (typ is int and key != "wait_healthy" and value == 0):
        raise UsageError(f"{where} must be positive, got {value!r}")
    return float(value) if typ is float else tuple(value) if typ is list else value


def _from_env(key: str, typ: type) -> Any:
    raw = os.environ.get(f"GPUPLAN_{key.upper()}")
    if raw is None:
        return None
    name = f"GPUPLAN_{key.upper()}"
    try:
        if typ is bool:
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError
            return raw.lower() in {"1", "true", "yes"}
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is list:
            return [v.strip() for v in raw.split(",") if v.strip()]
        return raw
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a valid {typ.__name__}") from None


def load_config(
    path: str | Path | None = "gpuplan.toml", overrides: dict[str, Any] | None = None
) -> ProjectConfig:
    """gpuplan.toml (if present) < GPUPLAN_* environment < ``overrides`` (flags, None = unset)."""
    values: dict[str, Any] = {}
    source = None
    if path is not None and Path(path).exists():
        source = str(path)
        try:
            doc = tomllib.loads(Path(path).read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path} is not valid TOML: {exc}") from None
        for section, table in doc.items():
            if not isinstance(table, dict):
                raise UsageError(f"{path}: '{section}' must be a table ([{section}])")
            for key, value in table.items():
                if key not in SCHEMA or SCHEMA[key][0] != section:
                    known = ", ".join(k for k, v in SCHEMA.items() if v[0] == section)
                    raise UsageError(
                        f"{path}: unknown key '{section}.{key}'",
                        f"keys of [{section}]: {known or 'none (unknown section)'}",
                    )
                values[key] = _coerce(key, value, source)
    for key, (_, typ, _, _, _) in SCHEMA.items():
        env = _from_env(key, typ)
        if env is not None:
            values[key] = _coerce(key, env, f"GPUPLAN_{key.upper()}")
    for key, value in (overrides or {}).items():
        if value is not None and value != () and key in SCHEMA:
            values[key] = _coerce(
                key,
                list(value) if isinstance(value, tuple) else value,
                f"--{key.replace('_', '-')}",
            )
    names = {f.name for f in fields(ProjectConfig)}
    return ProjectConfig(**{k: v for k, v in values.items() if k in names}, path=source)


def config_template(model: str, allow_cidrs: list[str], providers: list[str] | None) -> str:
    """A commented gpuplan.toml for `gpuplan init`."""
    import json

    prov = json.dumps(providers) if providers else '["aws", "gcp", "runpod", "vast"]'
    cidrs = json.dumps(allow_cidrs) if allow_cidrs else '["203.0.113.7/32"]'
    return f"""# gpuplan.toml: what to serve and where. Commit it with the generated project
# ([deploy].out).
# Flags override these values, and so do GPUPLAN_<KEY> environment variables.

[model]
model = {json.dumps(model)}   # registry name, Hugging Face id or local folder
# quant = "auto"              # auto | bf16 | fp8 | awq | gptq | nvfp4 | ...

[workload]
context = 8192                # longest request (vLLM --max-model-len)
concurrency = 4               # requests of `context` tokens served at once
prompt_tokens = 1000          # typical prompt and answer, for speed and cost per token
output_tokens = 250
# kv_cache_dtype = "fp8"

[constraints]
objective = "cost-per-token"  # cost-per-token | cost | speed | latency
providers = {prov}
# regions = ["us-east-1"]
# gpu = "l40s"
# max_price = 5.0             # USD per hour
# min_tokens_per_s = 20       # per stream
# spot = false

[deploy]
out = "infra/gpuplan"         # where `gpuplan generate` writes the Pulumi project
stack = "prod"
allow_cidrs = {cidrs}   # who may reach the serving port
# ssh_cidr = "203.0.113.7/32"
# ssh_key = "~/.ssh/id_ed25519.pub"
wait_healthy = 1800           # seconds `gpuplan deploy` waits for the model to answer
"""
