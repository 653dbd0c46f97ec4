"""Shape results for people (rich tables) and for programs (JSON with a versioned schema).

Nothing here prints: the CLI prints what these functions return.
"""

from __future__ import annotations

from typing import Any

from planner.errors import short
from planner.model.footprint import GIB
from planner.model.quant import FORMATS
from planner.model.values import Footprint, TPFootprint

FOOTPRINT_SCHEMA = "gpuplan.footprint/1"

# Card classes of the footprint table. Capacity is the marketed size in decimal GB, which is at
# or below what torch reports for every card of the class (A10G 23028 MiB, L4 23034 MiB,
# RTX 4090 25250627584 B, A100-40GB 40960 MiB, L40S 46068 MiB, H100 81559 MiB, H200 143771 MiB),
# so a fit here is a fit on the real card.
CARD_CLASSES: dict[str, int] = {
    "24GB": 24 * 10**9, "40GB": 40 * 10**9, "48GB": 48 * 10**9,
    "80GB": 80 * 10**9, "141GB": 141 * 10**9,
}  # fmt: skip


def max_concurrency_by_card(fp: Footprint, t: TPFootprint) -> dict[str, int]:
    return {
        label: t.max_concurrency(capacity, fp.gpu_memory_utilization)
        for label, capacity in CARD_CLASSES.items()
    }


def gib(n: int) -> float:
    return round(n / GIB, 3)


def footprint_to_dict(fp: Footprint) -> dict[str, Any]:
    """The documented JSON form of a Footprint (see README, 'JSON output')."""
    m = fp.model
    fmt = FORMATS.get(fp.quant_format)
    return {
        "schema": FOOTPRINT_SCHEMA,
        "model": {
            "name": m.name, "family": m.family, "source": m.source, "source_ref": m.source_ref,
            "is_guess": m.is_guess, "published_params": m.published_params,
            "published_params_match": published_match(fp),
            "checkpoint_total_size_bytes": m.checkpoint_total_size,
        },
        "quantization": {
            "format": fp.quant_format,
            "description": fmt.description if fmt else fp.model.gguf_file_type,
            "vllm_quantization": fmt.vllm_quantization if fmt else None,
            "quality_note": fmt.quality_note if fmt else None,
        },
        "kv_cache_dtype": fp.kv_cache_dtype,
        "context_tokens": fp.context_tokens,
        "concurrency": fp.concurrency,
        "gpu_memory_utilization": fp.gpu_memory_utilization,
        "parameters": {"total": fp.total_params, "active": fp.active_params, "mtp": fp.mtp_params},
        "weights": {"bytes": fp.weight_bytes, "gib": gib(fp.weight_bytes),
                    "by_dtype_bytes": fp.weight_bytes_by_dtype},
        # bytes_per_request includes state_bytes_per_request (hybrid models' fixed recurrent
        # state, 0 otherwise); the state and layer counts are additive fields of schema /1.
        "kv_cache": {"bytes_per_token": fp.kv_bytes_per_token,
                     "bytes_per_request": fp.kv_bytes_per_request,
                     "state_bytes_per_request": fp.state_bytes_per_request,
                     "attention_layers": m.attention_layer_count,
                     "recurrent_layers": m.recurrent_layer_count},
        "card_classes_bytes": dict(CARD_CLASSES),
        "tensor_parallel": [
            {
                "tp": t.tp, "valid": t.valid, "reason": t.reason,
                "per_gpu_bytes": {
                    "weights": t.weight_bytes_per_gpu, "kv_cache": t.kv_bytes_per_gpu,
                    "overhead": t.overhead_bytes_per_gpu, "total": t.total_bytes_per_gpu,
                },
                "kv_bytes_per_token_per_gpu": t.kv_bytes_per_token_per_gpu,
                "state_bytes_per_request_per_gpu": t.state_bytes_per_request_per_gpu,
                "max_concurrency": max_concurrency_by_card(fp, t),
            }
            for t in fp.per_tp
        ],
        "notes": list(fp.notes),
    }  # fmt: skip


def published_match(fp: Footprint) -> str:
    """How the computed count compares with the published one."""
    published = fp.model.published_params
    if published is None:
        return "no published count"
    if fp.total_params == published:
        return "exact"
    if fp.stored_elements == published:
        return (
            f"exact; the published count includes {fp.stored_elements - fp.total_params:,} "
            "stored quantization-scale elements"
        )
    return f"differs by {fp.total_params - published:+,}"


