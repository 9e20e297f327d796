"""The science: plain PyTorch threat models, attacks, models, datasets, training, experiments.

Nothing in this package imports Celery, SQLAlchemy or Streamlit.
"""
