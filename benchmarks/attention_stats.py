"""Time and peak memory of head statistics at growing context length, side by side in one process:

  (a) sdpa   - the model's forward through SDPA only (what running the model costs anyway)
  (b) eager  - transformers' eager attention with output_attentions (the [heads, N, N] way)
  (c) interp - interp's forward with ALL statistics for ALL heads and ALL queries
               (lse, argmax, entropy, mass on 2 key spans, a 64x64 pooled map, per-key mass)

CPU (default): the bundled SmolLM2-135M up to its 8,192 positions.
    python benchmarks/attention_stats.py --lengths 1024,2048,4096,8192 --eager-max 4096
--model NAME: any model load_model() knows, e.g. Gemma 3 270M (head dim 256, one KV head, window layers):
    python benchmarks/attention_stats.py --model gemma3-270m --lengths 1024,2048,4096,8192 --eager-max 2048
GPU (--gpu): one Llama-8B-shaped layer (32 query heads, 8 KV heads, head dim 128, random bf16 weights).
    python benchmarks/attention_stats.py --gpu --lengths 8192,32768,131072 --eager-max 16384
Prints the median of --repeats interleaved rounds, then one round with a competing busy process (one core
taken, as on a shared machine; --no-busy skips it); ratios are against (a) at the same length.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import torch
import transformers as tf

import interp
import interp.runtime.fast_attention as fast_attention
from interp import StatsRequest
from interp.data import make_haystack

ALL_STATS = StatsRequest(lse=True, argmax=True, entropy=True, spans=((0, 1), (16, 64)), pooled=(64, 64), key_mass=True)


class PeakMemory:
    """Peak resident memory (CPU) or peak CUDA allocation during a block, in GiB.

    CPU: Linux resets the process's RSS high-water mark when 5 is written to /proc/self/clear_refs and
    reports it as VmHWM, so nothing samples in a thread beside the timed work (a sampler on 2 cores
    slows the many small ops of the statistics more than SDPA's few large ones)."""

    def __init__(self, cuda: bool):
        self.cuda, self.peak = cuda, 0.0

    def __enter__(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**30
            return
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        self.peak = kib / 2**20


def timed(run, cuda: bool) -> tuple[float, float]:
    """(seconds, peak GiB) of one run."""
    with PeakMemory(cuda) as memory:
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak


def measure(runs: dict, cuda: bool, repeats: int) -> dict:
    """{name: (median seconds, peak GiB)} over `repeats` rounds, the runs taking turns in each round so
    that a slow spell of the machine hits every side alike (after one warm-up round on GPU)."""
    if cuda:
        for run in runs.values():
            run()
    times, peaks = {name: [] for name in runs}, {name: 0.0 for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t, peak = timed(run, cuda)
            times[name].append(t)
            peaks[name] = max(peaks[name], peak)
    return {name: (statistics.median(times[name]), peaks[name]) for name in runs}


@contextmanager
def competing_process():
    """One other process busy on one core for the block (a machine shared with another job)."""
    # busy until this process ends, even when it is killed before the block exits
    busy = subprocess.Popen([sys.executable, "-c", f"import os\nwhile os.getppid() == {os.getpid()}: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        busy.kill()
        busy.wait()


def cpu_models(source=None):
    """The model (default: the bundled one) and a transformers eager copy of it, from its cached weights."""
    model = interp.load_model(source)
    eager = tf.AutoModelForCausalLM.from_pretrained(model.hf.config._name_or_path, attn_implementation="eager").eval()
    return model, eager


def llama8b_layer(device):
    config = tf.LlamaConfig(vocab_size=1024, hidden_size=4096, intermediate_size=14336, num_hidden_layers=1,
                            num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144)
    torch.manual_seed(0)
    hf = tf.LlamaForCausalLM(config).to(device=device, dtype=torch.bfloat16).eval()
    eager = tf.LlamaForCausalLM(config).to(device=device, dtype=torch.bfloat16).eval()
    eager.load_state_dict(hf.state_dict())
    eager.set_attn_implementation("eager")
    return interp.InterpModel(hf, source="llama-8b-layer"), eager


def input_ids(model, n: int, device) -> torch.Tensor:
    if model.tokenizer is None:
        return torch.randint(0, model.hf.config.vocab_size, (1, n), device=device)
    text = make_haystack(model.tokenizer, n + 64)
    ids = model.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :n]
    return ids.to(device)


def attention_tflops(layout, n: int, seconds: float) -> float:
    """Causal QK^T for every query head (what the statistics need), per second."""
    flops = 2 * layout.n_layers * layout.n_heads * layout.head_dim * n * (n + 1) / 2
    return flops / seconds / 1e12


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="a Llama-8B-shaped layer on CUDA instead of the bundled model")
    parser.add_argument("--model", default=None, help="a model load_model() knows (CPU; default: the bundled one)")
    parser.add_argument("--lengths", default=None, help="comma-separated context lengths")
    parser.add_argument("--eager-max", type=int, default=None, help="longest context to try eager attention at")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median of each side is kept")
    parser.add_argument("--no-busy", action="store_true", help="skip the round with a competing busy process")
    parser.add_argument("--no-fused-lse", action="store_true", help="statistics find the log-sum-exp themselves")
    args = parser.parse_args()
    cuda = args.gpu
    fast_attention.ENABLED = not args.no_fused_lse
    device = "cuda" if cuda else "cpu"
    lengths = [int(x) for x in (args.lengths or ("8192,32768,131072" if cuda else "1024,2048,4096,8192")).split(",")]
    eager_max = args.eager_max or (16384 if cuda else 4096)
    model, eager = llama8b_layer(device) if cuda else cpu_models(args.model)
    torch.set_grad_enabled(False)

    rows, busy_rows = [], []
    for n in lengths:
        ids = input_ids(model, n, device)
        def run_sdpa():
            model.hf(input_ids=ids, logits_to_keep=1)

        def run_stats():
            with model.capture(stats=ALL_STATS, positions="all"):
                model.hf(input_ids=ids, logits_to_keep=1)

        sides = {"sdpa": run_sdpa, "stats": run_stats}
        result = measure(sides, cuda, args.repeats)
        sdpa, stats = result["sdpa"], result["stats"]
        rows.append((n, sdpa, stats))
        print(f"N={n}: sdpa {sdpa[0]:.2f}s {sdpa[1]:.2f}GiB | interp stats {stats[0]:.2f}s {stats[1]:.2f}GiB", flush=True)
        if not args.no_busy:
            with competing_process():
                loaded = measure(sides, cuda, 1)
            busy_rows.append((n, loaded["sdpa"], loaded["stats"]))
            print(f"N={n}, one competing busy process: sdpa {loaded['sdpa'][0]:.2f}s | "
                  f"interp stats {loaded['stats'][0]:.2f}s", flush=True)
    eager_rows = {}
    for n in [n for n in lengths if n <= eager_max]:  # last: eager's peak can swamp the others
        ids = input_ids(model, n, device)
        run_eager = lambda: eager(input_ids=ids, output_attentions=True, logits_to_keep=1)  # noqa: E731
        eager_rows[n] = measure({"eager": run_eager}, cuda, 1)["eager"]
        print(f"N={n}: eager {eager_rows[n][0]:.2f}s {eager_rows[n][1]:.2f}GiB", flush=True)

    memory = "peak GPU alloc" if cuda else "peak RSS"
    print(f"\n{'N':>7} | {'sdpa s':>7} {memory:>14} | {'eager s':>8} {memory:>14} | {'interp s':>8} {memory:>14} | "
          f"{'stats/sdpa time':>15} {'stats/sdpa mem':>14} | {'stats TFLOP/s':>13}")
    for n, (t_a, m_a), (t_c, m_c) in rows:
        t_b, m_b = eager_rows.get(n, (float("nan"), float("nan")))
        print(f"{n:>7} | {t_a:>7.2f} {m_a:>12.2f}GB | {t_b:>8.2f} {m_b:>12.2f}GB | {t_c:>8.2f} {m_c:>12.2f}GB | "
              f"{t_c / t_a:>15.2f} {m_c / m_a:>14.2f} | {attention_tflops(model.layout, n, t_c):>13.3f}")
    if busy_rows:
        print("\none round with a competing busy process (python -c 'while True: pass')")
        print(f"{'N':>7} | {'sdpa s':>7} | {'interp s':>8} | {'stats/sdpa time':>15} | {'stats ' + memory:>20}")
        for n, (t_a, _), (t_c, m_c) in busy_rows:
            print(f"{n:>7} | {t_a:>7.2f} | {t_c:>8.2f} | {t_c / t_a:>15.2f} | {m_c:>18.2f}GB")
    print(f"\n{model}; device {device}; torch threads {torch.get_num_threads()}; median of {args.repeats} rounds; "
          f"eager run up to N={eager_max}; interp statistics impl: {'triton' if cuda else 'chunked'} "
          "(INTERP_STATS_IMPL overrides); log-sum-exp from the fused attention call "
          f"{'on' if fast_attention.ENABLED else 'off'}")


if __name__ == "__main__":
    main()