def footprint_tables(fp: Footprint) -> list[Any]:
    """Rich renderables: a summary and a per-TP table."""
    from rich.table import Table
    from rich.text import Text

    m = fp.model
    fmt = FORMATS.get(fp.quant_format)
    title = f"{short(m.name, 120)}  [{m.source}]" + ("  (GUESS - not exact)" if m.is_guess else "")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    published = ""
    if m.published_params:
        published = f"  (published {m.published_params:,}: {published_match(fp)})"
    summary.add_row(
        "parameters", f"{fp.total_params:,} total, {fp.active_params:,} active" + published
    )
    quant_desc = fmt.description if fmt else (m.gguf_file_type or "")
    summary.add_row("quantization", f"{fp.quant_format} - {quant_desc}")
    weights = f"{fp.weight_bytes:,} B = {fp.weight_bytes / GIB:.2f} GiB"
    if m.checkpoint_total_size:
        weights += f"  (checkpoint index total_size {m.checkpoint_total_size:,} B)"
    summary.add_row("weights", weights)
    summary.add_row(
        "KV cache",
        f"{fp.kv_bytes_per_token:,} B/token over {m.attention_layer_count} attention layers "
        f"({fp.kv_cache_dtype}); "
        f"{fp.kv_bytes_per_request / GIB:.2f} GiB per {fp.context_tokens:,}-token request",
    )
    if fp.state_bytes_per_request:
        summary.add_row(
            "per-sequence state",
            f"{fp.state_bytes_per_request:,} B = {fp.state_bytes_per_request / GIB:.3f} GiB per "
            f"concurrent request ({m.recurrent_layer_count} recurrent layers; fixed, does not "
            f"grow with context; included in the KV figures)",
        )
    summary.add_row(
        "budget",
        f"gpu_memory_utilization {fp.gpu_memory_utilization}, concurrency {fp.concurrency}",
    )
    table = Table(
        title="Per-GPU memory (GiB) and the most concurrent requests that fit", title_justify="left"
    )
    for col in ("TP", "weights", "KV cache", "overhead", "total"):
        table.add_column(col, justify="right")
    for label in CARD_CLASSES:
        table.add_column(label, justify="right")
    for t in fp.per_tp:
        if not t.valid:
            table.add_row(
                str(t.tp),
                Text(f"not valid: {t.reason}", style="dim"),
                *[""] * (3 + len(CARD_CLASSES)),
            )
            continue
        fits = [
            str(n) if n else Text("-", style="red") for n in max_concurrency_by_card(fp, t).values()
        ]
        table.add_row(
            str(t.tp),
            f"{t.weight_bytes_per_gpu / GIB:.2f}",
            f"{t.kv_bytes_per_gpu / GIB:.2f}",
            f"{t.overhead_bytes_per_gpu / GIB:.2f}",
            f"{t.total_bytes_per_gpu / GIB:.2f}",
            *fits,
        )
    out: list[Any] = [Text(title, style="bold red" if m.is_guess else "bold"), summary, table]
    for note in fp.notes:
        out.append(Text(f"note: {note}", style="yellow" if note.startswith("GUESS") else "dim"))
    return out


RECOMMENDATION_SCHEMA = "gpuplan.recommendation/1"
_REJECTED_FIELDS = ("provider", "instance_type", "region", "gpu", "gpu_count")


def recommendation_to_dict(
    ranking: Any, top: int, sources: dict[str, Any], suggestion: Any = None, spread: Any = None
) -> dict[str, Any]:
    """The documented JSON form of a recommendation (see README, 'recommend JSON');
    ``suggestion``: the app's cheaper near-lossless quantization, if any; ``spread``: its
    cheaper identical machines sharing the streams, if any."""
    from dataclasses import asdict

    from planner.decide.plan import need_to_dict, plan_to_dict
    from planner.present.suggestions import spread_to_dict, suggestion_to_dict

    plans = ranking.plans[:top]  # the ranking builds only the Plans shown
    first = plans[0] if plans else None
    rejected = ranking.rejected  # read from the offer table's columns: no Offer built
    return {
        "schema": RECOMMENDATION_SCHEMA,
        "model": first.base_model if first else None,
        "need": need_to_dict(first.need) if first else None,
        "plans": [plan_to_dict(p) for p in plans],
        "feasible_offers": len(ranking.plans),
        "rejected": [
            {**dict(zip(_REJECTED_FIELDS, values, strict=True)), "reason": reason}
            for values, reason in zip(rejected.fields(_REJECTED_FIELDS), rejected.reasons,
                                      strict=True)
        ],
        "quantization_tradeoffs": quant_tradeoffs(ranking),
        "cheaper_quantization": suggestion_to_dict(suggestion),
        "cheaper_spread": spread_to_dict(spread),
        "catalog": {name: asdict(s) for name, s in sources.items()},
    }  # fmt: skip


