"""The job layer: running analyses over a model into a results directory.

    runner.py       the one scan loop (`interp scan`, `interp.scan`, every torchrun rank)
    results.py      ResultsDir, the results directory that analyses and front doors use; its parts:
    tables.py         head tables and per-sample tables (parquet), validated
    manifest.py       the model's identity, each analysis's status, params and timing
    journal.py        the progress journal of running scans (.progress/*.jsonl), for resume
    distributed.py  scans over several ranks (torch.distributed): the one owner of rank coordination
"""
