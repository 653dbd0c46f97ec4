"""Use cases about a model alone: its footprint, the registry, the GPU table."""

from __future__ import annotations

from typing import Any

from planner.model.values import Footprint
from planner.offers.gpus import GpuSpec
from planner.settings import Settings


def footprint(
    s: Settings,
    *,
    config_path: str | None = None,
    gguf_path: str | None = None,
    from_hub: bool = False,
) -> Footprint:
    """Exact parameters, weights, KV cache and per-GPU memory of the model in ``s``."""
    from planner.model.footprint import estimate_footprint
    from planner.model.sources import load_model_spec

    spec = load_model_spec(
        s.model,
        config_path=config_path,
        gguf_path=gguf_path,
        from_hub=from_hub,
        revision=s.revision,
    )
    return estimate_footprint(
        spec,
        s.quant,
        context=s.context,
        concurrency=s.concurrency,
        kv_cache_dtype=s.kv_cache_dtype,
        gpu_memory_utilization=s.gpu_memory_utilization,
    )


def registry_models() -> list[dict[str, Any]]:
    """The embedded registry, one plain record per model."""
    from planner.model.sources import registry_entries

    return [
        {
            "id": e["id"],
            "aliases": e.get("aliases", []),
            "parameters": (e.get("published") or {}).get("parameter_count"),
            "quantization": (e["config"].get("quantization_config") or {}).get("quant_method")
            or ((e.get("hf_quant_config") or {}).get("quantization") or {}).get("quant_algo"),
            "config_source": e["config_source"],
        }
        for e in registry_entries()
    ]


def gpus() -> list[GpuSpec]:
    """The canonical GPU table."""
    from planner.offers.gpus import gpu_table

    return list(gpu_table().values())
