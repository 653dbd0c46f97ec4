"""Last resort: guess a model's shape from its name ("Llama-4-17B", "7b", "-AWQ", "Q4_K_M").

A guess is a dense Llama-style decoder sized to the parameter count in the name, and it is
labelled as a guess in every output. It is never exact and never silent.
"""

from __future__ import annotations

import re

from planner.model.values import ModelSpec, QuantConfig

# Llama-family shapes by size (hidden, intermediate, heads, kv heads) from the registry's
# Llama 3.x configs; the layer count is then set to hit the named size.
_LADDER = [
    (1.5e9, 2048, 8192, 32, 8),
    (5e9, 3072, 8192, 24, 8),
    (11e9, 4096, 14336, 32, 8),
    (40e9, 5120, 17408, 40, 8),
    (150e9, 8192, 28672, 64, 8),
    (float("inf"), 16384, 53248, 128, 8),
]
_VOCAB = 128256

_SIZE = re.compile(r"(?<![\w.])(?:(\d+)x)?(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.I)
_ACTIVE = re.compile(r"-a(\d+(?:\.\d+)?)b\b", re.I)
_QUANT_TOKENS = [
    (re.compile(r"awq", re.I), "awq"),
    (re.compile(r"gptq", re.I), "gptq"),
    (re.compile(r"nvfp4|[-_]fp4\b", re.I), "nvfp4"),
    (re.compile(r"mxfp4", re.I), "mxfp4"),
    (re.compile(r"fp8", re.I), "fp8"),
    (re.compile(r"w8a8|int8", re.I), "int8"),
    (re.compile(r"q4_k_m", re.I), "q4_k_m"),
    (re.compile(r"q5_k_m", re.I), "q5_k_m"),
    (re.compile(r"q6_k", re.I), "q6_k"),
    (re.compile(r"q8_0", re.I), "q8_0"),
    (re.compile(r"q4_0", re.I), "q4_0"),
    (re.compile(r"int4|w4a16|4bit", re.I), "awq"),
]


def parse_size(name: str) -> tuple[float, float | None] | None:
    """(total params, active params or None) named in a model id, e.g. '8x7B', '30B-A3B'.

    The lookbehind in ``_SIZE`` skips the active-size token ("A3B"): a letter precedes it.
    """
    base = name.split("/")[-1]
    sizes = list(_SIZE.finditer(base))
    if not sizes:
        return None

    def total(m: re.Match[str]) -> float:
        unit = 1e9 if m.group(3).lower() == "b" else 1e6
        return float(m.group(2)) * unit * (int(m.group(1)) if m.group(1) else 1)

    active = _ACTIVE.search(base)
    return max(total(m) for m in sizes), (float(active.group(1)) * 1e9 if active else None)


def guess_quant(name: str) -> str | None:
    for pattern, fmt in _QUANT_TOKENS:
        if pattern.search(name):
            return fmt
    return None


def guess_spec(name: str) -> ModelSpec | None:
    """A labelled, approximate ModelSpec from the name, or None when no size is named."""
    size = parse_size(name)
    if size is None:
        return None
    total, active = size
    _, hidden, inter, heads, kv = next(row for row in _LADDER if total <= row[0])
    per_layer = 2 * hidden * hidden + 2 * hidden * (kv * hidden // heads) + 3 * hidden * inter
    layers = max(1, round((total - 2 * _VOCAB * hidden) / per_layer))
    quant = guess_quant(name)
    notes = [
        f"GUESS: no config for '{name}'; shape guessed from the size in its name "
        f"({total / 1e9:g}B) as a dense Llama-style model. Pass --config or a Hugging Face id "
        "for exact figures."
    ]
    if active is not None:
        notes.append(
            f"the name suggests a mixture of experts with ~{active / 1e9:g}B active; "
            "the guess is dense, so speed estimates will be pessimistic"
        )
    if re.search(r"distil", name, re.I):
        notes.append("'distill' models take their base model's shape: the size in the name is used")
    return ModelSpec(
        name=name, family="llama", hidden_size=hidden, intermediate_size=inter, num_layers=layers,
        num_attention_heads=heads, num_kv_heads=kv, head_dim=hidden // heads, vocab_size=_VOCAB,
        tie_word_embeddings=False, max_position_embeddings=131072, dtype="bf16",
        quant=QuantConfig(quant, source="name") if quant else None,
        source="guess", source_ref=name, is_guess=True, notes=tuple(notes),
    )  # fmt: skip
