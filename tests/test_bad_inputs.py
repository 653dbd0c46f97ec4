"""A corpus of bad inputs and faults, each through the real CLI: the exit code and the first
line are asserted, and nothing may print "unexpected" or a traceback.

Most cases run in-process through click's CliRunner on ``planner.cli.main`` (fast); a
representative subset also runs as ``python -m planner.cli`` subprocesses, batched in one
pytest parameter each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main

LLAMA = {
    "model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32,
    "num_key_value_heads": 8, "num_hidden_layers": 16, "intermediate_size": 8192,
    "vocab_size": 128256, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
}  # fmt: skip
M = "llama-3.1-8b"
CIDR = "203.0.113.7/32"

# appended after the plan's flags, they would win: a TP1 plan served at TP2 and 999,999 tokens
TP2_EXTRAS = [
    "--extra-vllm-arg",
    "--tensor-parallel-size=2",
    "--extra-vllm-arg",
    "--max-model-len=999999",
]
# (args, exit code, text the first line must contain)
FLAG_CASES = [
    (["footprint", M, "--context", "0"], 2, "context"),
    (["footprint", M, "--context", "-5"], 2, "context"),
    (["footprint", M, "--context", "abc"], 2, "context"),
    (["footprint", M, "--concurrency", "0"], 2, "concurrency"),
    (["footprint", M, "--quant", "int3"], 2, "int3"),
    (["footprint", M, "--kv-cache-dtype", "int4"], 2, "kv-cache-dtype"),
    (["footprint", M, "--gpu-memory-utilization", "0"], 2, "gpu_memory_utilization"),
    (["footprint", M, "--gpu-memory-utilization", "7"], 2, "gpu_memory_utilization"),
    (["footprint", M, "--gpu-memory-utilization", "nan"], 2, "gpu_memory_utilization"),
    (["footprint", "mistery-model"], 2, "unknown model"),
    (["footprint"], 2, "no model given"),
    (["footprint", "x" * 5000], 2, "file name too long"),
    (["footprint", "evil\x1b[31mred\nline"], 2, "MODEL holds a control character"),
    (["recommend", M, "--max-price", "nan"], 2, "max_price"),
    (["recommend", M, "--max-price", "inf"], 2, "max_price"),
    (["recommend", M, "--max-price", "-1"], 2, "max_price"),
    (["recommend", M, "--max-price", "0"], 3, "no feasible"),
    (["recommend", M, "--target-rps", "1e308"], 2, "target_rps"),  # replicas beyond any int
    (["recommend", M, "--target-output-tokens-per-s", "1e308"], 2, "target_output_tokens"),
    (["recommend", M, "--horizon-months", "0"], 2, "horizon_months"),
    (["recommend", M, "--horizon-months", "1000"], 2, "horizon_months"),
    (["recommend", M, "--tp", "0"], 2, "tp"),
    (["recommend", M, "--tp", "65"], 2, "tp"),
    (["recommend", M, "--gpus", "0"], 2, "gpus"),
    (["recommend", M, "--max-nodes", "0"], 2, "max_nodes"),
    (["recommend", M, "--max-nodes", "100"], 2, "max_nodes"),
    (["recommend", M, "--max-replicas", "0"], 2, "max_replicas"),
    (["recommend", M, "--replica-headroom", "-1"], 2, "replica_headroom"),
    # click's FloatRange passes nan, which turned the filter or the threshold off
    (["offers", "--min-gpu-memory", "nan"], 2, "'nan' is not a finite number"),
    (["offers", "--min-gpu-memory", "inf"], 2, "'inf' is not a finite number"),
    (["check", "--threshold", "nan"], 2, "'nan' is not a finite number"),
    (["recommend", M, "--target-rps", "0"], 2, "target_rps"),
    (["recommend", M, "--target-rps", "1", "--target-output-tokens-per-s", "5"], 2, "not both"),
    (["recommend", M, "--target-output-tokens-per-s", "-3"], 2, "target_output_tokens_per_s"),
    (["recommend", M, "--min-tokens-per-s", "-1"], 2, "min_tokens_per_s"),
    (["recommend", M, "--max-ttft", "-1"], 2, "max_ttft"),
    (["recommend", M, "--objective", "cheapest"], 2, "objective"),
    (["recommend", M, "--concurrency", "64", "--target-rps", "1"], 2, "target_rps"),
    (["recommend", M, "--concurrency", "8", "--workload", "batch"], 2, "workload"),
    (["recommend", M, "--concurrency", "8", "--job-requests", "100"], 2, "job_requests"),
    (["recommend", M, "--gpus", "4", "--tp", "8"], 2, "does not divide"),
    (["recommend", M, "--tp", "3"], 2, "attention heads"),
    (["recommend", M, "--gpus", "64"], 3, "--gpus 64"),
    (["recommend", M, "--workload", "stream"], 2, "workload"),
    (["recommend", M, "--prompt-tokens", "0"], 2, "prompt"),
    (["recommend", M, "--output-tokens", "0"], 2, "output"),
    (["recommend", M, "--prompt-tokens", "9000", "--context", "8192"], 2, "exceed"),
    (["recommend", M, "--context", "10000000"], 2, "max_position_embeddings"),
    (["recommend", M, "--providers", "nocloud"], 2, "nocloud"),
    (["recommend", M, "--gpu", "nogpu"], 2, "nogpu"),
    (["recommend", M, "--top", "0"], 2, "top"),
    (["recommend", M, "--spot", "--providers", "hetzner"], 3, "spot"),
    (["recommend", M, "--instance-type", "no-such-type"], 3, "no"),
    (["recommend", "llama-3.1-70b", "--gpu", "t4", "--gpus", "1"], 3, "no feasible"),
    (["offers", "--gpu", "nogpu"], 2, "nogpu"),
    (["offers", "--providers", "nocloud"], 2, "nocloud"),
    (["offers", "--limit", "-1"], 2, "limit"),
    (["footprint", M, "--format", "xml"], 2, "format"),
    (["generate", M, "--out", "OUT"], 2, "allow-cidr"),
    (["generate", M, "--allow-cidr", "not-a-cidr", "--out", "OUT"], 2, "not-a-cidr"),
    (["generate", M, "--allow-cidr", "::1/999", "--out", "OUT"], 2, "::1/999"),
    (["generate", M, "--allow-cidr", CIDR], 2, "--out"),
    (["generate", "--allow-cidr", CIDR, "--out", "OUT"], 2, "no MODEL"),
    (["generate", M, "--allow-cidr", CIDR, "--out", "OUT", "--ssh-key", "NOFILE"], 2, "ssh"),
    (["generate", M, "--allow-cidr", CIDR, "--out", "OUT", "--stack", " "], 2, "stack"),
    (["generate", "--plan", "NOFILE", "--allow-cidr", CIDR, "--out", "OUT"], 2, "plan file"),
    (["generate", M, "--allow-cidr", CIDR, "--out", "OUT", *TP2_EXTRAS], 2, "plan's own value"),
    (["check", "--toml", "NOFILE"], 2, "does not exist"),
    (["catalog", "refresh", "--provider", "nocloud"], 2, "nocloud"),
    (["deploy", "--toml", "NOFILE"], 2, "does not exist"),
]


def _run(args, tmp_path, env=None):
    args = [a.replace("OUT", str(tmp_path / "out")).replace("NOFILE", str(tmp_path / "nope"))
            for a in args]  # fmt: skip
    r = CliRunner().invoke(main, args, env=env)
    return r, r.output


def _first(output: str) -> str:
    """The first error line (click's usage errors before a command runs print "Usage:" first)."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    return (errors or lines or [""])[0]


def _has(needle: str, line: str) -> bool:
    """Flags are spelled --max-price, toml keys max_price: either spelling counts."""
    line = line.lower()
    return needle.lower() in line or needle.lower().replace("_", "-") in line


def _assert_clean(output: str) -> None:
    assert "unexpected" not in output and "Traceback" not in output, output
    assert "\x1b[31m" not in output, "escape sequences from input are printed escaped"


@pytest.mark.parametrize(("args", "code", "needle"), FLAG_CASES, ids=lambda v: str(v)[:40])
def test_bad_flag(tmp_path, args, code, needle):
    r, out = _run(args, tmp_path)
    _assert_clean(out)
    assert r.exit_code == code, out
    assert _has(needle, _first(out)), out
    assert len(_first(out)) < 400  # one line, never a 5,000-character echo


# ------------------------------------------------------------------ gpuplan.toml and env
TOML_CASES = [
    ('[workload]\ncontext = "long"\n', "context"),
    ("[workload]\ncontext = 0\n", "context"),
    ("[workload]\ngpu_memory_utilization = 7\n", "gpu_memory_utilization"),
    ("[workload]\ngpu_memory_utilization = nan\n", "gpu_memory_utilization"),
    ("[workload]\nconcurrency = -1\n", "concurrency"),
    ('[workload]\nworkload = "stream"\n', "workload"),
    ('[workload]\nkv_cache_dtype = "int2"\n', "kv_cache_dtype"),
    ("[constraints]\nhorizon_months = 0\n", "horizon_months"),
    ("[constraints]\nmax_price = inf\n", "max_price"),
    ("[constraints]\nmax_price = 1" + "0" * 400 + "\n", "max_price"),  # no float holds it
    ("[workload]\nconcurrency = 1" + "0" * 400 + "\n", "concurrency"),
    ('[constraints]\nproviders = "aws"\n', "providers"),
    ("[constraints]\ntp = 0\n", "tp"),
    ("[constraints]\nmax_nodes = 99\n", "max_nodes"),
    ("[constraints]\nmax_replicas = 0\n", "max_replicas"),
    ("[constraints]\nspot = 3\n", "spot"),
    ('[constraints]\nobjective = "vibes"\n', "objective"),
    ("[deploy]\nwait_healthy = -1\n", "wait_healthy"),
    ("[model]\nmodel = 3\n", "model"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("[workload]\nno_such_key = 1\n", "no_such_key"),
    ("this is not toml", "toml"),
    # beyond Python's recursion limit: tomllib's parser recurses (an inline table, an array)
    ("a = " + "{x=" * 100_000 + "1" + "}" * 100_000 + "\n", "nested too deeply"),
    ("[workload]\ncontext = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
]


@pytest.mark.parametrize(("text", "needle"), TOML_CASES, ids=lambda v: str(v)[:30])
def test_bad_toml(tmp_path, text, needle):
    toml = tmp_path / "gpuplan.toml"
    toml.write_text(text)
    r, out = _run(["recommend", M, "--toml", str(toml)], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert needle in _first(out), out


ENV_CASES = [
    ("GPUPLAN_GPU_MEMORY_UTILIZATION", "7", "gpu_memory_utilization"),
    ("GPUPLAN_GPU_MEMORY_UTILIZATION", "0.0", "gpu_memory_utilization"),
    ("GPUPLAN_HORIZON_MONTHS", "-1", "horizon_months"),
    ("GPUPLAN_CONTEXT", "lots", "context"),
    ("GPUPLAN_MAX_PRICE", "nan", "max_price"),
    ("GPUPLAN_SPOT", "maybe", "spot"),
]


@pytest.mark.parametrize(("name", "value", "needle"), ENV_CASES)
def test_bad_env(tmp_path, name, value, needle):
    r, out = _run(["recommend", M], tmp_path, env={name: value})
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert _has(needle, _first(out)), out


# ------------------------------------------------------------------ config.json and GGUF
CONFIG_CASES = [
    ({"num_hidden_layers": 10**9}, "'num_hidden_layers'"),
    ({"hidden_size": 10**12}, "'hidden_size'"),
    ({"vocab_size": float("inf")}, "'vocab_size'"),
    ({"vocab_size": "big"}, "'vocab_size'"),
    ({"num_attention_heads": 0}, "'num_attention_heads'"),
    ({"num_key_value_heads": 7}, "num_key_value_heads"),
    ({"intermediate_size": -1}, "'intermediate_size'"),
    ({"max_position_embeddings": 10**15}, "'max_position_embeddings'"),
    ({"head_dim": 10**6}, "'head_dim'"),
    ({"torch_dtype": "float8"}, "torch_dtype"),
    ({"model_type": "transformerzzz"}, "not supported"),
    ({"sliding_window": -4}, "sliding_window"),
    ({"architectures": 5, "model_type": "zzz"}, "not supported"),
    ({"hidden_size": True}, "'hidden_size'"),
    ({"num_hidden_layers": 1.5}, "'num_hidden_layers'"),
    ({"rope_scaling": {"rope_type": "linear", "factor": float("nan")}}, "'rope_scaling.factor'"),
    ({"rope_scaling": {"rope_type": "linear", "factor": float("inf")}}, "'rope_scaling.factor'"),
    ({"rope_scaling": {"rope_type": "linear", "factor": -4}}, "'rope_scaling.factor'"),
    ({"rope_scaling": {"type": "linear", "factor": True}}, "'rope_scaling.factor'"),
]


@pytest.mark.parametrize(("change", "needle"), CONFIG_CASES, ids=lambda v: str(v)[:30])
def test_bad_config_json(tmp_path, change, needle):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **change}))
    r, out = _run(["recommend", "--config", str(path)], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert needle in _first(out), out


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # beyond Python's recursion
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ],
    ids=["syntax", "list", "empty", "deep-list", "deep-object"],
)
def test_unparsable_config_json(tmp_path, content, needle):
    path = tmp_path / "config.json"
    path.write_text(content)
    r, out = _run(["footprint", "--config", str(path)], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2 and needle in _first(out), out


@pytest.mark.parametrize(
    ("name", "args", "hint"),
    [
        ("gpuplan.toml", ["recommend", M, "--toml", "FILE"], "gpuplan init"),
        ("config.json", ["footprint", "--config", "FILE"], "Hugging Face repository"),
        ("plan.json", ["generate", "--plan", "FILE", "--out", "OUT"], "--save-plan"),
    ],
)
def test_a_syntax_error_gives_its_place_and_what_to_do(tmp_path, name, args, hint):
    path = tmp_path / name
    path.write_text('{"a": 1\n  "b"' if name.endswith("json") else "[workload\ncontext = 1\n")
    r, out = _run([str(path) if a == "FILE" else a for a in args], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert re.search(r"line \d+, column \d+", _first(out)), out
    assert "hint:" in out and hint in out.split("hint:")[1], out


def test_blank_model_name_is_not_printed_blank(tmp_path):
    folder = tmp_path / " "
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    r, out = _run(["footprint", "--config", str(folder / "config.json")], tmp_path)
    assert r.exit_code == 2 and "config of : " not in out, out


def test_a_config_json_in_the_working_folder_names_the_model_after_it(tmp_path, monkeypatch):
    """`--config config.json` from the model's folder: its parent is "." whose name is empty, and
    the plan served `vllm serve ''` (generate wrote a project for an empty model id)."""
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    monkeypatch.chdir(folder)
    r = CliRunner().invoke(main, ["recommend", "--config", "config.json", "--format", "json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)["plans"][0]
    assert plan["model"] == plan["vllm_args"][0] == "my-model", plan["vllm_args"]


def test_files_that_are_not_utf8_say_so_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpuplan.toml").write_bytes(b'[model]\nmodel = "llama-3.1-8b\xff"\n')
    r, out = _run(["recommend"], tmp_path)
    assert r.exit_code == 2 and "gpuplan.toml is not UTF-8 text (byte 0xff" in _first(out), out
    assert "hint: TOML files are UTF-8" in out
    (tmp_path / "gpuplan.toml").unlink()
    (tmp_path / "config.json").write_bytes(b'{"model_type": "llama\xfe"}')
    r, out = _run(["footprint", "--config", "config.json"], tmp_path)
    assert r.exit_code == 2 and "is not UTF-8 text (byte 0xfe at offset 21)" in _first(out), out
    assert "hint: " in out


def test_a_project_for_a_local_config_needs_the_models_hub_id(tmp_path):
    """A model read from a local config.json is named after its folder, which vLLM on the
    machine would look up on the Hub and fail to start: generate asks for the Hub id."""
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    base = ["generate", "--config", str(folder), "--providers", "aws", "--allow-cidr", CIDR]
    r, out = _run([*base, "--out", "OUT"], tmp_path)
    assert r.exit_code == 2 and "is not a Hugging Face id" in _first(out), out
    assert "ORG/NAME --config" in out and not (tmp_path / "out").exists()
    r, out = _run([*base[:1], "acme/my-model", *base[1:], "--out", "OUT"], tmp_path)
    assert r.exit_code == 0, out
    assert "'acme/my-model'" in (tmp_path / "out" / "__main__.py").read_text()


def _gguf(path: Path, **fields: int) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(fields.get("block_count", 2))
    w.add_embedding_length(fields.get("embedding_length", 64))
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(fields.get("context_length", 256))
    w.add_tensor("token_embd.weight", np.zeros((32, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"block_count": 10**8}, "block_count"),
        ({"embedding_length": 10**9}, "embedding_length"),
        ({"context_length": 2**31}, "context_length"),
    ],
)
def test_implausible_gguf_header(tmp_path, fields, needle):
    path = tmp_path / "m.gguf"
    _gguf(path, **fields)
    r, out = _run(["footprint", "--gguf", str(path)], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2 and needle in _first(out) and "implausible" in _first(out), out


# ------------------------------------------------------------------ plan files
@pytest.fixture(scope="module")
def plan_doc(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    r = CliRunner().invoke(main, ["recommend", M, "--providers", "aws", "--save-plan", str(path)])
    assert r.exit_code == 0, r.output
    return json.loads(path.read_text())


def _tamper(doc: dict, path: str, value) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()
PLAN_CASES = [
    ("estimate.usd_per_hour", "cheap", "estimate.usd_per_hour"),
    ("estimate.usd_per_hour", 0.1, "price"),
    ("estimate.usd_per_hour", -5, "estimate.usd_per_hour"),
    ("layout.tp", -1, "layout.tp"),
    ("layout.tp", 2, "layout"),
    ("layout.pp", "two", "layout.pp"),
    ("extra_field", 1, "extra_field"),
    ("offer.gpu_count", "many", "offer.gpu_count"),
    ("offer.gpu_count", 10**12, "offer.gpu_count"),
    ("offer.instance_type", "p5.48xlarge", "p5.48xlarge"),
    # another offer of the same GPUs: an AWS project rents the instance type in the region
    # named, so one the catalog does not list is not gpuplan's (only marketplaces vary)
    ("offer.region", "eu-nowhere-9", "eu-nowhere-9 is not in the offer catalog"),
    ("offer.instance_type", "g5.nosuch", "g5.nosuch in us-east-1 is not in the offer catalog"),
    ("offer.price_usd_per_hour", 0, "offer.price_usd_per_hour"),
    ("offer.price_usd_per_hour", 10**400, "offer.price_usd_per_hour"),  # no float holds it
    ("need.max_nodes", 10**12, "max_nodes"),
    ("need.context", "long", "need.context"),
    ("need.gpu_memory_utilization", 7, "gpu_memory_utilization"),
    ("need.objective", "vibes", "objective"),
    ("vllm_args", ["--trust-remote-code"], "vllm_args"),
    ("schema", "gpuplan.plan/99", "schema"),
    ("model", _DELETE, "model"),
    ("estimate.monthly_commitment_usd", 5.0, "monthly_commitment_usd"),
    ("reasons", "a string", "reasons"),
]


@pytest.mark.parametrize(("path", "value", "needle"), PLAN_CASES, ids=lambda v: str(v)[:30])
def test_bad_plan_file_is_refused_before_writing(tmp_path, plan_doc, path, value, needle):
    doc = _tamper(plan_doc, path, value)
    if path == "vllm_args":
        doc["vllm_args"] = plan_doc["vllm_args"] + value
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    r, out = _run(["generate", "--plan", str(plan), "--allow-cidr", CIDR, "--out", "OUT"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert needle in _first(out), out
    assert not (tmp_path / "out").exists(), "nothing written from a refused plan"


def test_a_plan_missing_an_argument_names_what_gpuplan_adds(tmp_path, plan_doc):
    doc = json.loads(json.dumps(plan_doc))
    i = doc["vllm_args"].index("--max-num-seqs")
    del doc["vllm_args"][i : i + 2]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    r, out = _run(["generate", "--plan", str(plan), "--allow-cidr", CIDR, "--out", "OUT"], tmp_path)
    assert r.exit_code == 2 and "(gpuplan adds: --max-num-seqs" in _first(out), out


def test_a_gcp_plan_is_found_again_by_its_machine_in_its_region_only(tmp_path):
    """GCP names an N1 machine with GPUs otherwise in its API and in the public catalogs
    (n1-standard-8+2xt4 / n1-standard-4+2xT4), so a saved plan's name may differ from the
    catalog's in the host size only; a region or another name the catalog does not list is not
    the plan's offer (it went into Pulumi.yaml)."""
    from planner.offers.providers import provider_classes

    gcp = provider_classes()["gcp"]
    assert gcp.listing_name("n1-standard-8+2xt4") == gcp.listing_name("n1-standard-4+2xT4")
    assert gcp.listing_name("g2-standard-4") != gcp.listing_name("g2-standard-8")
    saved = tmp_path / "saved.json"
    r = CliRunner().invoke(main, ["recommend", M, "--providers", "gcp", "--save-plan", str(saved)])
    assert r.exit_code == 0, r.output
    doc = json.loads(saved.read_text())
    for path, value in (("offer.instance_type", "g2-made-up-4"), ("offer.region", "eu-nowhere-9")):
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(_tamper(doc, path, value)))
        args = ["generate", "--plan", str(plan), "--allow-cidr", CIDR, "--out", "OUT"]
        r, out = _run(args, tmp_path)
        assert r.exit_code == 2 and value in _first(out), out
        assert not (tmp_path / "out").exists()


def test_a_missing_ssh_key_names_the_flag_and_what_to_give(tmp_path):
    args = ["generate", M, "--providers", "aws", "--allow-cidr", CIDR, "--out", "OUT",
            "--ssh-key", "NOFILE", "--ssh-cidr", CIDR]  # fmt: skip
    r, out = _run(args, tmp_path)
    assert r.exit_code == 2, out
    assert _first(out).startswith("error: cannot read --ssh-key ") and "No such file" in out
    assert "hint: give the path of your SSH public key" in out
    assert not (tmp_path / "out").exists()


def test_planning_flags_with_a_saved_plan_are_refused_not_dropped(tmp_path, plan_doc):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(plan_doc))
    base = ["generate", "--plan", str(plan), "--allow-cidr", CIDR, "--out", "OUT"]
    r, out = _run([*base, "--context", "4096", "--providers", "aws"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert _first(out) == (
        "error: --plan takes the saved plan as it is; --context, --providers would be ignored"
    ), out
    assert not (tmp_path / "out").exists()
    r, out = _run([*base, "--from-hub"], tmp_path)
    assert r.exit_code == 2 and "--from-hub would be ignored" in _first(out), out
    r, out = _run([*base, "--stack", "prod"], tmp_path)  # a deploy setting is the project's
    assert r.exit_code == 0, out


def test_tampered_committed_plan_is_drift(tmp_path, plan_doc, monkeypatch):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(plan_doc))
    r, out = _run(["generate", "--plan", str(plan), "--allow-cidr", CIDR, "--out", "OUT"], tmp_path)
    assert r.exit_code == 0, out
    committed = tmp_path / "out" / "gpuplan.plan.json"
    doc = json.loads(committed.read_text())
    doc["vllm_args"].append("--trust-remote-code")
    committed.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    env = {"GPUPLAN_OUT": str(tmp_path / "out"), "GPUPLAN_ALLOW_CIDRS": CIDR}
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["check"], env=env)
    _assert_clean(r.output)
    assert r.exit_code == 6, r.output
    assert "trust-remote-code" in _first(r.output), r.output


# ------------------------------------------------------------------ cache files
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("price_usd_per_hour", -5.0),
        ("price_usd_per_hour", 0.0),
        ("price_usd_per_hour", 10**400),  # an int no float holds
        ("gpu_count", "many"),
        ("gpu_memory_gb", None),
        ("billing", "weekly"),
        ("zone", 5),  # --regions joined it with the region: 'unexpected TypeError'
        ("vcpus", "eight"),
        ("fetched_at", "2999-01-01T00:00:00+00:00"),  # never stale, its age negative
        ("fetched_at", "yesterday"),
    ],
)
@pytest.mark.parametrize("v3", [False, True], ids=["v2 rows", "v3 columns"])
def test_bad_cache_row_is_dropped_with_a_warning(tmp_path, column, value, v3):
    from planner.offers.catalog import snapshot_offers, write_cache
    from tests.cachedocs import set_offer_value, v2_doc

    offers = [o for o in snapshot_offers() if o.provider == "runpod"]
    path = write_cache("runpod", offers, "2026-11-29", "test")
    doc = json.loads(path.read_text()) if v3 else v2_doc("runpod", offers)
    set_offer_value(doc, 0, column, value)
    path.write_text(json.dumps(doc))
    r, out = _run(["recommend", M, "--providers", "runpod", "--format", "json"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 0, out
    assert "warning: runpod: ignoring 1 invalid offer(s) in" in out and str(path) in out, out
    assert f"(offer 1: {column} must be" in out
    plans = json.loads(out[out.index("{") :])["plans"]
    assert all(p["estimate"]["usd_per_hour"] > 0 for p in plans)


def test_a_refusal_after_dropping_every_cached_offer_says_why(tmp_path):
    """Every cached RunPod offer invalid: recommend finds nothing to rank, and the refusal
    comes after the warning that says the cache's offers were dropped (it came alone)."""
    from planner.offers.catalog import snapshot_offers, write_cache
    from tests.cachedocs import set_offer_value

    offers = [o for o in snapshot_offers() if o.provider == "runpod"]
    path = write_cache("runpod", offers, "2026-11-29", "test")
    doc = json.loads(path.read_text())
    for i in range(len(offers)):
        set_offer_value(doc, i, "price_usd_per_hour", -1.0)
    path.write_text(json.dumps(doc))
    r, out = _run(["recommend", M, "--providers", "runpod"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 3, out
    warned = f"warning: runpod: ignoring {len(offers)} invalid offer(s) in"
    assert warned in out and out.index(warned) < out.index("error: no offer matches"), out


def test_ctrl_c_during_refresh_writes_nothing_after_the_in_flight_call(monkeypatch):
    import planner.offers.providers as providers
    from planner.offers.catalog import _cache_path, snapshot_offers
    from planner.offers.refresh import refresh

    started, release, done = threading.Event(), threading.Event(), threading.Event()

    class Interrupted:
        api_label, warnings = "fake", []

        @classmethod
        def from_env(cls):
            return cls()

        def list_offers(self, query):
            assert started.wait(10)  # Ctrl-C while the other cloud's call is in flight
            raise KeyboardInterrupt

    class InFlight(Interrupted):
        def list_offers(self, query):
            started.set()
            release.wait(10)
            done.set()
            return [o for o in snapshot_offers() if o.provider == "vast"]

    monkeypatch.setattr(
        providers, "provider_classes", lambda: {"runpod": Interrupted, "vast": InFlight}
    )
    with pytest.raises(KeyboardInterrupt):
        refresh(["runpod", "vast"], explicit=True)
    release.set()
    assert done.wait(10)
    for t in threading.enumerate():
        if t.name.startswith("refresh-"):
            t.join(10)
    assert not _cache_path("vast").exists()


def test_unwritable_cache_folder_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r, out = _run(["catalog", "refresh"], tmp_path, env={"GPUPLAN_CACHE_DIR": str(blocker)})
    _assert_clean(out)
    assert r.exit_code == 2, out
    assert _first(out).startswith("error: cannot write the offer cache in"), out


def test_unreadable_cache_file_warns(tmp_path):
    from planner.offers.catalog import _cache_path

    path = _cache_path("vast")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100000)
    r, out = _run(["offers", "--providers", "vast"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 0 and "ignoring unreadable cache" in out, out


@pytest.mark.parametrize("source", [{"a": 1}, 5, ["x"]], ids=["object", "int", "list"])
@pytest.mark.parametrize("command", [["catalog", "status"], ["offers", "--providers", "vast"]])
def test_a_cache_whose_source_is_not_text_is_a_damaged_cache(tmp_path, source, command):
    """The cache's "source" is printed (catalog status) as text: any other JSON value makes the
    file a damaged cache, warned about and left alone, not a crash of every read command."""
    from planner.offers.catalog import snapshot_offers, write_cache

    path = write_cache("vast", [o for o in snapshot_offers() if o.provider == "vast"][:3], "x")
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "source": source}))
    before = path.read_bytes()
    r, out = _run(command, tmp_path)
    _assert_clean(out)
    assert r.exit_code == 0 and "ignoring unreadable cache" in out, out
    assert path.read_bytes() == before  # a read command never rewrites the user's cache


# ------------------------------------------------------------------ local files and the Hub
def test_unwritable_save_plan_is_one_line(tmp_path):
    r, out = _run(["recommend", M, "--save-plan", "/proc/nope/plan.json"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2 and _first(out).startswith("error: cannot"), out


def test_uncached_hub_id_without_network_is_a_network_error(tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "GPUPLAN_HF_ENDPOINT": "http://user:s3cret@127.0.0.1:9"}
    r, out = _run(["footprint", "someorg/Some-Model-7B"], tmp_path, env=env)
    _assert_clean(out)
    assert r.exit_code == 4, out
    assert "Hugging Face Hub" in _first(out) and "HF_HUB_OFFLINE" in out
    assert "s3cret" not in out and "GUESS" not in out


# ------------------------------------------------------------------ real subprocesses
SUBPROCESS_CASES = [
    (["footprint", M, "--context", "0"], 2, "context"),
    (["footprint", "x" * 5000], 2, "file name too long"),
    (["recommend", M, "--max-price", "nan"], 2, "max_price"),
    (["recommend", M, "--objective", "vibes"], 2, "objective"),
    (["generate", M, "--out", "OUT"], 2, "allow-cidr"),
]


def test_representative_cases_as_real_subprocesses(tmp_path):
    """The same boundary as `gpuplan` on a terminal: one process per case, stderr checked."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for args, code, needle in SUBPROCESS_CASES:
        args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
        proc = subprocess.run(
            [sys.executable, "-m", "planner.cli", *args],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        _assert_clean(out)
        assert proc.returncode == code, (args, out)
        assert _has(needle, _first(proc.stderr)), (args, out)


@pytest.mark.parametrize("flag", ["--plot", "--save-plan"])
def test_an_empty_output_path_is_refused_not_ignored(tmp_path, flag):
    r, out = _run(["recommend", M, flag, ""], tmp_path)
    assert r.exit_code == 2 and _first(out) == f"error: {flag} is empty", out


def test_a_reader_that_stops_early_is_not_an_error():
    """`gpuplan recommend ... | head -1`: the pipe closes before the table is written. Exit 0
    and nothing on stderr, for the rich tables as for plain text (rich's default is exit 1)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", "recommend", M],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first write
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == "", err


@pytest.mark.parametrize("both", [False, True], ids=["stdout", "stdout-and-stderr"])
def test_a_reader_that_stops_early_keeps_the_commands_exit_code(tmp_path, both):
    """Sweep: `gpuplan check | head -1` on a drifted project said "cannot use: Broken pipe",
    exit 2 (exit 1 with `2>&1`), instead of the drift's 6: the broken pipe cut the command
    short. Once the reader is gone the rest goes nowhere and the command ends as it would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "planner.cli"]
    subprocess.run(
        [*cmd, "generate", M, "--providers", "aws", "--allow-cidr", CIDR, "--out", "p"],
        cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (tmp_path / "gpuplan.toml").write_text(
        f'[model]\nmodel = "{M}"\n[constraints]\nproviders = ["aws"]\n'
        f'[deploy]\nout = "p"\nallow_cidrs = ["{CIDR}"]\n'
    )
    drifted = [f for f in (tmp_path / "p").iterdir() if f.is_file() and f.suffix != ".json"]
    assert len(drifted) >= 4
    for f in drifted:  # one line each on stdout: more than a pipe's first read
        f.write_text(f.read_text() + "# edited\n")
    proc = subprocess.Popen(
        [*cmd, "check"], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT if both else subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first write
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 6, err
    assert not err or "error" not in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="Linux's always-full device")
@pytest.mark.parametrize(
    "args", [["footprint", M], ["--help"], ["--version"], ["recommend", "--help"]]
)
def test_a_full_output_says_it_is_the_output(args):
    """gpuplan's own --help and --version are written while click parses, before the
    command's error boundary: a full output is one line there too, not a traceback."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "planner.cli", *args],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
    _assert_clean(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert _first(proc.stderr) == "error: cannot write the output: no space left on the device"


@pytest.mark.parametrize("args", [["footprint", M], ["--help"], ["recommend", "--help"]])
def test_closed_standard_output_is_one_line_not_a_crash(args):
    """Started with stdout closed (`>&-`), Python has no sys.stdout: said as such, exit 2 (the
    help too: it would be lost with exit 0)."""
    proc = subprocess.run(
        [sys.executable, "-m", "planner.cli", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    _assert_clean(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert _first(proc.stderr) == "error: standard output is closed", proc.stderr


# ------------------------------------------------------------------ small things users notice
def test_unknown_provider_hint_has_no_double_space(tmp_path):
    r, out = _run(["recommend", M, "--providers", "zzzz"], tmp_path)
    assert r.exit_code == 2 and "hint: known: aws" in out and "  " not in out, out


def test_t4_plans_say_what_runs(tmp_path):
    r, out = _run(["recommend", M, "--gpu", "t4", "--top", "1"], tmp_path)
    assert r.exit_code == 0, out
    assert "bf16->fp16" in out, "a bf16 checkpoint served with --dtype half says so"


@pytest.mark.parametrize("command", ["recommend", "generate", "footprint", "offers"])
def test_every_option_has_help(command):
    cmd = main.commands[command]
    bare = [p.opts[0] for p in cmd.params if p.param_type_name == "option" and not p.help]
    assert bare == [], f"options without help text: {bare}"


def test_a_config_that_is_not_a_small_json_file_is_refused_before_reading(tmp_path):
    """A device (/dev/zero would be read forever) or a huge file (weights given by mistake) is
    one line, exit 2, without reading it into memory."""
    r, out = _run(["footprint", "--config", "/dev/zero"], tmp_path)
    assert r.exit_code == 2 and "not a regular file" in out, out
    big = tmp_path / "model.safetensors"
    with big.open("wb") as f:
        f.truncate(60 * 2**20)  # sparse: takes no disk
    r, out = _run(["footprint", "--config", str(big)], tmp_path)
    assert r.exit_code == 2 and "too large for JSON" in out and "hint: give config.json" in out


def test_a_long_unknown_model_name_is_cut_in_the_message(tmp_path):
    r, out = _run(["recommend", "y" * 200], tmp_path)  # a longer one is a file name too long
    assert r.exit_code == 2 and _first(out).startswith("error: unknown model 'yyy"), out
    assert max(map(len, out.splitlines())) < 160, out


def test_a_revision_is_refused_where_it_would_be_ignored(tmp_path):
    r, out = _run(["footprint", M, "--revision", "main"], tmp_path)
    assert r.exit_code == 2 and "is a name in gpuplan's registry" in _first(out), out
    assert "hint: give the model's Hub id (org/name) with the revision" in out
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    r, out = _run(["footprint", "--config", str(tmp_path), "--revision", "v2"], tmp_path)
    assert r.exit_code == 2 and "not a local file" in _first(out), out


def test_config_and_gguf_together_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    (tmp_path / "m.gguf").write_bytes(b"junk")
    args = ["footprint", "--config", str(tmp_path), "--gguf", str(tmp_path / "m.gguf")]
    r, out = _run(args, tmp_path)
    assert r.exit_code == 2 and _first(out) == "error: give --config or --gguf, not both", out


@pytest.mark.parametrize("metadata", [[1], {"total_size": -5}, {"total_size": True}, None])
def test_a_malformed_safetensors_index_is_ignored_not_a_crash(tmp_path, metadata):
    """The index only refines the checkpoint size: a malformed one leaves it computed from the
    shape (the same figure as with no index at all)."""
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    r, plain = _run(["footprint", "--config", str(tmp_path), "--format", "json"], tmp_path)
    assert r.exit_code == 0, plain
    index = {"metadata": metadata, "weight_map": {}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    r, out = _run(["footprint", "--config", str(tmp_path), "--format", "json"], tmp_path)
    _assert_clean(out)
    assert r.exit_code == 0 and json.loads(out) == json.loads(plain), out


def test_model_name_with_escapes_is_printed_escaped(tmp_path):
    folder = tmp_path / "evil\x1b[31mred"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    r, out = _run(["footprint", "--config", str(folder / "config.json")], tmp_path)
    assert r.exit_code == 0, out
    assert "\x1b[31m" not in out and "\\x1b[31m" in out


def test_recommend_table_fits_an_80_column_terminal(tmp_path):
    r = CliRunner().invoke(main, ["recommend", M, "--top", "5"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    table = [ln for ln in r.output.splitlines() if ln.startswith(("│", "┃", "┏", "└"))]
    assert table and max(len(ln) for ln in table) <= 80, "\n".join(table)
    # rich squeezes a too-wide table by wrapping cells: a row continued on a second line starts
    # with an empty "#" cell. Fitting means dropping columns instead, one line per plan.
    assert not any(ln.startswith("│   │") for ln in table), "\n".join(table)
    wide = CliRunner().invoke(main, ["recommend", M, "--top", "5"], env={"COLUMNS": "400"})
    assert "TTFT ms" in wide.output and "TTFT ms" not in r.output  # detail kept when it fits


def test_no_writable_plan_names_each_reason_once(tmp_path):
    # 54 Vast offers all refused for the same reason: said once, with the count, not a list
    # of the same sentence.
    args = ["generate", M, "--providers", "vast", "--allow-cidr", CIDR, "--tls-domain",
            "llm.example.com", "--out", str(tmp_path / "out")]  # fmt: skip
    r, out = _run(args, tmp_path)
    _assert_clean(out)
    assert r.exit_code == 2, out  # the user's TLS option, not gpuplan, rules them out
    first = _first(out)
    assert first.count("random public ports") == 1 and " x Vast.ai maps" in first, out


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        ("awq: awq is not supported on AMD GPUs in vLLM's docs table", "another --quant"),
        ("mxfp4: MXFP4 needs compute capability 8.0+ (NVIDIA T4 is 7.5)", "newer --gpu"),
        ("NVIDIA V100 (compute capability 7.0): current vLLM wheels are CUDA 13 builds without "
         "sm_70 kernels", "newer --gpu"),
        ("fp8-block: does not fit: TP4: 53.6 GiB weights > 40.9 GiB; TP8: FP8 blocks of 128: "
         "intermediate size 1536 / TP=8 = 192 is not a whole number of blocks", "--max-nodes 2"),
    ],
)  # fmt: skip
def test_a_format_or_card_refusal_hints_at_another_format_or_card(reason, hint):
    """Review of issue 11: an unsupported format hinted at a smaller --context, which cannot
    help."""
    from planner.decide.checks import no_feasible_offer

    err = no_feasible_offer([reason, reason], 2)
    assert hint in err.hint and "--context" not in err.hint


def test_the_no_offer_refusal_names_the_cheapest_price_and_fitting_hints():
    """Review of issue 11: "175 x $12.54/h > --max-price 1" named the first offer, not the
    cheapest (how far the cap is); reasons were cut mid-word; the memory hint offered more GPUs
    per node under a pinned --tp and never --max-nodes when it was 1."""
    from planner.decide.checks import no_feasible_offer
    from planner.decide.plan import Need

    err = no_feasible_offer(["$12.54/h > --max-price 1", "$3.35/h > --max-price 1"], 2)
    assert err.message == "no feasible offer among 2: 2 x from $3.35/h > --max-price 1"
    # one price alike: no "from"; varied reasons of another kind: "e.g."
    same = no_feasible_offer(["$3.35/h > --max-price 1"] * 2, 2).message
    assert same == "no feasible offer among 2: 2 x $3.35/h > --max-price 1"
    slow = [
        "bf16 TP1: 46.6 tok/s < --min-tokens-per-s 500",
        "bf16 TP1: 80 tok/s < --min-tokens-per-s 500",
    ]
    assert "2 x e.g. bf16 TP1: 46.6 tok/s" in no_feasible_offer(slow, 2).message
    long = "bf16: does not fit: " + "TP8: 94.5 GiB weights + 7.8 GiB overhead; " * 6
    cut = no_feasible_offer([long], 1).message
    assert cut.endswith(" ...") and len(cut) < 220 and not cut[:-4].endswith(("ove", "GiB +"))
    pinned = no_feasible_offer([long], 1, Need(tp=2, max_nodes=1)).hint
    assert "another --tp" in pinned and "more GPUs per node" not in pinned
    assert "--max-nodes 2" in pinned
    assert "--max-nodes" not in no_feasible_offer([long], 1, Need()).hint
    # --gpus 1 on T4s: 8 machines have 2 GPUs, the 4 with one are too small; the hint is about
    # the ones with that count, not "no offer has that many GPUs"
    other = ["bf16: --gpus 1 asked; this machine has 2"] * 8
    mixed = no_feasible_offer([*other, long, long, long, long], 12).hint
    assert "--gpus" not in mixed and "--quant auto" in mixed
    assert "no offer has that many GPUs" in no_feasible_offer(other, 8).hint


@pytest.mark.parametrize(
    "args",
    [
        ["recommend", M, "--objective", "fast"],
        ["recommend", M, "--concurency", "3"],
        ["check", "--allow-cidr", CIDR],
        ["--bogus"],
    ],
)
def test_click_usage_errors_are_one_line_with_a_hint(tmp_path, args):
    """Review of issue 11: a bad choice or an unknown option printed click's three-line usage
    block; it is one `error:` line and a hint, exit 2, like every other bad input."""
    r, out = _run(args, tmp_path)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert r.exit_code == 2, out
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: see `")
    assert lines[1].endswith(" --help`")
    assert len(lines) == 2 and "Usage:" not in out


def test_the_refusal_leads_with_the_limit_you_set():
    """Review of issue 11: `--max-ttft 20` on 70B was refused with the memory of the many cards
    too small for it (51 and 37 of them) and a memory hint; the 13 offers that hold the model
    but miss the stated TTFT say what to relax, then the default level, then the rest."""
    from planner.decide.checks import no_feasible_offer

    memory = ["bf16: does not fit: TP1: 131.4 GiB weights > 21.7 GiB"] * 50
    default = ["bf16 TP4: 15.3 tok/s per stream < --min-tokens-per-s 20 (default service level)"]
    stated = ["bf16 TP1: TTFT 155 ms > --max-ttft 20"] * 3
    err = no_feasible_offer(memory + default * 5 + stated, 58)
    assert err.message.startswith("no feasible offer among 58: 3 x bf16 TP1: TTFT 155 ms")
    assert "| 5 x bf16 TP4: 15.3 tok/s" in err.message and "relax --max-ttft" in err.hint
    assert no_feasible_offer(memory, 50).message.startswith("no feasible offer among 50: 50 x")


def test_a_permission_error_on_a_path_read_does_not_send_the_user_to_a_writable_folder():
    """Sweep: `footprint` on an unreadable model folder said 'choose a folder you can write to'
    (the hint of the write paths); one hint now fits a read and a write."""
    import errno

    from planner.errors import local_file_error

    error = local_file_error(PermissionError(errno.EACCES, "Permission denied", "/models/d1"))
    assert error.message == "cannot use /models/d1: permission denied"
    assert "permissions" in (error.hint or "") and "write to" not in (error.hint or "")


@pytest.mark.parametrize(
    "args, where",
    [
        (["--providers", ""], "--providers"),
        (["--providers", ","], "--providers"),
        (["--regions", " "], "--regions"),
        (["--toml", "TOML"], "'constraints.providers'"),
    ],
)
def test_a_filter_given_with_no_item_is_refused_not_dropped(tmp_path, args, where):
    """`--providers ""` (an unset CI variable in `--providers "$P"`) used to mean every
    provider, the opposite of a filter, while `--gpu ""` was refused; an empty filter is now
    refused wherever it is written. An empty GPUPLAN_<KEY> stays unset, as for every key."""
    (tmp_path / "e.toml").write_text("[constraints]\nproviders = []\n")
    args = [a.replace("TOML", str(tmp_path / "e.toml")) for a in args]
    r, out = _run(["recommend", M, *args], tmp_path)
    assert r.exit_code == 2, out
    assert _first(out).startswith("error: ") and where in _first(out), out
    assert "has no item" in _first(out) and "leave it out" in out, out


@pytest.mark.parametrize(
    "args, env, hint",
    [
        (["footprint"], {}, "a local folder or .gguf file, or --config PATH"),
        (["recommend", "no-such-model-zz"], {}, "a local folder or .gguf file, or --config"),
        (["footprint", "--gguf", "NOFILE.gguf"], {}, "check the path"),
        (["recommend", M], {"GPUPLAN_CONTEXT": "abc"}, "set it to a whole number, or unset it"),
        (["recommend", M], {"GPUPLAN_SPOT": "maybe"}, "set it to true or false"),
    ],
)
def test_these_faults_say_what_to_do(tmp_path, args, env, hint):
    """Sweep: `recommend` without a model hinted at `--gguf PATH`, an option only footprint
    has (recommend reads a .gguf file as MODEL); a missing GGUF file and a GPUPLAN_<KEY> that
    is not a number had no hint at all."""
    r, out = _run(args, tmp_path, env={"HF_HUB_OFFLINE": "1", **env})
    assert r.exit_code == 2, out
    hints = [ln for ln in out.splitlines() if ln.startswith("hint: ")]
    assert hints and hint in hints[0] and "--gguf PATH" not in out, out


def test_compute_capability_is_written_as_major_dot_minor():
    """Sweep: an A100's compute capability was printed as "8" (f"{8.0:g}")."""
    from planner.decide.support import check_support
    from planner.model.quant import get_format
    from planner.model.sources import load_model_spec
    from planner.offers.gpus import gpu_table

    gpt_oss = load_model_spec("gpt-oss-20b")  # attention sinks: FP8 KV needs 8.9
    why = check_support(gpu_table()["a100-80gb-sxm"], get_format("mxfp4"), "fp8", gpt_oss)
    assert not why.ok and "is 8.0)" in why.reason, why


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["--version"], 0), (["--bogus"], 2)])
def test_a_reader_gone_before_parsing_ends_keeps_the_code(args, code):
    """Review: the guard was installed when the command ran, after click had parsed; `gpuplan
    --help | head -0` said "cannot use: Broken pipe", exit 2."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", *args], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc.stdout.close()
    proc.communicate(timeout=60)
    assert proc.returncode == code
