"""The lines that say a cheaper plan exists for the same load: a near-lossless quantization
(decide.suggest.QuantSuggestion) and identical machines sharing the streams
(app.plan.SpreadSuggestion); in the recommend table, its JSON, and `generate`'s output."""

from __future__ import annotations

from typing import Any

from planner.model.quant import FORMATS


def suggestion_line(sug: Any) -> str:
    """One line: which near-lossless format serves the load cheaper, where, the figures, and
    the flag that plans it (sug: decide.suggest.QuantSuggestion)."""
    p = sug.plan
    machines = p.machines
    figures = _figures(sug)
    how = sug.quant_flag or f"pass {p.model} as MODEL"
    return (
        f"{p.quant_format} would serve this load on {machines}x {p.offer.provider} "
        f"{p.offer.instance_type} ({p.offer.gpu_count}x {p.offer.gpu}, {p.layout.label}) at "
        f"{figures} (-{sug.saving:.0%}) at near-equal quality: {how} "
        "(or --quant auto to compare every format)"
    )


def _figures(sug: Any, total: str = "") -> str:
    """The compared figures of a suggestion (decide.suggest.Cheaper)."""
    if sug.measure == "usd_per_hour":
        return f"${sug.value:,.2f}/h{total} instead of ${sug.current_value:,.2f}/h"
    return f"${sug.value:,.3f} instead of ${sug.current_value:,.3f} per 1M output tokens"


def spread_line(spread: Any) -> str:
    """One line: which identical machines would share the streams cheaper, the figures, what
    the generated project does about balancing them, and the flag that plans it
    (spread: app.plan.SpreadSuggestion)."""
    sug = spread.cheaper
    p = sug.plan
    balance = (
        "gpuplan generate puts a load balancer in front"
        if spread.balancer
        else f"{p.offer.provider} gets no load balancer: spread the requests over the "
        f"{p.estimate.replicas} endpoints yourself"
    )
    return (
        f"{p.offer_label()} sharing the {p.need.concurrency} streams would serve this load at "
        f"{_figures(sug, ' in total')} (-{sug.saving:.0%}); {balance}; plan it with --spread"
    )


def spread_to_dict(spread: Any) -> dict[str, Any] | None:
    """The `cheaper_spread` field of the recommendation document (None: no suggestion)."""
    if spread is None:
        return None
    from planner.decide.plan import plan_to_dict

    sug = spread.cheaper
    return {
        "machines": sug.plan.machines, "flag": "--spread", **_compared(sug),
        "load_balancer": spread.balancer, "message": spread_line(spread),
        "plan": plan_to_dict(sug.plan),
    }  # fmt: skip


def suggestion_to_dict(sug: Any) -> dict[str, Any] | None:
    """The `cheaper_quantization` field of the recommendation document (None: no suggestion)."""
    if sug is None:
        return None
    from planner.decide.plan import plan_to_dict

    fmt = FORMATS.get(sug.plan.quant_format)
    return {
        "format": sug.plan.quant_format, "checkpoint": sug.plan.model,
        "quant_flag": sug.quant_flag, **_compared(sug),
        "quality_note": fmt.quality_note if fmt else None,
        "message": suggestion_line(sug), "plan": plan_to_dict(sug.plan),
    }  # fmt: skip


def _compared(sug: Any) -> dict[str, Any]:
    """What a suggestion (decide.suggest.Cheaper) compares, and the saving it must reach."""
    from planner.decide.suggest import MIN_SAVING

    return {
        "measure": sug.measure, "value": sug.value, "current_value": sug.current_value,
        "saving_pct": round(sug.saving * 100, 1), "min_saving_pct": round(MIN_SAVING * 100, 1),
    }  # fmt: skip
