"""Recurrent mixers of hybrid models: their tensors and the fixed state one sequence holds.

Gated DeltaNet (Qwen3-Next) and Mamba-2 (Nemotron-H, Granite 4.0-H) layers keep no per-token
cache: each sequence holds a short convolution window and a recurrent (SSM) state whose size
does not depend on context. Shapes and dtypes follow vLLM:
https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/layers/mamba/mamba_utils.py
(MambaStateShapeCalculator.gated_delta_net_state_shape / mamba2_state_shape,
MambaStateDtypeCalculator: conv state in the model dtype, SSM state likewise unless the model
or --mamba-ssm-cache-dtype pins one).
"""

from __future__ import annotations

from planner.model.values import RecurrentSpec, Role, Tensor

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def recurrent_tensors(rs: RecurrentSpec, hidden: int, p: str, mtp: bool) -> list[Tensor]:
    """The mixer tensors of one recurrent layer (prefix ``p`` = the layer's name)."""

    def lin(name: str, out_f: int, in_f: int, role: Role) -> Tensor:
        return Tensor(name, (out_f, in_f), role, linear=True, in_mtp=mtp)

    def vec(name: str, *shape: int, role: Role = "ssm") -> Tensor:
        return Tensor(name, shape, role, in_mtp=mtp)

    if rs.kind == "gdn":
        # vLLM qwen3_next.py Qwen3NextGatedDeltaNet: in_proj_qkvz (q, k, v, z), in_proj_ba
        # (beta, alpha per value head), depthwise conv1d without bias, dt_bias, A_log, a gated
        # RMSNorm over head_v_dim and out_proj.
        a = f"{p}.linear_attn"
        kd = rs.num_k_heads * rs.head_k_dim
        return [
            lin(f"{a}.in_proj_qkvz.weight", 2 * kd + 2 * rs.inner_size, hidden, "attn_q"),
            lin(f"{a}.in_proj_ba.weight", 2 * rs.num_heads, hidden, "attn_q"),
            vec(f"{a}.conv1d.weight", rs.conv_dim, 1, rs.conv_kernel),
            vec(f"{a}.dt_bias", rs.num_heads),
            vec(f"{a}.A_log", rs.num_heads),
            vec(f"{a}.norm.weight", rs.head_dim, role="norm"),
            lin(f"{a}.out_proj.weight", hidden, rs.inner_size, "attn_o"),
        ]
    # Mamba-2 (vLLM mamba_mixer2.py MambaMixer2): in_proj emits z, x, B, C and dt; conv1d over
    # x, B, C; A_log, D and dt_bias per head; gated RMSNorm over d_inner; out_proj.
    m = f"{p}.mixer"
    proj = 2 * rs.inner_size + 2 * rs.n_groups * rs.state_size + rs.num_heads
    out = [
        lin(f"{m}.in_proj.weight", proj, hidden, "attn_q"),
        vec(f"{m}.conv1d.weight", rs.conv_dim, 1, rs.conv_kernel),
    ]
    if rs.conv_bias:
        out.append(vec(f"{m}.conv1d.bias", rs.conv_dim))
    out += [
        vec(f"{m}.dt_bias", rs.num_heads),
        vec(f"{m}.A_log", rs.num_heads),
        vec(f"{m}.D", rs.num_heads),
        vec(f"{m}.norm.weight", rs.inner_size, role="norm"),
        lin(f"{m}.out_proj.weight", hidden, rs.inner_size, "attn_o"),
    ]
    return out


def _extra_groups(n_groups: int, tp: int) -> int:
    """vLLM replicates B/C groups so each head shard has one (extra_groups_for_head_shards)."""
    return 0 if n_groups % tp == 0 else tp - n_groups


def state_bytes_per_layer(rs: RecurrentSpec, tp: int, model_dtype: str) -> int:
    """Bytes of one sequence's conv + recurrent state in one layer on one GPU (unpadded)."""
    conv_bytes = DTYPE_BYTES.get(model_dtype, 2)
    ssm_bytes = DTYPE_BYTES.get(rs.state_dtype or model_dtype, 2)
    if rs.kind == "gdn":
        conv = (rs.conv_kernel - 1) * (rs.conv_dim // tp)
        ssm = (rs.num_heads // tp) * rs.head_dim * rs.head_k_dim
    else:
        groups = rs.n_groups + _extra_groups(rs.n_groups, tp)
        conv_dim = rs.inner_size + 2 * groups * rs.state_size
        conv = (rs.conv_kernel - 1) * (conv_dim // tp)
        ssm = (rs.num_heads // tp) * rs.head_dim * rs.state_size
    return conv * conv_bytes + ssm * ssm_bytes
