"""robustlab workers: Celery tasks (thin) and the PyTorch science they call."""
