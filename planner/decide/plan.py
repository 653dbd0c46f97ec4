"""The Plan: the one value every later stage (infrastructure code, deploy) consumes.

A Plan names the chosen offer, the parallel layout, the exact vLLM arguments, the estimates and
the reasons. It serialises to JSON and loads back equal (schema ``gpuplan.plan/1``)."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from typing import Any

from planner.errors import UsageError, short
from planner.offers.offer import Offer

PLAN_SCHEMA = "gpuplan.plan/1"
# No machine sold has more GPUs (8 is the usual top; 16 on a few); a bound, not a fact.
MAX_GPUS_PER_MACHINE = 64


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
    # True when no single machine serves an interactive load (the KV cache of `concurrency`
    # full-context requests, or the service level at that many streams) and the ranking was
    # redone with identical machines that each take a share of the streams (objective.py).
    # Written to JSON only when True, so plans of loads one machine serves read as before.
    stream_replicas: bool = field(default=False, metadata={"omit_default": True})
    # The user's --spread: rank identical machines sharing an interactive load's streams with
    # the one-machine plans from the start (stream_replicas then says the ranking did).
    spread: bool = field(default=False, metadata={"omit_default": True})
    # An offline job's size (batch workload): the plans say how long it runs and what it
    # costs; with `deadline_hours` it is a throughput target (settings.Settings.need).
    job_requests: int | None = field(default=None, metadata={"omit_default": True})
    deadline_hours: float | None = field(default=None, metadata={"omit_default": True})


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
    # An offline job of Need.job_requests requests: hours at the aggregate speed, and what they
    # cost at usd_per_hour (monthly rentals bill whole months: see monthly_commitment_usd).
    job_hours: float | None = field(default=None, metadata={"omit_default": True})
    job_usd: float | None = field(default=None, metadata={"omit_default": True})
    # One replica's weights over all its GPUs, when weights_gib_per_gpu x GPUs is not that:
    # data-parallel replicas of an MoE model share its routed experts (the Hub download and
    # the disk are sized by it).
    model_weights_gib: float | None = field(default=None, metadata={"omit_default": True})

    def replica_weights_gib(self, layout: Layout) -> float:
        """The weights one replica of ``layout`` downloads and loads: model_weights_gib when
        data-parallel replicas share MoE experts, else the per-GPU weights over its GPUs."""
        if self.model_weights_gib is not None:
            return self.model_weights_gib
        return self.weights_gib_per_gpu * layout.tp * layout.pp


# vLLM's flag that runs code from the model's repository (planbuild writes it for the models
# that need it; infra refuses to write the project unless the user allows it)
TRUST_REMOTE_CODE = "--trust-remote-code"


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

    @property
    def runs_remote_code(self) -> bool:
        """vLLM runs code from the model's repository (TRUST_REMOTE_CODE)."""
        return TRUST_REMOTE_CODE in self.vllm_args

    @property
    def revision(self) -> str | None:
        """The Hub commit vLLM serves (``--revision``), or None: the repository's latest."""
        args = self.vllm_args
        return args[args.index("--revision") + 1] if "--revision" in args[:-1] else None

    @property
    def machines(self) -> int:
        """Machines rented: the nodes of one replica times the replicas."""
        return self.layout.nodes * self.estimate.replicas

    def rented(self) -> str:
        """What is rented, short: '37 x gcp a2-ultragpu-1g', or the one offer."""
        many = f"{self.machines} x " if self.machines > 1 else ""
        return f"{many}{self.offer.provider} {self.offer.instance_type}"

    def offer_label(self) -> str:
        """What is rented, for one line: '37 x gcp a2-ultragpu-1g (1x a100-80gb-sxm, us-east4)'."""
        o = self.offer
        return f"{self.rented()} ({o.gpu_count}x {o.gpu}, {o.region})"


@cache
def _hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types: resolving evaluates each annotation's text, which
    cost more than the rest of writing ten plans as JSON when done per value."""
    return typing.get_type_hints(cls)


def _to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        out = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("omit_default") and item == f.default:
                continue
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


def need_to_dict(need: Need) -> dict[str, Any]:
    """A Need's fields by name (values as they are), without those written only when set."""
    return {
        f.name: getattr(need, f.name)
        for f in fields(need)
        if not (f.metadata.get("omit_default") and getattr(need, f.name) == f.default)
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return _to_jsonable(plan)


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, sort_keys=True) + "\n"


