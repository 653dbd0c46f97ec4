"""The Plan: the one value every later stage (infrastructure code, deploy) consumes.

A Plan names the chosen offer, the parallel layout, the exact vLLM arguments, the estimates and
the reasons. It serialises to JSON and loads back equal (schema ``gpuplan.plan/1``)."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from planner.errors import UsageError
from planner.offers.offer import Offer

PLAN_SCHEMA = "gpuplan.plan/1"


@dataclass(frozen=True, slots=True)
class Need:
    """What the user asks of the deployment (workload and constraints)."""

    context: int = 8192  # --max-model-len: the longest request
    concurrency: int = 1  # requests in flight at once, each up to `context` tokens
    # interactive: figures at `concurrency` streams, with a default service level (see
    # planner/decide/objective.py); batch: an offline job, figures at saturation.
    workload: str = "interactive"
    prompt_tokens: int = 1000  # typical request, for speed and cost per token
    output_tokens: int = 250
    kv_cache_dtype: str = "auto"
    gpu_memory_utilization: float = 0.92
    # auto: cheapest $/h that serves the load (batch: $ per 1M output tokens at saturation);
    # or cost-per-token | cost | speed | latency
    objective: str = "auto"
    spot: bool = False
    max_price_usd_per_hour: float | None = None
    min_tokens_per_s: float | None = None  # per stream, at the requested concurrency
    max_ttft_ms: float | None = None
    # False when no offer met the interactive default service level and the ranking was
    # redone without it (the plan says so in its notes).
    default_service_level: bool = True
    gpus: int | None = None  # pin: GPUs per machine
    tp: int | None = None  # pin: tensor-parallel degree
    horizon_months: float = 1.0  # spreads monthly rentals' setup fees
    max_nodes: int = 4
    # Throughput target: identical replicas are added until it is met with `replica_headroom`.
    target_output_tokens_per_s: float | None = None
    replica_headroom: float = 0.2
    max_replicas: int = 64


@dataclass(frozen=True, slots=True)
class Layout:
    tp: int  # tensor parallel GPUs per replica (within a node)
    pp: int = 1  # pipeline stages (= nodes per replica)
    dp: int = 1  # replicas on one node (vLLM --data-parallel-size)
    nodes: int = 1

    @property
    def label(self) -> str:
        parts = [f"TP{self.tp}"]
        if self.pp > 1:
            parts.append(f"PP{self.pp}")
        if self.dp > 1:
            parts.append(f"DP{self.dp}")
        return "x".join(parts)


@dataclass(frozen=True, slots=True)
class Estimate:
    single_stream_tokens_per_s: float  # what one stream sees at the requested concurrency
    aggregate_output_tokens_per_s: float  # all replicas, at the declared load
    batch: int  # sequences per vLLM replica at the declared load
    ttft_ms: float
    itl_ms: float  # inter-token latency at the requested concurrency
    usd_per_hour: float
    usd_per_million_output_tokens: float
    usd_per_million_total_tokens: float
    memory_headroom_gib: float  # per GPU, after weights, overhead and the requested KV
    max_concurrency: int  # requests of `context` tokens that fit, all replicas
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float  # for the requested concurrency
    overhead_gib_per_gpu: float
    monthly_commitment_usd: float | None = None  # monthly rentals: per month, plus setup below
    setup_fee_usd: float | None = None
    replicas: int = 1  # identical copies of the layout; $/h and tokens/s above cover them all
    target_headroom_pct: float | None = None  # capacity above the throughput target, percent


@dataclass(frozen=True, slots=True)
class Plan:
    model: str  # the checkpoint vLLM serves (a Hugging Face id or a path)
    base_model: str  # what the user asked for
    model_source: str
    model_is_guess: bool
    quant_format: str
    need: Need
    offer: Offer
    layout: Layout
    vllm_args: tuple[str, ...]
    estimate: Estimate
    objective_value: float
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    schema: str = PLAN_SCHEMA


def _to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value))
        out = {}
        for f in fields(value):
            item = getattr(value, f.name)
            # A float field holding an int (64 GiB) is written as 64.0, so that a loaded plan
            # writes back byte-identical.
            if isinstance(item, int) and not isinstance(item, bool) and _is_float(hints[f.name]):
                item = float(item)
            out[f.name] = _to_jsonable(item)
        return out
    if isinstance(value, tuple | list):
        return [_to_jsonable(v) for v in value]
    return value


def _is_float(tp: Any) -> bool:
    return tp is float or float in typing.get_args(tp)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return _to_jsonable(plan)


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, sort_keys=True) + "\n"


def _from_jsonable(cls: Any, data: Any) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(inner[0], value)
    if origin is tuple:
        ((inner, *_),) = [typing.get_args(tp)]
        return tuple(_convert(inner, v) for v in value)
    if is_dataclass(tp):
        return _from_jsonable(tp, value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def plan_from_dict(data: Any) -> Plan:
    """Load a Plan; a malformed file or one from another schema version is a usage error."""
    if not isinstance(data, dict):
        raise UsageError("plan file is not a JSON object")
    schema = data.get("schema")
    if schema != PLAN_SCHEMA:
        raise UsageError(
            f"plan file has schema {schema!r}, this gpuplan reads {PLAN_SCHEMA!r}",
            "regenerate it with `gpuplan recommend ... --save-plan FILE`",
        )
    try:
        return _from_jsonable(Plan, data)
    except (TypeError, KeyError, ValueError, IndexError) as exc:
        raise UsageError(
            f"plan file is malformed: {exc}",
            "regenerate it with `gpuplan recommend ... --save-plan FILE`",
        ) from None


def plan_from_json(text: str) -> Plan:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"plan file is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return plan_from_dict(data)
