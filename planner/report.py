"""Shape results for people (rich tables) and for programs (JSON with a versioned schema).

Nothing here prints: the CLI prints what these functions return.
"""

from __future__ import annotations

from typing import Any

from planner.footprint import CARD_CLASSES, GIB
from planner.models import Footprint
from planner.quant import FORMATS

FOOTPRINT_SCHEMA = "gpuplan.footprint/1"


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
        "kv_cache": {"bytes_per_token": fp.kv_bytes_per_token,
                     "bytes_per_request": fp.kv_bytes_per_request},
        "card_classes_bytes": dict(CARD_CLASSES),
        "tensor_parallel": [
            {
                "tp": t.tp, "valid": t.valid, "reason": t.reason,
                "per_gpu_bytes": {
                    "weights": t.weight_bytes_per_gpu, "kv_cache": t.kv_bytes_per_gpu,
                    "overhead": t.overhead_bytes_per_gpu, "total": t.total_bytes_per_gpu,
                },
                "kv_bytes_per_token_per_gpu": t.kv_bytes_per_token_per_gpu,
                "max_concurrency": t.max_concurrency_by_card,
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
    title = f"{m.name}  [{m.source}]" + ("  (GUESS - not exact)" if m.is_guess else "")
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
        f"{fp.kv_bytes_per_token:,} B/token over all layers "
        f"({fp.kv_cache_dtype}); "
        f"{fp.kv_bytes_per_request / GIB:.2f} GiB per {fp.context_tokens:,}-token request",
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
        fits = [str(n) if n else Text("-", style="red") for n in t.max_concurrency_by_card.values()]
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
