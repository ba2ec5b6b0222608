"""Time to quality, the headline benchmark, by mode: ``curve`` (training from scratch against a
budget, scored at fixed points), ``speed`` (training throughput of variants, interleaved),
``flywheel`` (a real loop's val Q-gap against its wall-clock) and ``compare`` (saved runs side by
side), over ``common`` (settings, tables, machine) and ``data`` (golden and training deals).
``benchmarks/learning.py`` is the command line."""
