"""What generated projects pin. Bump together, then regenerate the golden files
(UPDATE_GOLDEN=1 pytest tests/test_generate.py)."""

# vLLM's OpenAI-compatible server image (https://hub.docker.com/r/vllm/vllm-openai/tags); v0.33.0
# is the release whose source the support rules were read from (CUDA 13 build: hosts need NVIDIA
# driver >= 580).
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
# The same vLLM release built for AMD GPUs (ROCm); tags mirror the CUDA image's (docs.vllm.ai
# deployment/docker; public workflows pin e.g. vllm/vllm-openai-rocm:v0.31.0).
VLLM_ROCM_IMAGE = "vllm/vllm-openai-rocm:v0.33.0"
# Caddy, which serves HTTPS with a Let's Encrypt certificate on GCP and Hetzner when a domain
# is given (the official image, hub.docker.com/_/caddy; 2.10.2 as pinned by public projects'
# renovate updates, 2025-09). Bump with the golden files.
CADDY_IMAGE = "caddy:2.10.2"
# The CUDA the image is built for: hosts whose driver reports an older CUDA cannot run it.
IMAGE_CUDA = 13.0
# RunPod's allowedCudaVersions (the CUDA a host's driver reports; unset = any host, including
# drivers too old for IMAGE_CUDA). The REST API takes only the values of its enum, whose newest
# is "13.0" (POST /v1/pods, PodCreateInput: "13.0", "12.9" ... "11.8";
# docs.runpod.io/api-reference/pods/POST/pods, read 2026-12-01): another value is refused with
# 400 and no pod. Add a newer CUDA here when that enum lists it.
RUNPOD_ALLOWED_CUDA_VERSIONS = ("13.0",)

# Python packages of the generated Pulumi program (versions exercised by gpuplan's tests).
BASE_REQUIREMENTS = {"pulumi": "3.272.0", "pulumi-random": "4.21.4"}
PROVIDER_REQUIREMENTS = {
    "aws": {"pulumi-aws": "7.51.1"},
    "gcp": {"pulumi-gcp": "10.2.0"},
    "runpod": {"requests": "2.34.2"},
    "vast": {"requests": "2.34.2"},
    "hetzner": {"pulumi-command": "1.2.1", "requests": "2.34.2"},
}

# AWS Deep Learning Base OSS AMI (an NVIDIA driver that runs CUDA 13, Docker, NVIDIA container
# toolkit, AWS CLI), through its public SSM parameter
# (docs.aws.amazon.com/dlami/latest/devguide/find-dlami-id.html).
AWS_DLAMI_SSM = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)

# GCP Deep Learning VM image family with the R580 driver preinstalled.
GCP_IMAGE_FAMILY = (
    "projects/deeplearning-platform-release/global/images/family/"
    "common-cu129-ubuntu-2204-nvidia-580"
)

# RunPod gpuTypes ids and Vast gpu_name values for canonical GPUs (the names their APIs use).
RUNPOD_GPU_TYPES = {
    "rtx-4090": "NVIDIA GeForce RTX 4090", "rtx-3090": "NVIDIA GeForce RTX 3090",
    "rtx-5090": "NVIDIA GeForce RTX 5090", "rtx-a6000": "NVIDIA RTX A6000",
    "rtx-a4000": "NVIDIA RTX A4000", "rtx-6000-ada": "NVIDIA RTX 6000 Ada Generation",
    "rtx-4000-ada": "NVIDIA RTX 4000 Ada Generation", "a40": "NVIDIA A40", "l4": "NVIDIA L4",
    "l40": "NVIDIA L40", "l40s": "NVIDIA L40S", "a100-80gb-pcie": "NVIDIA A100 80GB PCIe",
    "a100-80gb-sxm": "NVIDIA A100-SXM4-80GB", "h100-pcie": "NVIDIA H100 PCIe",
    "h100-sxm": "NVIDIA H100 80GB HBM3", "h100-nvl": "NVIDIA H100 NVL", "h200-sxm": "NVIDIA H200",
    "b200": "NVIDIA B200", "mi300x": "AMD Instinct MI300X OAM",
    # RunPod's id for its "RTX PRO 6000" line; its Workstation Edition is "NVIDIA RTX PRO 6000
    # Blackwell Workstation Edition" (live offers carry the id they were listed under).
    "rtx-pro-6000-blackwell": "NVIDIA RTX PRO 6000 Blackwell Server Edition",
}  # fmt: skip
VAST_GPU_NAMES = {
    "rtx-4090": "RTX 4090", "rtx-3090": "RTX 3090", "rtx-5090": "RTX 5090",
    "rtx-a6000": "RTX A6000", "rtx-6000-ada": "RTX 6000Ada", "a40": "A40", "l40s": "L40S",
    "l4": "L4", "a100-40gb-sxm": "A100 SXM4", "a100-80gb-sxm": "A100 SXM4",
    "a100-80gb-pcie": "A100 PCIE", "h100-sxm": "H100 SXM", "h100-pcie": "H100 PCIE",
    "h100-nvl": "H100 NVL", "h200-sxm": "H200", "b200": "B200",
    "rtx-pro-6000-blackwell": "RTX PRO 6000 S",  # Server Edition; the Workstation one is "... WS"
}  # fmt: skip
GCP_ATTACHED_ACCELERATORS = {"t4": "nvidia-tesla-t4", "v100-sxm2-16gb": "nvidia-tesla-v100"}

# GitHub Actions of the generated CI workflow, pinned by commit (a tag can be moved to other
# code). The SHAs are the releases' commits as pinned in public workflows (code search,
# 2026-11: checkout v4.2.2, setup-python v5, pulumi/actions v7); verify with
# `git ls-remote https://github.com/<action> refs/tags/<tag>` when bumping.
GITHUB_ACTIONS = {
    "checkout": "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",  # v4.2.2
    "setup_python": "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065",  # v5
    "pulumi": "pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d",  # v7
}
