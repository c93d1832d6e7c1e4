"""Job execution: the supervised child process, the one execution path, and the dispatchers.

- ``worker.execute``: ``execute_job(job_id)``: claim, supervise a child, heartbeat, finish.
- ``worker.child``: the child process that trains (the only part that imports torch).
- ``worker.local``: the embedded dispatcher that takes QUEUED jobs straight from the database.

The worker never imports ``server``; the two meet only through the database and task names.
"""
