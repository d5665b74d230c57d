"""The engine: a transformers model wrapped for head-level work (interp's layer 1, above kernels/).

    models.py         InterpModel (tokenize, generate, capture, intervene, start_at) and load_model
    layout.py         where an architecture keeps its attention modules, and its head layout (data, not code)
    attention.py      interp's attention function (transformers' AttentionInterface) and the o_proj hook
    fast_attention.py output and log-sum-exp from one fused call, for the statistics kernels
    capture.py        what a `with model.capture(...)` records
    interventions.py  what a `with model.intervene(...)` changes: head outputs, logits, probabilities
    ablation.py       head ablation by name ("zero", "mean", "uniform", "scale=2") and its effect on a prompt

Nothing here imports probe material, organisms, analyses or the job layer.
"""
