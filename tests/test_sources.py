"""Every model source is real: local config files, the Hub (a local fake), GGUF files built
with the gguf package, the registry, and the labelled name guess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planner.errors import ModelSpecError
from planner.model.footprint import estimate_footprint
from planner.model.sources import load_model_spec
from tests.conftest import sample_config, sample_models

LLAMA8 = sample_config(sample_models()[0])


def write_config(folder: Path, config: dict, **extra: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    for name, data in extra.items():
        (folder / name.replace("__", ".")).write_text(json.dumps(data))
    return folder


# ------------------------------------------------------------------ local config
def test_local_config_with_index_and_modelopt_quant_config(tmp_path):
    folder = write_config(
        tmp_path / "m",
        LLAMA8,
        model__safetensors__index__json={"metadata": {"total_size": 123}, "weight_map": {}},
        hf_quant_config__json={
            "quantization": {"quant_algo": "FP8", "exclude_modules": ["lm_head"]}
        },
    )
    spec = load_model_spec(None, config_path=folder)
    assert spec.source == "config" and spec.checkpoint_total_size == 123
    assert spec.quant is not None and spec.quant.format == "fp8"
    fp = estimate_footprint(spec)
    # static FP8: weight_scale + input_scale per linear (224 linears), all fp32
    assert fp.weight_bytes_by_dtype["fp32"] == 224 * 2 * 4


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.pop("hidden_size"), "hidden_size"),
        (lambda c: c.update(num_hidden_layers="32"), "num_hidden_layers"),
        (lambda c: c.update(num_key_value_heads=0), "num_key_value_heads"),
        (lambda c: c.update(model_type="mamba", architectures=["MambaForCausalLM"]), "model_type"),
    ],
)
def test_malformed_config_names_the_field(tmp_path, mutate, field):
    cfg = dict(LLAMA8)
    mutate(cfg)
    folder = write_config(tmp_path / "bad", cfg)
    with pytest.raises(ModelSpecError) as err:
        load_model_spec(None, config_path=folder / "config.json")
    assert field in err.value.message


def test_invalid_json_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        load_model_spec(None, config_path=tmp_path)


# ------------------------------------------------------------------ Hugging Face Hub
def test_hub_fetch_then_offline_from_cache(hub, monkeypatch):
    hub.add(
        "acme/llama8",
        {
            "config.json": LLAMA8,
            "model.safetensors.index.json": {"metadata": {"total_size": 16060522496}},
        },
    )
    spec = load_model_spec("acme/llama8")
    assert spec.source == "hf" and spec.checkpoint_total_size == 16060522496
    assert estimate_footprint(spec).total_params == 8030261248
    hub.repos.clear()  # the Hub forgets it; the cache must still answer offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load_model_spec("acme/llama8")
    assert again.source == "hf" and again.num_layers == 32


def test_gated_model_needs_token(hub, monkeypatch):
    hub.add("acme/gated", {"config.json": LLAMA8}, gated=True)
    with pytest.raises(ModelSpecError, match="gated") as err:
        load_model_spec("acme/gated")
    assert "HF_TOKEN" in (err.value.hint or "")
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert load_model_spec("acme/gated").hidden_size == 4096
    assert any(auth == f"Bearer {hub.token}" for _, _, auth in hub.requests)


def test_missing_hub_repo_is_an_error_not_a_guess(hub):
    with pytest.raises(ModelSpecError, match="not found on the Hugging Face Hub"):
        load_model_spec("acme/Nothing-7B")


def test_from_hub_overrides_registry(hub):
    changed = dict(LLAMA8, num_hidden_layers=2)
    hub.add("meta-llama/Llama-3.1-8B-Instruct", {"config.json": changed})
    assert load_model_spec("meta-llama/Llama-3.1-8B-Instruct").source == "registry"
    assert load_model_spec("meta-llama/Llama-3.1-8B-Instruct", from_hub=True).num_layers == 2


# ------------------------------------------------------------------ GGUF
def write_gguf(path: Path, qtype_name: str = "Q8_0", moe: bool = False) -> dict[str, int]:
    """A tiny llama-architecture GGUF; returns expected totals."""
    import gguf

    qtype = gguf.GGMLQuantizationType[qtype_name]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(256)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    if moe:
        w.add_expert_count(4)
        w.add_expert_used_count(2)
    rng = np.random.default_rng(0)
    totals = {"params": 0, "bytes": 0, "expert_params": 0}

    def add(name: str, shape: tuple[int, ...], quant: bool) -> None:
        data = rng.standard_normal(shape).astype(np.float32)
        if quant:
            q = gguf.quants.quantize(data, qtype)
            w.add_tensor(name, q, raw_dtype=qtype)
            totals["bytes"] += q.nbytes
        else:
            w.add_tensor(name, data)
            totals["bytes"] += data.nbytes
        totals["params"] += data.size
        if "_exps" in name:
            totals["expert_params"] += data.size

    add("token_embd.weight", (100, 64), True)
    for i in range(2):
        add(f"blk.{i}.attn_norm.weight", (64,), False)
        add(f"blk.{i}.attn_q.weight", (64, 64), True)
        add(f"blk.{i}.attn_k.weight", (32, 64), True)
        add(f"blk.{i}.attn_v.weight", (32, 64), True)
        add(f"blk.{i}.attn_output.weight", (64, 64), True)
        add(f"blk.{i}.ffn_norm.weight", (64,), False)
        if moe:
            add(f"blk.{i}.ffn_gate_inp.weight", (4, 64), False)
            add(f"blk.{i}.ffn_up_exps.weight", (4, 128, 64), True)
            add(f"blk.{i}.ffn_down_exps.weight", (4, 64, 128), True)
        else:
            add(f"blk.{i}.ffn_up.weight", (128, 64), True)
            add(f"blk.{i}.ffn_down.weight", (64, 128), True)
    add("output_norm.weight", (64,), False)
    add("output.weight", (100, 64), True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return totals


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "F16"])
def test_gguf_exact_params_and_bytes(tmp_path, qtype):
    path = tmp_path / "tiny.gguf"
    expected = write_gguf(path, qtype)
    spec = load_model_spec(None, gguf_path=path)
    fp = estimate_footprint(spec)
    assert spec.source == "gguf" and spec.num_layers == 2 and spec.num_kv_heads == 2
    assert fp.total_params == expected["params"]
    assert fp.weight_bytes == expected["bytes"]
    # KV: 2 layers x 2 (K, V) x 2 heads x 16 head_dim x 2 bytes
    assert fp.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2


def test_gguf_moe_active_params(tmp_path):
    path = tmp_path / "moe.gguf"
    expected = write_gguf(path, moe=True)
    fp = estimate_footprint(load_model_spec(str(path)))
    assert fp.total_params == expected["params"]
    assert fp.active_params == expected["params"] - expected["expert_params"] // 2


@pytest.mark.parametrize("content", [b"", b"NOTAGGUF" * 10, b"GGUF\x03\x00\x00\x00garbage"])
def test_corrupt_gguf_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelSpecError, match="not a readable GGUF"):
        load_model_spec(None, gguf_path=path)


def test_truncated_gguf_is_a_clear_error(tmp_path):
    path = tmp_path / "t.gguf"
    write_gguf(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelSpecError, match="not a readable GGUF"):
        load_model_spec(None, gguf_path=path)


# ------------------------------------------------------------------ registry and guesses
@pytest.mark.parametrize(
    "name",
    [
        "llama-3.1-70b",
        "LLAMA-3.1-70B",
        "Llama-3.1-70B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
    ],
)
def test_registry_aliases(name):
    assert load_model_spec(name).name == "meta-llama/Llama-3.1-70B-Instruct"


def test_unknown_name_without_size_suggests_close_matches():
    with pytest.raises(ModelSpecError) as err:
        load_model_spec("mixtral-8x7")
    assert "mixtral-8x7b" in (err.value.hint or "")


def test_guess_is_labelled_and_suggests(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_model_spec("lama-3.1-70b")
    assert spec.is_guess and spec.source == "guess"
    assert any("did you mean" in n for n in spec.notes)
    assert 60e9 < estimate_footprint(spec).total_params < 80e9


@pytest.mark.parametrize(
    ("name", "billions"), [("Llama-4-17B", 17), ("tiny-7b", 7), ("x/Qwen3-30B-A3B-GGUF-Q4_K_M", 30)]
)
def test_guess_sizes(monkeypatch, name, billions):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    total = estimate_footprint(load_model_spec(name)).total_params
    assert abs(total - billions * 1e9) / (billions * 1e9) < 0.1


def test_from_hub_never_falls_back_to_a_guess(monkeypatch, tmp_path):
    from planner.errors import ProviderError

    # Offline and not cached: the same "Hub unavailable" path as a dead network, without
    # huggingface_hub's connection retries.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ProviderError, match="could not fetch"):
        load_model_spec("acme/Widget-7B", from_hub=True)
    with pytest.raises(ModelSpecError, match="needs a Hugging Face id"):
        load_model_spec("llama-3.1-8b", from_hub=True)


def test_an_unreachable_hub_is_named_not_hidden_by_the_cache_miss_after_it(monkeypatch, tmp_path):
    """Sweep: a Hub id neither reachable nor cached was reported with huggingface_hub's answer to
    the cache-only retry ("outgoing traffic has been disabled ... set 'local_files_only' to
    False"), which the user never set; the cause is the connection."""
    from planner.errors import ProviderError

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GPUPLAN_HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused
    with pytest.raises(ProviderError) as failed:
        load_model_spec("acme/Widget-7B")
    said = str(failed.value)
    assert "cannot connect to 127.0.0.1:9" in said, said
    assert "not in the local Hugging Face cache" in said
    assert "local_files_only" not in said and "disabled" not in said


def test_a_name_the_hub_cannot_hold_is_a_usage_error_not_a_network_one(monkeypatch, tmp_path):
    """Sweep: a non-ASCII org/name matched the Hub-id shape, and huggingface_hub's validation
    error was reported as a failed fetch (exit 4)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GPUPLAN_HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelSpecError, match="is not a valid Hugging Face id"):
        load_model_spec("Ünïcødé/Mödel-7B")


def test_a_folder_without_config_json_and_an_empty_config_say_what_is_missing(tmp_path):
    """Sweep: a folder path without config.json was an "unknown model" with the registry hint,
    and a config.json of {} "model_type 'None' is not supported yet"."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    with pytest.raises(ModelSpecError, match=r"has no config\.json") as missing:
        load_model_spec(str(folder))
    assert "unknown model" not in str(missing.value)
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelSpecError, match="neither model_type nor architectures is set"):
        load_model_spec(str(folder))
