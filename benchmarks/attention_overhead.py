"""interp's attention with nothing active vs transformers' SDPA: the same model, one process.

    python benchmarks/attention_overhead.py [--lengths 128,1024,4096] [--repeats 3]
Prints forward time of each and the ratio interp / sdpa (the goal: ~1.00).
"""

import argparse
import time

import torch
import transformers as tf

import interp
from interp.data import make_haystack


def best_time(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="128,1024,4096")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = interp.load_model()
    sdpa = tf.AutoModelForCausalLM.from_pretrained(model.hf.config._name_or_path, attn_implementation="sdpa").eval()
    torch.set_grad_enabled(False)
    print(f"{'N':>6} | {'sdpa s':>8} | {'interp s':>8} | {'interp/sdpa':>11}")
    for n in [int(x) for x in args.lengths.split(",")]:
        text = make_haystack(model.tokenizer, n + 64)
        ids = model.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :n]
        # alternate the two so that machine load affects both alike
        t_sdpa = best_time(lambda: sdpa(input_ids=ids, logits_to_keep=1), args.repeats)
        t_interp = best_time(lambda: model.hf(input_ids=ids, logits_to_keep=1), args.repeats)
        print(f"{n:>6} | {t_sdpa:>8.3f} | {t_interp:>8.3f} | {t_interp / t_sdpa:>11.3f}")


if __name__ == "__main__":
    main()
