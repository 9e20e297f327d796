"""Experiment kinds: one module per spec kind, each with ``run(spec, ctx)``."""
