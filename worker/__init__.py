"""Job execution: the supervised child process, the one execution path, and the dispatchers.

- ``worker.execute``: ``execute_job(job_id)``: claim, supervise a child, heartbeat, finish.
- ``worker.child``: the child process that trains or intervenes (the only part that imports torch).
- ``worker.local``: the embedded dispatcher that takes QUEUED jobs straight from the database.
- ``worker.celery_app``: the Celery app, its one task ``circuitboard.execute_job(job_id)`` and the
  upkeep thread (reap expired leases, re-publish QUEUED jobs whose message was lost).

The worker never imports ``server``; the two meet only through the database and task names.
"""
