"""The queue: the Celery app (``app``), ``submit`` (``submission``), the tasks a worker runs
(``tasks``) and the worker and beat processes (``worker``). The only package that imports
Celery; the science it runs stays in ``workers/``.
"""
