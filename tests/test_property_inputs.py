"""Property tests: random config.json values and random plan files through the real CLI end
with a usage error (exit 2) or an answer, never an internal error (exit 1).

Runs in-process through click's CliRunner on ``planner.cli.main`` (the same entry point as
``python -m planner.cli``); tests/test_bad_inputs.py runs a subset as real subprocesses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cli import main

LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 16,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": True,
}
# Fields any family may read, plus family switches, so the mutation reaches MoE, MLA, sliding
# windows and hybrid layouts.
KEYS = [
    *sorted(LLAMA),
    "head_dim", "sliding_window", "layer_types", "num_local_experts", "num_experts_per_tok",
    "quantization_config", "text_config", "vision_config", "kv_lora_rank", "q_lora_rank",
    "n_routed_experts", "moe_intermediate_size", "first_k_dense_replace", "n_shared_experts",
    "sliding_window_pattern", "attention_chunk_size", "block_configs", "hybrid_override_pattern",
]  # fmt: skip
FAMILIES = [
    "llama", "mixtral", "qwen3_moe", "deepseek_v3", "gemma3", "gemma2", "gpt_oss", "nemotron_h",
    "qwen3_next", "nemotron-nas", "llama4", "ernie4_5_moe", "nope",
]  # fmt: skip

plausible = st.integers(min_value=1, max_value=70_000)
values = st.one_of(
    plausible,
    plausible,
    plausible,
    st.integers(min_value=-(10**12), max_value=10**15),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**9, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-5, max_value=10**6), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _dump(cfg: dict) -> str:
    # json.dumps writes inf/nan as Infinity/NaN, which Python's json reads back: the parser sees
    # them; a 1e400 literal in a file reads as inf too.
    return json.dumps(cfg)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    family=st.sampled_from(FAMILIES),
    changes=st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=4),
)
def test_random_config_values_exit_0_or_2(tmp_path_factory, family, changes):
    folder = tmp_path_factory.mktemp("cfg")
    cfg = {**LLAMA, "model_type": family, **changes}
    path = Path(folder) / "config.json"
    path.write_text(_dump(cfg))
    runner = CliRunner()
    for args in (["footprint", "--config", str(path)], ["recommend", "--config", str(path)]):
        r = runner.invoke(main, args, catch_exceptions=False)
        assert r.exit_code in {0, 2, 3}, (cfg, r.output)  # 3: a plausible model fits nowhere
        assert "unexpected" not in r.output, (cfg, r.output)
        if args[0] == "footprint":
            assert r.exit_code in {0, 2}, (cfg, r.output)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_hidden_layers", 10**9),
        ("hidden_size", 10**12),
        ("vocab_size", math.inf),
        ("max_position_embeddings", 10**15),
        ("intermediate_size", 10**9),
    ],
)
def test_implausible_field_is_named(tmp_path, field, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, field: value}))
    r = CliRunner().invoke(main, ["recommend", "--config", str(path)], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    first = r.output.splitlines()[0]
    assert f"'{field}'" in first and ("implausible" in first or "integer" in first), first


# ------------------------------------------------------------------ plan files
@pytest.fixture(scope="module")
def saved_plan(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("plan")
    path = folder / "plan.json"
    r = CliRunner().invoke(
        main, ["recommend", "llama-3.1-8b", "--providers", "aws", "--save-plan", str(path)]
    )
    assert r.exit_code == 0, r.output
    return json.loads(path.read_text())


def _paths(doc, prefix=()):
    """Every (path) to a value in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_plan_files_exit_0_or_2(tmp_path_factory, saved_plan, data):
    doc = json.loads(json.dumps(saved_plan))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = sorted(_paths(doc), key=str)  # afresh: a change may replace a whole object
        _set(doc, data.draw(st.sampled_from(paths)), data.draw(values))
    folder = tmp_path_factory.mktemp("gen")
    plan = folder / "plan.json"
    plan.write_text(json.dumps(doc))
    args = ["generate", "--plan", str(plan), "--out", str(folder / "out")]
    r = CliRunner().invoke(main, [*args, "--allow-cidr", "203.0.113.7/32"])
    assert r.exit_code in {0, 2}, (doc, r.output)
    assert "unexpected" not in r.output, r.output
    if r.exit_code == 2:
        assert not (folder / "out").exists(), "nothing is written from a refused plan"
