"""Reports of learning: the held-out photo set's scores at every scale, gallery and learning-curve PNGs.

``heldout`` (score a generator or checkpoint, Markdown table, gallery of its predictions), ``gallery`` (the
gallery PNG from plain arrays), ``curves`` (the learning-curve PNG from a run's metrics.jsonl), ``png``
(off-screen figures written atomically). The command
``python -m bgmatting.reporting CHECKPOINT`` scores a checkpoint during development.
"""