def quant_tradeoffs(ranking: Any) -> list[dict[str, Any]]:
    """Per candidate format: its own best plan over all offers, and the expected quality cost."""
    out = []
    for cand, best in zip(ranking.candidates, ranking.best_per_candidate, strict=False):
        e = best.estimate if best else None
        out.append({
            "format": cand.fmt.name, "checkpoint": cand.spec.name,
            "weights_gib": round(cand.weights.served / GIB, 2),
            "quality_note": cand.fmt.quality_note,
            "best_offer": best.rented() if best else None,
            "best_objective_value": best.objective_value if best else None,
            "best_usd_per_million_output_tokens": e.usd_per_million_output_tokens if e else None,
            "best_aggregate_output_tokens_per_s": e.aggregate_output_tokens_per_s if e else None,
        })  # fmt: skip
    return out


# Columns of the plans table dropped first when the terminal is narrow (JSON keeps them all).
_DROP_ORDER = ("tok/s all", "TTFT ms", "age", "region", "free", "layout", "$/1M out")


def fit_columns(columns: list[str], rows: list[list[str]], width: int | None) -> list[int]:
    """Indexes of the columns to show so that the table fits ``width`` characters (None: all),
    dropping the least needed first."""
    keep = list(range(len(columns)))
    if width is None:
        return keep

    def total() -> int:  # rich's box: one border plus a space either side of each cell
        return 1 + sum(3 + max(len(columns[i]), *(len(r[i]) for r in rows)) for i in keep)

    for name in _DROP_ORDER:
        if total() <= width:
            break
        keep.remove(columns.index(name))
    return keep


def recommendation_tables(
    ranking: Any,
    top: int,
    explain: bool,
    width: int | None = None,
    suggestion: Any = None,
    spread: Any = None,
    unlevelled: Any = None,
) -> list[Any]:
    """The plans table (columns dropped to fit ``width`` characters), cheaper identical
    machines sharing the streams (``spread``), a cheaper near-lossless quantization
    (``suggestion``), trade-offs, reasons (``unlevelled``: for --explain, the plan without the
    service level and what it misses, app.plan.without_service_level)."""
    from rich.table import Table
    from rich.text import Text

    from planner.decide.load import streams_tokens
    from planner.decide.planbuild import job_duration
    from planner.offers.catalog import STALE_AFTER_DAYS, age_days
    from planner.present.suggestions import spread_line, suggestion_line

    plans = ranking.plans[:top]  # the ranking builds only the Plans shown
    feasible = len(ranking.plans)
    first = plans[0]
    out: list[Any] = []
    if first.model_is_guess:
        out.append(
            Text(
                "GUESS: the model's shape was guessed from its name; figures are approximate",
                style="bold red",
            )
        )
    need = first.need
    title = (
        f"{first.base_model}: {feasible} feasible of {feasible + len(ranking.rejected)}"
        f" offers, by {_objective_label(need)} ({'spot' if need.spot else 'on-demand'}; "
        f"{_load_label(need)}; {need.context}-token context; requests of "
        f"{need.prompt_tokens} in / {need.output_tokens} out). Figures at that load. free = "
        "GiB per GPU left after weights, overhead and KV; tok/s 1 = one stream's speed at that load"
    )
    table = Table(title=title, title_justify="left")
    left = {"provider", "region", "instance", "quant", "layout", "age"}
    columns = ["#", "provider", "region", "instance", "GPUs", "quant", "layout", "free",
               "tok/s 1", "tok/s all", "TTFT ms", "$/h", "$/1M out", "age"]  # fmt: skip
    job = need.job_requests is not None  # an offline job's hours and cost, after $/h
    if job:
        columns[12:12] = ["job time", "job $"]
    rows = []
    for i, p in enumerate(plans, 1):
        e, o = p.estimate, p.offer
        age = age_days(o.fetched_at)
        stale = age is not None and age > STALE_AFTER_DAYS
        age_label = "?" if age is None else f"{age:.0f}d" + (" STALE" if stale else "")
        price = f"{e.usd_per_hour:.2f}" + (" (mo)" if o.billing == "monthly" else "")
        nodes = f"{p.machines}x " if p.machines > 1 else ""
        stream_speed = f"{e.single_stream_tokens_per_s:.0f}" if streams_tokens(p.need) else "-"
        rows.append([
            str(i), o.provider, o.region[:18], o.instance_type[:24],
            f"{nodes}{o.gpu_count}x {o.gpu}", runs_as(p), p.layout.label,
            f"{e.memory_headroom_gib:.1f}", stream_speed,
            f"{e.aggregate_output_tokens_per_s:,.0f}", f"{e.ttft_ms:.0f}", price,
            *([job_duration(e.job_hours), _usd(e.job_usd)] if job else []),
            f"{e.usd_per_million_output_tokens:.3f}", age_label,
        ])  # fmt: skip
    keep = fit_columns(columns, rows, width)
    for i in keep:
        table.add_column(columns[i], justify="left" if columns[i] in left else "right")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    out.append(table)
    if spread is not None:
        out.append(Text(f"cheaper: {spread_line(spread)}", style="bold yellow"))
    if suggestion is not None:
        out.append(Text(f"cheaper: {suggestion_line(suggestion)}", style="bold yellow"))
    if len(ranking.candidates) > 1:
        trade = Table(
            title="Quantization trade-offs (--quant auto): each format's own best offer",
            title_justify="left",
        )
        for c in (
            "format",
            "checkpoint",
            "weights GiB",
            "its best offer",
            "$/1M out",
            "tok/s all",
            "expected quality",
        ):
            trade.add_column(c)
        for t in quant_tradeoffs(ranking):
            best = t["best_usd_per_million_output_tokens"]
            tps = t["best_aggregate_output_tokens_per_s"]
            trade.add_row(
                t["format"],
                t["checkpoint"],
                f"{t['weights_gib']:.1f}",
                t["best_offer"] or "no feasible offer",
                f"{best:.3f}" if best is not None else "-",
                f"{tps:,.0f}" if tps is not None else "-",
                t["quality_note"],
            )
        out.append(trade)
    out.append(Text(f"top plan: vllm serve {' '.join(first.vllm_args)}", style="dim"))
    for note in dict.fromkeys((*getattr(ranking, "notes", ()), *first.notes)):  # each once
        out.append(Text(f"note: {note}", style="yellow"))
    if explain:
        out += explanation(ranking, unlevelled)
    return out  # fmt: skip


