"""core.celery_client: the delivery settings both ends share, and publish's routing (no broker needed)."""

from __future__ import annotations

import pytest

from core import celery_client
from core.db import crud, jobs
from core.db.session import session_scope
from core.names import EXECUTE_JOB_TASK
from core.settings import Settings
from tests.worker.support import FAST


def test_the_app_carries_json_job_ids_with_late_acks_one_at_a_time():
    app = celery_client.make_app(Settings(broker_url="redis://127.0.0.1:1/0", visibility_timeout_seconds=3600))
    conf = app.conf
    assert (conf.task_serializer, list(conf.accept_content)) == ("json", ["json"])
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options == {"visibility_timeout": 3600}
    assert conf.task_ignore_result and not conf.result_backend


def test_an_app_needs_a_broker():
    with pytest.raises(ValueError, match="broker URL"):
        celery_client.make_app(Settings())


def test_publish_sends_each_id_by_task_name_to_its_jobs_queue(sqlite_engine, monkeypatch):
    with session_scope(sqlite_engine) as session:
        cpu = jobs.submit_train_job(session, run_id=crud.create_run(session, spec=FAST).id).id
        gpu = jobs.submit_train_job(session, run_id=crud.create_run(session, spec={**FAST, "device": "cuda:1"}).id).id
    sent = []

    class Recorder:
        def send_task(self, name, *, args, queue, routing_key, **options):
            sent.append((name, args, queue, routing_key))

    monkeypatch.setattr(celery_client, "_client", lambda *_: Recorder())
    settings = Settings(database_url=sqlite_engine.url.render_as_string(hide_password=False),
                        broker_url="redis://127.0.0.1:1/0")
    celery_client.publish(settings, [gpu, cpu, 999])  # 999: no such job, nothing to send
    assert sent == [(EXECUTE_JOB_TASK, [gpu], "gpu", "gpu"), (EXECUTE_JOB_TASK, [cpu], "cpu", "cpu")]
