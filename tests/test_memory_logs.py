"""Memory never over-promises: on every published vLLM start-up log with its settings, the KV
cache the planner leaves is at most what vLLM found, and every logged refusal is refused."""

from __future__ import annotations

import pytest

from planner.decide.plan import Need
from planner.decide.rank import candidates_for, recommend
from planner.errors import NoFeasibleOfferError
from planner.model.sources import load_model_spec
from planner.offers.gpus import gpu_table
from tests.memory_logs import check, points
from tests.test_recommend import offer


@pytest.mark.parametrize("point", points(), ids=lambda p: p["id"])
def test_no_log_is_over_promised(point):
    c = check(point)
    assert not c.over_promised, (
        f"{point['id']}: predicted {c.predicted_kv_gib:.2f} GiB KV, logged "
        f"{c.logged_kv_gib}, vLLM started={point['started']}, planner refused={c.refused}"
    )


@pytest.mark.parametrize(("context", "concurrency", "util"), [(131072, 1, 0.95), (32768, 3, 0.9)])
def test_gpt_oss_120b_on_one_h100_is_refused_where_vllm_refused(context, concurrency, util):
    cands = candidates_for(load_model_spec("gpt-oss-120b"), None)
    need = Need(context=context, concurrency=concurrency, gpu_memory_utilization=util)
    with pytest.raises(NoFeasibleOfferError, match="does not fit"):
        recommend(cands, [offer("h100-sxm")], need)
    # Two H100s hold it: the refusal is about memory, not a rule against the model.
    assert recommend(cands, [offer("h100-sxm", 2)], need).plans


def test_loaded_mxfp4_weights_exceed_the_checkpoint():
    plan = recommend(
        candidates_for(load_model_spec("gpt-oss-120b"), None), [offer("h100-sxm", 2)], Need()
    ).plans[0]
    cand = candidates_for(load_model_spec("gpt-oss-120b"), None)[0]
    checkpoint_gib = cand.weights.served / 2**30 / 2
    assert plan.estimate.weights_gib_per_gpu > checkpoint_gib * 1.05


def test_cards_are_sized_at_their_real_usable_memory():
    table = gpu_table()
    assert table["t4"].usable_memory_bytes < 15.9e9 < 16e9  # a T4 has ~15.8e9, not 16e9
    assert table["h100-sxm"].usable_memory_bytes == int(79.11 * 2**30)  # the lower logged total
    unlogged = table["rtx-a6000"]  # ECC on or off on a rented host: not known
    assert unlogged.usable_memory_gib is None
    assert unlogged.usable_memory_bytes == int(48e9 * 0.98)
    # HBM cards are sized in GiB: an H100 PCIe holds what an H100 SXM does, not 0.98 x 80e9
    assert table["h100-pcie"].usable_memory_bytes > 79 * 2**30 > 80e9


def test_multimodal_profile_holds_the_encoder_budget_and_gemma3_its_scaled_rope_cache():
    """vLLM's profile run keeps max(max_num_batched_tokens, tokens per item) vision embeddings
    through the language model's dummy run, and Gemma 3 loads a RoPE cache of 8x its context."""
    from planner.model.footprint import overhead_bytes
    from planner.model.vision import encoder_output_bytes

    qwen = load_model_spec("Qwen/Qwen3-VL-8B-Instruct")  # one 16,384-token image, 4 widths
    assert encoder_output_bytes(qwen, 2048) == 16384 * 4096 * 2 * 4
    gemma = load_model_spec("google/gemma-3-27b-it")  # 32 images of 256 tokens at 8192
    assert encoder_output_bytes(gemma, 8192) == 8192 * 5376 * 2
    assert gemma.scaled_rope_cache_bytes == 131072 * 9 * 128 * 4
    text_only = overhead_bytes(load_model_spec("Qwen/Qwen3-8B"), 1)
    assert overhead_bytes(qwen, 1) - text_only >= encoder_output_bytes(qwen, 2048)
