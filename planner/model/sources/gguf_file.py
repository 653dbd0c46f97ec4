"""Read a model's shape and exact tensor bytes from a local GGUF file header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import ModelSpecError, short
from planner.model.sources.fields import check_int
from planner.model.values import ModelSpec, Role, Tensor

# GGUF architecture -> gpuplan family (display and sliding-window layout only: bytes come from
# the file).
GGUF_FAMILIES = {
    "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3moe": "qwen3_moe",
    "gemma2": "gemma2", "gemma3": "gemma3", "phi3": "phi3", "deepseek2": "deepseek_v3",
    "gpt-oss": "gpt_oss", "mistral": "llama",
}  # fmt: skip


# GGUF key -> the config.json field whose plausible range bounds it
_FIELD = {
    "embedding_length": "hidden_size", "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads", "block_count": "num_hidden_layers",
    "attention.key_length": "head_dim", "feed_forward_length": "intermediate_size",
    "context_length": "max_position_embeddings", "expert_count": "num_experts",
    "expert_used_count": "num_experts_per_tok", "attention.sliding_window": "sliding_window",
    "expert_feed_forward_length": "moe_intermediate_size",
}  # fmt: skip


def _role(name: str) -> tuple[Role, bool]:
    """Role of a GGUF tensor from llama.cpp's naming, and whether it is a linear weight."""
    base = name.removesuffix(".weight")
    if name.endswith(".bias"):
        return "bias", False
    if base == "token_embd":
        return "embed", False
    if base == "output":
        return "lm_head", False
    if base.endswith("_norm") or base.endswith(".norm") or "norm" in base.rsplit(".", 1)[-1]:
        return "norm", False
    leaf = base.rsplit(".", 1)[-1]
    if leaf.endswith("_exps"):
        return "expert", True
    if leaf.endswith("_shexp"):
        return "shared_expert", True
    if leaf == "ffn_gate_inp":
        return "router", False
    if leaf in {"attn_k", "attn_v"}:
        return "attn_kv", True
    if leaf == "attn_output":
        return "attn_o", True
    if leaf.startswith("attn_"):
        return "attn_q", True
    if leaf.startswith("ffn_"):
        return "mlp", True
    return "mlp", False


def spec_from_gguf(path: Path, name: str | None = None) -> ModelSpec:
    """A ModelSpec whose tensors (and so parameters and bytes) are exactly the file's."""
    if not path.exists():
        raise ModelSpecError(
            f"GGUF file not found: {short(path)}", "check the path (relative to the current folder)"
        )
    try:
        from gguf import GGUFReader, LlamaFileType

        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, struct/numpy errors on bad files
        raise ModelSpecError(
            f"{short(path)} is not a readable GGUF file ({type(exc).__name__}: {str(exc)[:120]})",
            "check the download is complete (GGUF files start with the magic 'GGUF')",
        ) from None

    def field(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        if f is None:
            return default
        value = f.contents()
        return value

    arch = field("general.architecture")
    if not isinstance(arch, str):
        raise ModelSpecError(f"{short(path)}: GGUF header has no general.architecture")

    where = f"{short(path)} (GGUF header)"

    def need(key: str) -> int:
        value = field(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer arrays (e.g. head_count_kv): take the largest
            value = max(value) if value and all(isinstance(v, int) for v in value) else None
        if not isinstance(value, int) or value <= 0:
            raise ModelSpecError(f"{where}: lacks a valid '{arch}.{key}'")
        return check_int(value, f"{arch}.{key}", where, limit_key=_FIELD.get(key))

    def opt(key: str, default: int = 0) -> int:
        """An optional header integer, bounded like the config.json field it mirrors."""
        value = field(f"{arch}.{key}")
        if value is None or value == 0:
            return default
        if isinstance(value, list):  # per-layer arrays: the widest layer
            if not value or not all(isinstance(v, int) for v in value):
                raise ModelSpecError(f"{where}: '{arch}.{key}' must hold integers")
            value = max(value)
        return check_int(value, f"{arch}.{key}", where, minimum=0, limit_key=_FIELD.get(key))

    expert_count = opt("expert_count")
    expert_used = opt("expert_used_count")
    if expert_used > expert_count:
        raise ModelSpecError(f"{where}: expert_used_count exceeds expert_count")
    tensors = []
    for t in reader.tensors:
        role, linear = _role(t.name)
        # GGUF lists dimensions fastest-first; reverse to PyTorch's (out, in) order.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        frac = (expert_used / expert_count) if role == "expert" and expert_count else 1.0
        tensors.append(
            Tensor(
                t.name,
                shape,
                role,
                linear=linear,
                moe_fraction=frac,
                dtype=f"gguf:{t.tensor_type.name}",
                nbytes=int(t.n_bytes),
            )
        )
    hidden = need("embedding_length")
    heads = need("attention.head_count")
    embd = next((t for t in tensors if t.role == "embed"), None)
    vocab = embd.shape[0] if embd else len(field("tokenizer.ggml.tokens", []) or []) or 1
    head_dim = opt("attention.key_length", hidden // heads)
    if head_dim <= 0:
        raise ModelSpecError(f"{where}: embedding_length is smaller than the head count")
    file_type_raw = field("general.file_type")
    try:
        file_type = LlamaFileType(file_type_raw).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        file_type = f"file_type {file_type_raw}"
    layers = need("block_count")
    if len(tensors) > 1_000_000:
        raise ModelSpecError(f"{where}: {len(tensors):,} tensors is implausible")
    family = GGUF_FAMILIES.get(arch, arch)
    window = opt("attention.sliding_window")
    layer_types: tuple[str, ...] = ()
    if (window and family == "gemma2") or (window and family == "gpt_oss"):
        layer_types = tuple("sliding" if i % 2 == 0 else "full" for i in range(layers))
    elif window and family == "gemma3":
        layer_types = tuple("full" if (i + 1) % 6 == 0 else "sliding" for i in range(layers))
    kv_lora = opt("attention.kv_lora_rank")
    return ModelSpec(
        name=name or str(field("general.name") or path.stem),
        family=family,
        hidden_size=hidden,
        intermediate_size=opt("feed_forward_length"),
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=need("attention.head_count_kv") if not kv_lora else heads,
        head_dim=head_dim,
        vocab_size=vocab,
        tie_word_embeddings=not any(t.role == "lm_head" for t in tensors),
        max_position_embeddings=opt("context_length", 4096),
        dtype="fp16",
        num_experts=expert_count,
        experts_per_token=expert_used,
        moe_intermediate_size=opt("expert_feed_forward_length"),
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=opt("rope.dimension_count") if kv_lora else 0,
        layer_types=layer_types,
        sliding_window=int(window) if layer_types else None,
        source="gguf",
        source_ref=str(path),
        tensors=tuple(tensors),
        gguf_file_type=file_type,
    )
