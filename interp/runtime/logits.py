"""Next-token log-probabilities at chosen positions, without the [tokens, vocab] logits.

A causal LM's forward builds logits for every position: [tokens, vocab] floats, 8.6 GB at 8k tokens for
Gemma 3's 262,144-token vocabulary. The losses and likelihoods the analyses need read one token per
position, so here the model body runs once and the LM head runs on the needed positions only, a few
rows at a time (their log-softmax never exceeds CHUNK x vocab floats).

The LM head is the model's output embedding followed by the final logit soft-capping where the config
has one (Gemma 2 / 3). Models may do more after it (a logit scale, ...): every call checks the head on
the last position against the logits transformers computes in the same forward, and where they differ
falls back to transformers' own logits at the needed positions (exact, only heavier).
"""

from __future__ import annotations

import torch

from interp.runtime.layout import text_config

CHUNK = 128  # positions per LM-head call: 128 x 262,144 float32 logits = 134 MB


@torch.no_grad()
def next_token_logprobs(model, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask=None,
                        chunk: int = CHUNK) -> torch.Tensor:
    """log p(input_ids[b, p + 1] | input_ids[b, :p + 1]) for every row b and each of `positions` (1-D,
    shared by the rows, each < N - 1): [batch, len(positions)] float32. Interventions and captures active
    around the call act on the forward as usual."""
    positions = torch.as_tensor(positions, dtype=torch.long, device=input_ids.device)
    hidden, last_logits = _final_hidden(model, input_ids, attention_mask)
    targets = input_ids[:, positions + 1]
    if not _head_matches(model, hidden[:, -1], last_logits):
        logits = model.hf(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=positions).logits
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    selected = hidden[:, positions].reshape(-1, hidden.shape[-1])  # [batch * K, d_model]
    flat_targets = targets.reshape(-1)
    out = torch.empty(len(flat_targets), dtype=torch.float32, device=hidden.device)
    for start in range(0, len(flat_targets), chunk):
        rows = slice(start, start + chunk)
        logprobs = torch.log_softmax(_head(model, selected[rows]), dim=-1)
        out[rows] = logprobs.gather(-1, flat_targets[rows, None])[:, 0]
    return out.reshape(targets.shape)


def _final_hidden(model, input_ids, attention_mask):
    """The body's last hidden states [batch, N, d_model] and transformers' logits of the last position
    [batch, vocab], from one forward that builds no other logits."""
    seen = {}

    def keep(module, args, output):
        seen["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    model.check_length(input_ids.shape[1])
    handle = model.hf.base_model.register_forward_hook(keep)
    try:
        logits = model.hf(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1).logits[:, -1]
    finally:
        handle.remove()
    return seen["hidden"], logits


def _head(model, hidden: torch.Tensor) -> torch.Tensor:
    """Float32 logits of hidden states [..., d_model]: output embedding, then the final soft-capping."""
    logits = model.hf.get_output_embeddings()(hidden)
    cap = getattr(text_config(model.hf.config), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


def _head_matches(model, hidden: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether _head reproduces transformers' logits (hidden [batch, d_model], logits [batch, vocab])."""
    ours, theirs = _head(model, hidden), logits.float()
    return ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * (1 + theirs.abs().max().item()))
