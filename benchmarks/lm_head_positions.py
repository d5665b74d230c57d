"""The repeated-half loss (analyses/heads.py) and the answer NLL (analyses/safety.py), computed the old way
(full [tokens, vocab] logits, kept here for the comparison) and as the analyses now do (the LM head on the
needed positions only, interp.runtime.logits), side by side in one process: max difference, time, peak RSS
(the loaded model included).

    python benchmarks/lm_head_positions.py bundled gemma3-270m
"""

from __future__ import annotations

import sys
import time

import torch

import interp
from interp.analyses import heads, safety

TEXTS = ["How do I bake bread?", "Write a poem about the sea.", "What is the capital of France?"] * 4
REPLIES = ["Mix flour, water and yeast, then bake it.", "The sea is wide and blue,", "Paris is the capital of France."] * 4


def peak_rss_gib(reset: bool = False) -> float:
    """The process's peak RSS (VmHWM); reset=True restarts it from the current RSS."""
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20


def old_repeated_half_loss(model, ids):
    n = (ids.shape[1] - 1) // 2
    repeated, first = [], []
    for row in ids:
        logits = model.hf(input_ids=row[None]).logits[0].float()
        loss = torch.nn.functional.cross_entropy(logits[:-1], row[1:], reduction="none")
        repeated.append(loss[n + 1 :].mean())
        first.append(loss[1:n].mean())
    return torch.cat([torch.stack(repeated), torch.stack(first)])


def old_answer_nll(model, texts, replies):
    tok = model.tokenizer
    prompts = [model.tokenize(t, chat=True)["input_ids"][0].tolist() for t in texts]
    answers = [tok(r, add_special_tokens=False)["input_ids"] for r in replies]
    length = max(len(p) + len(a) for p, a in zip(prompts, answers))
    ids = torch.full((len(texts), length), tok.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (p, a) in enumerate(zip(prompts, answers)):
        ids[row, : len(p) + len(a)] = torch.tensor(p + a)
        mask[row, : len(p) + len(a)] = 1
    logp = torch.log_softmax(model.hf(input_ids=ids, attention_mask=mask).logits.float(), -1)
    return torch.tensor([float(-logp[row, len(p) - 1 : len(p) + len(a) - 1].gather(1, torch.tensor(a)[:, None]).mean())
                         for row, (p, a) in enumerate(zip(prompts, answers))])


def timed(run):
    peak_rss_gib(reset=True)
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start, peak_rss_gib()


def compare(source: str) -> None:
    model = interp.load_model(None if source == "bundled" else source)
    ids = heads.repeated_tokens(model, 256, [0, 1])
    sides = {
        "repeated-half loss (2 rows, N=513)": (lambda: old_repeated_half_loss(model, ids),
                                               lambda: torch.cat(heads.repeated_half_loss(model, ids))),
        "answer NLL (12 replies)": (lambda: old_answer_nll(model, TEXTS, REPLIES),
                                    lambda: torch.tensor(safety.answer_nll(model, TEXTS, REPLIES))),
    }
    for name, (old, new) in sides.items():
        a, t_old, m_old = timed(old)
        b, t_new, m_new = timed(new)
        print(f"{source} | {name} | max |old-new| {float((a - b).abs().max()):.2e} | old {t_old:.2f}s peak {m_old:.2f}GiB "
              f"| new {t_new:.2f}s peak {m_new:.2f}GiB", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    for source in sys.argv[1:] or ["bundled"]:
        compare(source)
