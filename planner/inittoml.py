"""The commented gpuplan.toml `gpuplan init` writes: every key of the settings table, the ones
it knows set, the others as examples (tests check each example is a valid setting)."""

from __future__ import annotations

import json

from planner.settings import OBJECTIVES, default_of


def config_template(
    model: str,
    allow_cidrs: list[str],
    providers: list[str] | None,
    stack: str,
    out: str,
    ci_install: str | None = None,
) -> str:
    """A commented gpuplan.toml for `gpuplan init` (values as TOML strings via json.dumps)."""
    prov = json.dumps(providers) if providers else '["aws", "gcp", "runpod", "vast"]'
    # without --allow-cidr the line stays a comment: generate then refuses, naming the key,
    # where an example address (RFC 5737, routed nowhere) would open the endpoint to no one
    cidrs = (
        f"allow_cidrs = {json.dumps(allow_cidrs)}   # who may reach the serving port"
        if allow_cidrs
        else '# allow_cidrs = ["203.0.113.7/32"]   # who may reach the serving port: required'
    )
    ci = (
        f"ci_install = {json.dumps(ci_install)}"
        if ci_install
        else '# ci_install = "gpuplan==0.2.0"  # what CI installs (default: the gpuplan you run)'
    )
    return f"""# gpuplan.toml: what to serve and where. Commit it with the generated project
# ([deploy].out). gpuplan recommend, generate, check and deploy read it.
# Precedence: command-line flag > GPUPLAN_<KEY> environment variable > this file > default.

[model]
model = {json.dumps(model)}   # registry name, Hugging Face id or local folder
# revision = "main"           # a Hub id's branch, tag or commit: the plan serves its commit
# quant = "auto"              # auto | bf16 | fp8 | awq | gptq | nvfp4 | ...

[workload]
context = {default_of("context")}                # longest request (vLLM --max-model-len)
# concurrency = 8               # requests of `context` tokens at once (default 1)
prompt_tokens = {default_of("prompt_tokens")}          # typical prompt and answer (speed, cost)
output_tokens = {default_of("output_tokens")}
# kv_cache_dtype = "fp8"
# job_requests = 2000000      # an offline job's size (makes the workload "batch")

[constraints]
objective = "{default_of("objective")}"  # {" | ".join(OBJECTIVES)}
providers = {prov}
# regions = ["us-east-1"]
# gpu = "l40s"
# max_price = 5.0             # USD per hour
# min_tokens_per_s = 20       # per stream
# spot = false
# max_nodes = {default_of("max_nodes")}               # nodes when one machine is too small
# target_rps = 2.0            # requests a second: sizes replicas
# deadline_hours = 24         # finish the job of job_requests in time: sizes replicas
# spread = true               # machines may share the streams even when one serves them
# max_replicas = {default_of("max_replicas")}            # most identical machines a load may use

[deploy]
out = {json.dumps(out)}         # where `gpuplan generate` writes the Pulumi project
stack = {json.dumps(stack)}
{cidrs}
# ssh_cidr = "203.0.113.7/32"
# ssh_key = "~/.ssh/id_ed25519.pub"
wait_healthy = {default_of("wait_healthy")}           # seconds `gpuplan deploy` waits for the model
#   (0: no check; the CI workflow passes its own: the GPUPLAN_WAIT_HEALTHY variable, else 0)
{ci}
# network = "vpc-0123"        # an existing AWS VPC / GCP network (default: a dedicated one)
# subnets = ["subnet-0123"]
# disk_gb = 500               # escape hatches: root disk, image, extra `vllm serve` flags
# image = "vllm/vllm-openai:v0.33.0"
# extra_vllm_args = ["--enable-prefix-caching"]
# allow_remote_code = true    # a model vLLM starts only with --trust-remote-code (Kimi K2):
#   its repository's code then runs on the machine; read it first
"""