def _usd(value: float) -> str:
    """Dollars for a table cell: cents below $10."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def _objective_label(need: Any) -> str:
    from planner.decide.objective import resolved_objective

    label = resolved_objective(need)
    if label != need.objective:  # auto, or the cost of a sized job (its $ per token)
        return f"{label} ({'auto' if need.objective == 'auto' else 'the job cost'})"
    return label


def _level_text(need: Any) -> str:
    """The service level a load is served within ("" for none), with what the per-stream speed
    stands for when an answer is short (load.short_answer_note)."""
    from planner.decide.load import service_level, short_answer_note

    min_tps, max_ttft = service_level(need)
    note = f" ({short})" if (short := short_answer_note(need)) else ""
    level = [f">= {min_tps:g} tok/s per stream{note}"] if min_tps is not None else []
    level += [f"TTFT <= {max_ttft:g} ms"] if max_ttft is not None else []
    return ", ".join(level)


def _load_label(need: Any) -> str:
    """Which load the figures are at (the table says so)."""
    from planner.decide.load import service_level

    if need.deadline_hours:
        return (
            f"batch job of {need.job_requests:,} requests within {need.deadline_hours:g} h: "
            f"target {need.target_output_tokens_per_s:,.0f} output tok/s"
        )
    if need.target_output_tokens_per_s and need.workload == "batch":
        stated = service_level(need) != (None, None)
        return (
            f"offline rate of {need.target_output_tokens_per_s:,.0f} output tok/s, each machine "
            "at its largest batch" + (" (limits you stated apply there)" if stated else "")
        )
    if need.target_output_tokens_per_s:
        within = f", machines sized within {level}" if (level := _level_text(need)) else ""
        return f"target {need.target_output_tokens_per_s:,.0f} output tok/s{within}"
    if need.job_requests:
        room = (
            f", room for {need.concurrency} full-context requests" if need.concurrency > 1 else ""
        )
        return f"batch job of {need.job_requests:,} requests, at saturation{room}"
    if need.workload == "batch":
        return "batch job at saturation"
    served = f" within {level}" if (level := _level_text(need)) else ""
    return f"interactive, {need.concurrency} stream(s) in flight{served}"


def _within_error(plan: Any, need: Any) -> str:
    """When a plan misses the service level by less than the model's error out of sample (README,
    measured accuracy: speed at a stated load about 15-20%, TTFT 30-40%), a note saying so: the
    cheaper plan may well meet it, and a measurement decides."""
    from planner.decide.load import service_level

    min_tps, max_ttft = service_level(need)  # the ranking's level (``plan`` was ranked without)
    e = plan.estimate
    slow = min_tps is not None and e.single_stream_tokens_per_s < min_tps
    late = max_ttft is not None and e.ttft_ms > max_ttft
    if (slow and e.single_stream_tokens_per_s < 0.8 * min_tps) or (
        late and e.ttft_ms > 1.4 * max_ttft
    ):
        return ""  # one limit is missed by more than the estimate's error
    if slow:
        return " (by less than the speed estimate's error, about 20%: measure it)"
    if late:
        return " (by less than the TTFT estimate's error, 30-40%: measure it)"
    return ""


def explanation(ranking: Any, unlevelled: Any = None) -> list[Any]:
    """Why the top plan won, and why the GPUs people usually guess lost (with ratios)."""
    from rich.text import Text

    from planner.decide.objective import resolved_objective
    from planner.decide.rank import best_alternatives

    top = ranking.plans[0]
    e = top.estimate
    lines = [Text("Why this plan", style="bold")]
    lines.append(
        Text(
            f"  {top.rented()}: "
            f"{e.aggregate_output_tokens_per_s:,.0f} output tok/s at batch {e.batch} for "
            f"${e.usd_per_hour:.2f}/h{' in total' if top.machines > 1 else ''} = "
            f"${e.usd_per_million_output_tokens:.3f} per 1M output tokens; "
            + "; ".join(top.reasons)
        )
    )
    if unlevelled is not None:  # the plan without the service level, and what it misses
        plan, why = unlevelled
        lines.append(
            Text(
                f"  the service level decided it: without it {plan.rented()} "
                f"({plan.offer.gpu_count}x {plan.offer.gpu}, {plan.layout.label}, "
                f"{plan.quant_format}) at ${plan.estimate.usd_per_hour:.2f}/h would be the plan, "
                f"but {why}{_within_error(plan, top.need)}; --min-tokens-per-s / --max-ttft "
                "state your own"
            )
        )
    unit = {
        "cost-per-token": "cost per token",
        "cost": "$/h",
        "speed": "throughput",
        "latency": "request latency",
    }[resolved_objective(top.need)]
    for family, plan, why in best_alternatives(ranking):
        if plan is None:
            lines.append(Text(f"  {family}: {why}"))
            continue
        if plan is top:
            lines.append(Text(f"  {family}: this is the top plan"))
            continue
        if resolved_objective(top.need) == "speed":
            ratio = top.estimate.aggregate_output_tokens_per_s / max(
                plan.estimate.aggregate_output_tokens_per_s, 1e-9
            )
            verdict = f"{ratio:.2f}x less throughput than the top plan"
        else:
            ratio = plan.objective_value / top.objective_value if top.objective_value else 0.0
            verdict = f"{ratio:.2f}x the {unit} of the top plan"
        pe = plan.estimate
        lines.append(
            Text(
                f"  best {family}: {plan.rented()} "
                f"({plan.offer.gpu_count}x {plan.offer.gpu}, {plan.layout.label}, "
                f"{plan.quant_format}): ${pe.usd_per_hour:.2f}/h, "
                f"{pe.aggregate_output_tokens_per_s:,.0f} tok/s, "
                f"${pe.usd_per_million_output_tokens:.3f}/1M out: {verdict}"
            )
        )
    return lines


def models_table(rows: list[dict[str, Any]]) -> Any:
    """The embedded registry (rows from app.model.registry_models)."""
    from rich.table import Table

    table = Table(title=f"{len(rows)} models in the embedded registry", title_justify="left")
    for col in ("id", "aliases", "published params", "quantization"):
        table.add_column(col)
    for r in rows:
        params = f"{r['parameters'] / 1e9:.2f}B" if r["parameters"] else "-"
        table.add_row(r["id"], ", ".join(r["aliases"]), params, r["quantization"] or "-")
    return table


def runs_as(plan: Any) -> str:
    """The format as it runs: a bf16 checkpoint on a GPU without bf16 (T4, V100) is served with
    ``--dtype half``, and the table says so rather than "bf16"."""
    args = list(plan.vllm_args)
    if "--dtype" in args and args[args.index("--dtype") + 1 : args.index("--dtype") + 2] == [
        "half"
    ]:
        return f"{plan.quant_format}->fp16" if plan.quant_format == "bf16" else plan.quant_format
    return plan.quant_format
