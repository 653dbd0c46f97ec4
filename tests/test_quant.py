"""Weight bytes per quantization format, against hand derivations and published sizes."""

from __future__ import annotations

import pytest

from planner.errors import UsageError
from planner.model.footprint import estimate_footprint
from planner.model.sources import find_registry_entry, load_model_spec, spec_from_registry


def fp_of(name: str, quant: str | None = None):
    return estimate_footprint(spec_from_registry(find_registry_entry(name)), quant)


def test_awq_int4_llama_8b_hand_derived():
    # 6,979,321,856 linear weights: int4 (/2) + qzeros (/128/2) + fp16 scales (/128*2);
    # embeddings + lm_head (1,050,673,152) and norms (266,240) in fp16.
    fp = fp_of("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4")
    assert fp.quant_format == "awq"
    assert fp.weight_bytes == 3489660928 + 27262976 + 109051904 + 2101346304 + 532480


def test_gptq_int4_qwen25_7b_hand_derived():
    # 6,525,288,448 linear weights: int4 + qzeros + fp16 scales per 128 + int32 g_idx per
    # input column (40,448 a layer); q/k/v biases, norms and embeddings in fp16.
    fp = fp_of("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4")
    assert fp.weight_bytes == 3262644224 + 25489408 + 101957632 + 4530176 + 2180656128


def test_fp8_per_channel_70b_matches_hub_dtype_breakdown():
    # A Llama-70B FP8 checkpoint's HF dtype breakdown {"BF16": 2109382656, "F8_E4M3":
    # 68451041280} (code index file 27353611740): bf16 = embeddings + norms + channel scales.
    fp = fp_of("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic")
    assert fp.weight_bytes_by_dtype == {"bf16": 2109382656 * 2, "fp8": 68451041280}


def test_mxfp4_gpt_oss_matches_published_index_total_size():
    assert fp_of("openai/gpt-oss-20b").weight_bytes == 13761264768
    assert fp_of("openai/gpt-oss-120b").weight_bytes == 65248815744


def test_footprint_sizes_mxfp4_experts_as_loaded_like_recommend():
    """A new-user sweep: `footprint gpt-oss-120b --context 131072` showed the 60.77 GiB
    checkpoint and one request fitting an 80 GB card, where recommend (and vLLM, issue 11)
    refuse it with the 66.2 GiB the repacked experts take. The table's weights are as loaded,
    the checkpoint line stays the checkpoint's, and a note says which is which."""
    fp = fp_of("openai/gpt-oss-120b")
    assert fp.weight_bytes == 65248815744
    assert round(fp.per_tp[0].weight_bytes_per_gpu / 2**30, 1) == 66.2  # recommend's figure
    for row in fp.per_tp:
        assert row.weight_bytes_per_gpu > fp.weight_bytes / row.tp * 1.05
    assert any("repacks the mxfp4 experts" in n for n in fp.notes)
    dense = fp_of("meta-llama/Llama-3.1-8B-Instruct")
    assert dense.per_tp[0].weight_bytes_per_gpu == dense.weight_bytes
    assert not any("repacks" in n for n in dense.notes)


def test_nvfp4_llama_70b_hand_derived():
    # 68,451,041,280 linear weights: fp4 (/2) + fp8 scale per 16 + two fp32 scalars per linear
    # (560 linears); embeddings, lm_head (excluded) and norms in bf16.
    fp = fp_of("nvidia/Llama-3.3-70B-Instruct-FP4")
    assert fp.weight_bytes == 34225520640 + 4278190080 + 560 * 8 + 2102665216 * 2


def test_fp8_block_scales_count():
    # Qwen3-8B-FP8: 128x128 fp32 block scales; q_proj 4096x4096 has 32*32 = 1024 of them.
    fp = fp_of("Qwen/Qwen3-8B-FP8")
    linear = 8190735360 - 2 * 151936 * 4096 - 36 * (2 * 4096 + 2 * 128) - 4096
    assert fp.weight_bytes_by_dtype["fp8"] == linear
    per_layer = 32 * 32 + 2 * (8 * 32) + 32 * 32 + 3 * (96 * 32)
    assert fp.weight_bytes_by_dtype["fp32"] == 36 * per_layer * 4


def test_online_fp8_on_bf16_model():
    fp = fp_of("meta-llama/Llama-3.1-8B-Instruct", "fp8")
    # one fp32 scale per linear tensor (7 per layer); embeddings and lm_head stay bf16
    assert fp.weight_bytes_by_dtype == {
        "bf16": (1050673152 + 266240) * 2,
        "fp32": 224 * 4,
        "fp8": 6979321856,
    }


def test_gguf_q8_0_hand_derived():
    # Q8_0: 34 bytes per 32 values on every 2-D tensor; 1-D norms in F32.
    fp = fp_of("meta-llama/Llama-3.1-8B-Instruct", "q8_0")
    assert fp.weight_bytes == (8030261248 - 266240) // 32 * 34 + 266240 * 4


def test_gguf_q4_k_m_estimate_close_to_published_file():
    # Qwen2.5-7B-Instruct Q4_K_M file is 4,683,074,336 bytes (code index file 60749537547,
    # a Hub siblings listing); the file also holds the tokenizer and metadata.
    fp = fp_of("Qwen/Qwen2.5-7B-Instruct", "q4_k_m")
    assert abs(fp.weight_bytes - 4683074336) / 4683074336 < 0.01


def test_unknown_format_lists_valid_ones():
    with pytest.raises(UsageError) as err:
        fp_of("meta-llama/Llama-3.1-8B-Instruct", "int3")
    assert "awq" in (err.value.hint or "") and "nvfp4" in (err.value.hint or "")


def test_prequantized_checkpoint_refuses_other_format():
    with pytest.raises(UsageError, match="pre-quantized awq"):
        fp_of("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "fp8")


def test_mxfp4_on_dense_model_is_refused():
    with pytest.raises(UsageError, match="MoE experts only"):
        fp_of("meta-llama/Llama-3.1-8B-Instruct", "mxfp4")


def test_format_aliases():
    assert fp_of("meta-llama/Llama-3.1-8B-Instruct", "INT4").quant_format == "awq"
    assert fp_of("meta-llama/Llama-3.1-8B-Instruct", "bfloat16").quant_format == "bf16"


def test_guess_from_name_carries_quant_and_label():
    spec = load_model_spec("SomeOrg-Coder-7B-Instruct-AWQ")
    fp = estimate_footprint(spec)
    assert spec.is_guess and fp.quant_format == "awq"
    assert any(n.startswith("GUESS") for n in fp.notes)
    assert 6.5e9 < fp.total_params < 7.5e9
