"""The attention output and its log-sum-exp from one fused call, where the installed torch offers one.

Statistics need every query's log-sum-exp (lse); the fused SDPA kernels compute it anyway, and handing it to
interp.kernels saves them the max and sum passes over the logits. `attention_with_lse` returns None
wherever no fused call fits (another device, an op missing in an older torch, an input a kernel refuses);
the caller then runs the plain path and the kernels find the lse themselves. Same numbers either way.
"""

from __future__ import annotations

import torch

HIDDEN = -1e29  # an additive mask at or below this hides the key (as in interp.kernels)
ENABLED = True  # False: always the plain path (tests and benchmarks compare the two)


def attention_with_lse(query, key, value, mask, scaling: float, causal: bool):
    """(output [B, Nq, Hq, D] as transformers' attention returns it, lse [B, Hq, Nq] fp32 with -inf where a
    query sees no key), or None. query [B, Hq, Nq, D], key/value [B, Hkv, Nk, D]; mask None or bool
    [B|1, 1, Nq, Nk] (True = attend) or additive float; causal as the module says (used only without mask)."""
    if not ENABLED:
        return None
    n_query, n_key = query.shape[2], key.shape[2]
    is_causal = causal and mask is None and n_query > 1
    if is_causal and n_key != n_query:  # the fused kernels align causal masks top-left: not our queries
        return None
    if query.device.type == "cpu":
        fused = _cpu
    elif query.device.type == "cuda":
        fused = _cuda
    else:
        return None
    additive = None  # the fused kernels take masks as additive floats of the query's dtype
    if mask is not None and mask.dtype == torch.bool:
        additive = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill_(~mask, float("-inf"))
    elif mask is not None:
        additive = mask.to(query.dtype).masked_fill(mask <= HIDDEN, float("-inf"))
    try:
        result = fused(query, key, value, additive, scaling, is_causal)
    except (RuntimeError, NotImplementedError):  # a kernel that refuses this input: take the plain path
        return None
    if result is None:
        return None
    output, lse = result
    lse = lse[:, :, :n_query].float()  # the CUDA kernel pads its lse to a multiple of 32 queries
    if additive is not None:  # a query with every key masked: the kernels report lse 0 (and output 0)
        dead = (additive == float("-inf")).all(-1).expand(lse.shape)
        lse = lse.masked_fill(dead, float("-inf"))
    return output.transpose(1, 2).contiguous(), lse


def _cpu(query, key, value, additive, scaling, is_causal):
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:
        return None
    return op(query, key, value, 0.0, is_causal, attn_mask=additive, scale=scaling)  # GQA is native here


def _cuda(query, key, value, additive, scaling, is_causal):
    group = query.shape[1] // key.shape[1]
    if group > 1:  # the CUDA kernels want one K/V head per query head
        key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention", None)
    if flash is not None and additive is None and query.dtype in (torch.float16, torch.bfloat16):
        output, lse = flash(query, key, value, 0.0, is_causal, False, scale=scaling)[:2]
        return output, lse
    efficient = getattr(torch.ops.aten, "_scaled_dot_product_efficient_attention", None)
    if efficient is None:
        return None
    bias = None if additive is None else additive.expand(query.shape[0], query.shape[1], -1, -1)
    output, lse = efficient(query, key, value, bias, True, 0.0, is_causal, scale=scaling)[:2]
    return output, lse
