"""The job layer: running analyses over a model into a results directory.

    results.py      the results directory (tables, manifest, progress journal)
    distributed.py  scans over several ranks (torch.distributed): the one owner of rank coordination
"""
