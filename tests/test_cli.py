"""The command line through click's CliRunner: exit codes, stderr, JSON schema, no tracebacks."""

from __future__ import annotations

import json

import pytest


def test_footprint_table_on_registry_model(cli):
    r = cli("footprint", "llama-3.1-8b")
    assert r.exit_code == 0, r.output
    assert "8,030,261,248 total" in r.output and "exact" in r.output
    for card in ("24GB", "40GB", "48GB", "80GB", "141GB"):
        assert card in r.output


def test_footprint_json_schema(cli):
    r = cli(
        "footprint",
        "qwen3-30b-a3b",
        "--quant",
        "fp8",
        "--context",
        "16384",
        "--concurrency",
        "4",
        "--kv-cache-dtype",
        "fp8",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["schema"] == "gpuplan.footprint/1"
    assert data["parameters"] == {"total": 30532122624, "active": 3353032704, "mtp": 0}
    assert data["quantization"]["format"] == "fp8"
    assert data["kv_cache"]["bytes_per_token"] == 48 * 2 * 4 * 128 * 1
    assert [t["tp"] for t in data["tensor_parallel"]] == [1, 2, 4, 8]
    tp1 = data["tensor_parallel"][0]
    assert tp1["per_gpu_bytes"]["total"] == sum(
        tp1["per_gpu_bytes"][k] for k in ("weights", "kv_cache", "overhead")
    )
    assert set(tp1["max_concurrency"]) == {"24GB", "40GB", "48GB", "80GB", "141GB"}


def test_guess_is_labelled_in_json_and_table(cli):
    r = cli("footprint", "MyLab-Chat-13B", "--format", "json")
    data = json.loads(r.output)
    assert data["model"]["is_guess"] is True
    assert any(n.startswith("GUESS") for n in data["notes"])
    assert "GUESS" in cli("footprint", "MyLab-Chat-13B").output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["footprint", "llama-3.1-8b", "--context", "0"], "--context"),
        (["footprint", "llama-3.1-8b", "--concurrency", "-2"], "--concurrency"),
        (["footprint", "llama-3.1-8b", "--quant", "int3"], "valid formats"),
        (["footprint", "mistery-model"], "unknown model"),
        (["footprint", "llama-3.1-8b-awq", "--quant", "fp8"], "pre-quantized"),
        (["footprint"], "no model given"),
        (["footprint", "llama-3.1-8b", "--kv-cache-dtype", "int4"], "kv-cache-dtype"),
    ],
)
def test_bad_input_is_usage_error_without_traceback(cli, args, needle):
    r = cli(*args)
    assert r.exit_code == 2
    assert needle in r.output
    assert "Traceback" not in r.output


def test_corrupt_gguf_and_bad_config_exit_2(cli, tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"junk")
    r = cli("footprint", "--gguf", str(bad))
    assert r.exit_code == 2 and "not a readable GGUF" in r.output
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    r = cli("footprint", "--config", str(tmp_path / "config.json"))
    assert r.exit_code == 2 and "num_attention_heads" in r.output


def test_an_instance_type_matches_in_any_case(cli):
    def types(name):
        r = cli("offers", "--instance-type", name, "--format", "json")
        assert r.exit_code == 0, r.output
        return {row["instance_type"] for row in json.loads(r.output)["offers"]}

    assert types("G5.XLarge") == types("g5.xlarge") == {"g5.xlarge"}
    r = cli("recommend", "llama-3.1-8b", "--instance-type", "g5.xlarg")  # whole names only
    assert r.exit_code == 3 and "--instance-type" in r.output, r.output


def test_a_stray_argument_is_an_ordinary_usage_error(cli):
    r = cli("footprint", "llama-3.1-8b", "8192")
    assert r.exit_code == 2 and r.output.startswith("error: extra argument (8192)"), r.output
    assert "unexpected" not in r.output  # the word is kept for gpuplan's own faults (exit 1)


def test_a_command_group_alone_shows_its_help_like_gpuplan_alone(cli):
    for args in ((), ("catalog",)):
        r = cli(*args)
        assert r.exit_code == 2 and r.output.startswith("Usage: "), r.output
        assert "error:" not in r.output and "Commands:" in r.output


def test_a_repeated_provider_flag_adds_up_like_a_comma_list(cli):
    def providers(*args):
        r = cli("offers", "--gpu", "h100", "--format", "json", *args)
        assert r.exit_code == 0, r.output
        return {row["provider"] for row in json.loads(r.output)["offers"]}

    both = providers("--provider", "aws", "--provider", "gcp")
    assert both == {"aws", "gcp"} == providers("--providers", "aws,gcp")
    r = cli("recommend", "llama-3.1-8b", "--provider", "runpod", "--provider", "vast",
            "--format", "json", "--top", "50")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert {p["offer"]["provider"] for p in json.loads(r.output)["plans"]} == {"runpod", "vast"}


def test_models_lists_registry(cli):
    r = cli("models", "--format", "json")
    rows = json.loads(r.output)
    assert len(rows) >= 30
    assert {"openai/gpt-oss-120b", "deepseek-ai/DeepSeek-R1"} <= {row["id"] for row in rows}


@pytest.mark.parametrize(
    ("args", "schema"),
    [
        (["footprint", "llama-3.1-8b", "--format", "json"], "gpuplan.footprint/1"),
        (["offers", "--gpu", "h100", "--format", "json"], "gpuplan.offers-list/1"),
        (["recommend", "llama-3.1-8b", "--format", "json"], "gpuplan.recommendation/1"),
    ],
)
def test_offline_commands_do_not_import_heavy_sdks(args, schema):
    """Offline commands must not import cloud SDKs, numpy or the Hub client (start-up time).
    The command must also succeed: one that failed early would import nothing either."""
    import subprocess
    import sys

    code = (
        "import sys; from planner.cli import main\n"
        f"try: main({args!r})\n"
        "except SystemExit as exc: code = exc.code\n"
        "else: code = 0\n"
        "heavy = [m for m in ('boto3', 'numpy', 'huggingface_hub', 'gguf', 'pulumi', 'google',"
        " 'requests', 'gpuhunt') if m in sys.modules]\n"
        "print('EXIT', code, 'HEAVY', heavy, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "EXIT 0 HEAVY []" in out.stderr, out.stderr[-2000:]
    assert json.loads(out.stdout)["schema"] == schema


def test_ctrl_c_while_the_command_line_loads_is_interrupted_not_a_traceback(monkeypatch, capsys):
    """The first few tenths of a second of every run import the commands: a Ctrl-C there printed
    a KeyboardInterrupt traceback (the error boundary runs only once a command does)."""
    import importlib
    import sys
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    module, _, function = scripts["project"]["scripts"]["gpuplan"].partition(":")

    class Interrupting:  # Ctrl-C pressed while planner.cli is being imported
        def find_spec(self, name, path=None, target=None):
            if name == "planner.cli":
                raise KeyboardInterrupt
            return None

    for name in [m for m in sys.modules if m == "planner.cli" or m.startswith("planner.cli.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    try:
        getattr(importlib.import_module(module), function)()
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C while the command line loads escaped as a traceback")
    except SystemExit as exc:
        assert exc.code == 130
    else:
        pytest.fail("the command ran although Ctrl-C was pressed")
    assert capsys.readouterr().err == "interrupted\n"
