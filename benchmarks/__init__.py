"""`make bench` (``python -m benchmarks.bench``): the timed parts, one module per thing measured.

``bench`` is the entry point (options, which parts run); ``recipes`` times the tutorial's recipe and
ours, ``course`` the notebooks, ``profiling`` decode and each engine's forward pass, ``scale`` larger
photo sets; ``memory`` runs each part in a child process and records its peak memory; ``timing`` holds
what the timed parts share; ``report`` makes the tables and ``doc`` writes them into docs/BENCHMARKS.md.
"""
