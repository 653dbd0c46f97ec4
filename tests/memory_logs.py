"""The planner's memory model on published vLLM start-up logs
(planner/decide/data/vllm_memory_logs.json). Used by tests/test_memory_logs.py and
benchmarks/memory_accuracy.py."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from planner.decide.fit import Candidate, _candidate, memory_budget
from planner.model.footprint import default_batched_tokens, default_max_num_seqs
from planner.model.kvcache import kv_bytes_per_request, sliding_prefill_reserve
from planner.model.sources import load_model_spec
from planner.model.sources.hfconfig import parse_config
from planner.offers.gpus import gpu_table

GIB = 1 << 30


@cache
def points() -> list[dict[str, Any]]:
    text = resources.files("planner.decide.data").joinpath("vllm_memory_logs.json").read_text()
    return json.loads(text)["points"]


@dataclass(frozen=True, slots=True)
class Check:
    point: dict[str, Any]
    predicted_kv_gib: float  # what the planner leaves for the KV cache per GPU
    weights_gib: float
    overhead_gib: float
    refused: bool  # the planner would not offer this setup

    @property
    def logged_kv_gib(self) -> float | None:
        return self.point.get("logged_kv_cache_gib")

    @property
    def over_promised(self) -> bool:
        """Predicted more KV cache than vLLM found, or accepted a setup vLLM refused."""
        if not self.point["started"]:
            return not self.refused
        logged = self.logged_kv_gib
        return logged is not None and self.predicted_kv_gib > logged + 0.005


def _cand(point: dict[str, Any]) -> Candidate:
    if "config" in point:
        spec = parse_config(
            point["config"], name=point["model"], source="config", source_ref="inline"
        )
        return _candidate(spec, point["quant"], point["model"])
    if "awq_of" in point:
        return _candidate(load_model_spec(point["awq_of"]), "awq", point["model"])
    return _candidate(load_model_spec(point["model"]), point["quant"], point["model"])


def check(point: dict[str, Any]) -> Check:
    cand = _cand(point)
    gpu = gpu_table()[point["gpu"]]
    total = int(point["gpu_total_gib"] * GIB) if point["gpu_total_gib"] else gpu.usable_memory_bytes
    tokens = point["max_num_batched_tokens"]
    if not tokens and point.get("v0_scheduler"):
        # vLLM V0 without chunked prefill (its default up to 32K context) profiled a whole
        # max_model_len prompt at once.
        ctx = point["max_model_len"] or 0
        tokens = max(ctx, 2048) if ctx <= 32768 else 2048
    tokens = tokens or default_batched_tokens(total, gpu.name)
    seqs = point["max_num_seqs"] or default_max_num_seqs(total, gpu.name)
    tp, pp = point["tp"], point["pp"]
    util = point["gpu_memory_utilization"]
    weights, _, overhead, free = memory_budget(cand, gpu, tp, pp, util, total, seqs, tokens)
    refused = free <= 0
    if point.get("max_model_len"):
        share = math.ceil(cand.spec.num_layers / pp) / cand.spec.num_layers
        per_request = share * kv_bytes_per_request(
            cand.spec, tp, point["kv_cache_dtype"], point["max_model_len"]
        )
        reserve = share * sliding_prefill_reserve(
            cand.spec, tp, point["kv_cache_dtype"], point["max_model_len"], tokens
        )
        refused = refused or free < reserve + point.get("concurrency", 1) * per_request
    return Check(point, free / GIB, weights / GIB, overhead / GIB, refused)
