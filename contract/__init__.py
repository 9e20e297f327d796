"""robustlab's contract: the spec language, the catalog of names and the records of a run.

The layer every other one imports and which imports none of them: no torch, SQLAlchemy,
Celery or Streamlit (import-linter's contracts in ``pyproject.toml`` enforce it). The CLI, the
dashboard, the queue and the science all take the same validated spec objects from here.
"""