class _Bad(Exception):
    """A plan-file value of the wrong type; ``field`` is its dotted path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _not_finite(path: str, value: float) -> float:
    raise _Bad(path, f"must be a finite number, got {value}")


def _from_jsonable(cls: Any, data: Any, where: str = "") -> Any:
    """``cls`` from a JSON object, every value checked against its declared type; unknown and
    missing fields are errors (a plan file is gpuplan's own output: anything else is tampering
    or corruption)."""
    if not isinstance(data, dict):
        raise _Bad(where or "plan", "must be a JSON object")
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise _Bad(f"{where}{short(unknown[0], 40)}", "is not a field gpuplan writes")
    kwargs = {}
    for name, f in known.items():
        path = f"{where}{name}"
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise _Bad(path, "is missing")
            continue
        kwargs[name] = _convert(hints[name], data[name], path)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(inner[0], value, path)
    if value is None and tp is not Any:
        raise _Bad(path, "must not be null")
    if origin is tuple:
        if not isinstance(value, list):
            raise _Bad(path, "must be a list")
        inner = typing.get_args(tp)[0]
        return tuple(_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _Bad(path, "must be a JSON object")
        return value
    if is_dataclass(tp):
        return _from_jsonable(tp, value, path + ".")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(path, f"must be a number, got {short(repr(value), 40)}")
        try:
            return float(value) if math.isfinite(value) else _not_finite(path, value)
        except OverflowError:  # an integer no float holds
            raise _Bad(
                path, f"must be a finite number, got a {len(str(value))}-digit integer"
            ) from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(path, f"must be an integer, got {short(repr(value), 40)}")
        return value
    if tp is bool and not isinstance(value, bool):
        raise _Bad(path, f"must be true or false, got {short(repr(value), 40)}")
    if tp is str and not isinstance(value, str):
        raise _Bad(path, f"must be a string, got {short(repr(value), 40)}")
    return value


def _check_values(plan: Plan) -> None:
    """Ranges a well-typed plan must still respect (the rest is checked against the catalog
    and the model by the use case that writes from it)."""
    for name in ("tp", "pp", "dp", "nodes"):
        if not 1 <= getattr(plan.layout, name) <= MAX_GPUS_PER_MACHINE:
            raise _Bad(
                f"layout.{name}",
                f"must be 1 to {MAX_GPUS_PER_MACHINE}, got {getattr(plan.layout, name)}",
            )
    o = plan.offer
    if not 1 <= o.gpu_count <= MAX_GPUS_PER_MACHINE:
        raise _Bad("offer.gpu_count", f"must be 1 to {MAX_GPUS_PER_MACHINE}, got {o.gpu_count}")
    if o.price_usd_per_hour <= 0:
        raise _Bad("offer.price_usd_per_hour", f"must be positive, got {o.price_usd_per_hour}")
    if o.spot_price_usd_per_hour is not None and o.spot_price_usd_per_hour <= 0:
        raise _Bad("offer.spot_price_usd_per_hour", "must be positive")
    if o.gpu_memory_gb <= 0:
        raise _Bad("offer.gpu_memory_gb", "must be positive")
    if plan.estimate.usd_per_hour <= 0:
        raise _Bad("estimate.usd_per_hour", f"must be positive, got {plan.estimate.usd_per_hour}")
    if not 0 < plan.need.gpu_memory_utilization <= 1:
        raise _Bad("need.gpu_memory_utilization", "must be in (0, 1]")
    if not plan.model.strip():
        raise _Bad("model", "must not be empty")


def plan_from_dict(data: Any) -> Plan:
    """Load a Plan; a malformed file or one from another schema version is a usage error that
    names the offending field."""
    if not isinstance(data, dict):
        raise UsageError("plan file is not a JSON object")
    schema = data.get("schema")
    if schema != PLAN_SCHEMA:
        raise UsageError(
            f"plan file has schema {short(repr(schema), 40)}, this gpuplan reads {PLAN_SCHEMA!r}",
            "regenerate it with `gpuplan recommend ... --save-plan FILE`",
        )
    try:
        plan = _from_jsonable(Plan, data)
        _check_values(plan)
        return plan
    except _Bad as exc:
        raise UsageError(
            f"plan file: field '{exc.field}' {exc.problem}",
            "regenerate it with `gpuplan recommend ... --save-plan FILE`",
        ) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise UsageError(
            f"plan file is malformed: {short(exc, 120)}",
            "regenerate it with `gpuplan recommend ... --save-plan FILE`",
        ) from None


def plan_from_json(text: str) -> Plan:
    try:
        data = json.loads(text)
    except RecursionError:
        raise UsageError("plan file is nested too deeply to be a plan") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"plan file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            "save the plan again with `gpuplan recommend ... --save-plan FILE`",
        ) from None
    return plan_from_dict(data)
