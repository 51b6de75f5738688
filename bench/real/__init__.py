"""The cascade on real local models: a labelled task set and the five policies side by side.

``python -m bench.real`` (see ``bench/real/README.md`` and ``docs/local-models.md``).
"""
