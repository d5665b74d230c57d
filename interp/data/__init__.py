"""Probe material: the texts, tasks and request sets that the analyses probe heads with.

    probes.py   needles, haystack text, short prompts, seeded subsets (users' files through datasets)
    tasks.py    templated tasks for circuits: IOI, Colored Objects, induction, users' .jsonl / .csv
    safety.py   harmful and harmless request sets (AdvBench, HarmBench, Do-Not-Answer) and the refusal judge

The files beside them (prompts.json, needles.json, haystack.txt, counterfactual.jsonl,
harmless.json) are the project's own text. Nothing here imports the engine: probe material
is plain data, tokenized by whoever runs it.
"""

from interp.data.probes import (  # noqa: F401 (the common loaders, as interp.data.X)
    Needle,
    choose_prompts,
    count_tokens,
    insert_needle,
    load_needles,
    load_prompts,
    load_texts,
    make_haystack,
    parse_needles,
)
