"""Recording: train a run that lives in the database, writing everything it reports back to it.

This is the bridge between the torch-only trainer (``core.ml.train``) and the records
(``core.db``): :class:`RunRecorder` turns the trainer's callbacks into rows (metrics upserted,
one snapshot row per snapshot step, checkpoints with sha256), and :func:`execute_training` runs a
run end to end: resume from its last intact checkpoint or start (from a parent's weights for a
transfer), train, summarise, and set the final status. ``circuitboard train`` and the workers both
call :func:`execute_training`, so a run is recorded the same way wherever it ran.

``guard`` is how a worker makes writes conditional: a callable run inside each write transaction
that raises when this process no longer owns the job (``core.db.jobs.fence``); the CLI passes none.
``on_final`` is how a worker ends its job together with the run: called inside the transaction that
writes the run's final status, so the two can never be seen apart. A transient database error
(``core.db.jobs.is_transient``) is not the run's failure: it propagates without writing FAILED.

Every write survives a dropped database connection: a transaction that fails because the
connection was lost (PostgreSQL restarted, or its backend terminated) is retried on a fresh one
(``core.db.jobs.transact``, a few times with a short backoff). That is safe because every write
here is an upsert (metrics, probe set, snapshot, checkpoint, the run's row) behind the same
guard, so one that did commit before the connection dropped is simply written again.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.db import crud
from core.db.jobs import is_transient, transact
from core.db.models import Status, utcnow
from core.db.session import session_scope
from core.ml import checkpoints
from core.ml.train import Callbacks, Progress, TrainingError, train
from core.specs.run import RunSpec
from core.summary import summarize

KEEP_RESUME_CHECKPOINTS = 3

Guard = Callable[[Session], None]
OnFinal = Callable[[Session, str, str | None], object]  # (session, final status, error)


class RunRecorder(Callbacks):
    """Callbacks that write to the database; every write runs ``guard`` first in its transaction."""

    def __init__(self, engine: Engine, run_id: int, *, guard: Guard | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, on_final: OnFinal | None = None) -> None:
        self.engine, self.run_id = engine, run_id
        self.guard = guard or (lambda session: None)
        self.on_final = on_final or (lambda session, status, error: None)
        self.on_progress = on_progress
        self._should_stop = should_stop or (lambda: False)

    def write(self, fn: Callable[[Session], object]) -> None:
        """Run ``fn(session)`` in one transaction, after ``guard`` has allowed it (retried on a disconnect)."""
        def guarded(session: Session) -> None:
            self.guard(session)
            fn(session)
        transact(self.engine, guarded)

    def probe_set(self, tokens, lengths) -> None:
        self.write(lambda s: crud.put_probe_set(s, run_id=self.run_id, tokens=tokens, lengths=lengths))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        rows = [(key, step, value) for key, value in values.items()]
        self.write(lambda s: crud.upsert_metrics(s, run_id=self.run_id, rows=rows))

    def snapshot(self, step: int, blob: bytes, layout: dict) -> None:
        shape = [len(layout["lengths"]), layout["n_layers"], layout["n_heads"], layout["width"], layout["width"]]
        self.write(lambda s: crud.put_snapshot(s, run_id=self.run_id, step=step, data=blob, shape=shape, layout=layout))

    def checkpoint(self, step: int, kind: str, data: bytes) -> None:
        def write(session):
            crud.put_checkpoint(session, run_id=self.run_id, step=step, kind=kind, data=data)
            if kind == checkpoints.RESUME:
                crud.prune_checkpoints(session, run_id=self.run_id, kind=kind, keep=KEEP_RESUME_CHECKPOINTS)
        self.write(write)

    def progress(self, progress: Progress) -> None:
        self.write(lambda s: crud.update_run(s, run_id=self.run_id, step=progress.step))
        if self.on_progress:
            self.on_progress(progress)

    def should_stop(self) -> bool:
        return self._should_stop()


def load_init_weights(engine: Engine, run_id: int, step: int) -> dict:
    """The model state dict of run ``run_id`` at ``step`` (a weights or a resume checkpoint)."""
    with session_scope(engine) as session:
        for kind in (checkpoints.WEIGHTS, checkpoints.RESUME):
            row = crud.get_checkpoint(session, run_id=run_id, step=step, kind=kind)
            if row is not None:
                return checkpoints.from_bytes(row.data)["model"]
        steps = crud.checkpoint_steps(session, run_id=run_id)
    raise TrainingError(f"init_from: run {run_id} has no checkpoint at step {step}; "
                        f"recorded steps: {steps or 'none'}")


def execute_training(engine: Engine, run_id: int, *, guard: Guard | None = None,
                     on_progress: Callable[[Progress], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, device: str | None = None,
                     on_final: OnFinal | None = None) -> str:
    """Train run ``run_id`` to the end (or until ``should_stop``); return its final status.

    ``device`` is where to train when the run's spec names no device (a worker passes its own).
    """
    recorder = RunRecorder(engine, run_id, guard=guard, on_progress=on_progress, should_stop=should_stop,
                           on_final=on_final)

    spec, latest = _read_run(engine, run_id, device)
    trained = latest is not None and latest[0] >= spec.train.steps
    resume = latest[1] if latest is not None and not trained else None
    if trained:  # it reached the end before whoever ran it could record so: record it now
        _finish(recorder, Status.SUCCEEDED)
        return Status.SUCCEEDED.value
    recorder.write(lambda s: crud.update_run(s, run_id=run_id, status=Status.RUNNING,
                                           started_at=utcnow(), error=None))
    try:
        init = None
        if resume is None and spec.train.init_source:
            init = load_init_weights(engine, *spec.train.init_source)
        result = train(spec, recorder, resume=resume, init_weights=init)
    except TrainingError as exc:
        _finish(recorder, Status.FAILED, error=str(exc))
        raise
    except Exception as exc:
        if is_transient(exc):
            raise  # the database failed, not the training: whoever runs it resumes it later
        _finish(recorder, Status.FAILED, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        raise
    if result.stopped:
        return Status.RUNNING.value  # the caller decides: cancelled, or released back to the queue
    _finish(recorder, Status.SUCCEEDED)
    return Status.SUCCEEDED.value


@dataclass(frozen=True)
class PackMember:
    """One run of a pack as a worker hands it over: what ``execute_training`` takes for one run."""

    run_id: int
    guard: Guard | None = None
    on_progress: Callable[[Progress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_final: OnFinal | None = None


def execute_pack(engine: Engine, members: list[PackMember], *, device: str | None = None) -> list[str]:
    """Train several runs as one pack (``core.ml.packed_train.train_pack``), each recorded exactly as
    ``execute_training`` records it; return each run's status, in order.

    A member ends alone: SUCCEEDED at its last step, FAILED when its loss turns non-finite or its
    ``init_from`` weights cannot be loaded, RUNNING (its resume checkpoint written) when its
    ``should_stop`` turned true; the others go on. A member already trained to its end is only
    recorded as SUCCEEDED. An error of the whole pack (not the database's) fails every member still
    training and propagates; a transient database error propagates without writing FAILED.
    """
    from core.ml.packed_train import train_pack  # torch-heavy: only here

    recorders = [RunRecorder(engine, m.run_id, guard=m.guard, on_progress=m.on_progress,
                             should_stop=m.should_stop, on_final=m.on_final) for m in members]
    statuses: list[str | None] = [None] * len(members)
    rows, specs, resumes, inits = [], [], [], []
    for i, recorder in enumerate(recorders):
        spec, latest = _read_run(engine, recorder.run_id, device)
        if latest is not None and latest[0] >= spec.train.steps:
            _finish(recorder, Status.SUCCEEDED)
            statuses[i] = Status.SUCCEEDED.value
            continue
        recorder.write(lambda s, r=recorder.run_id: crud.update_run(s, run_id=r, status=Status.RUNNING,
                                                                   started_at=utcnow(), error=None))
        resume, init = (latest[1] if latest is not None else None), None
        try:
            if resume is None and spec.train.init_source:
                init = load_init_weights(engine, *spec.train.init_source)
                check_weights_fit(spec, init)
        except TrainingError as exc:
            _finish(recorder, Status.FAILED, error=str(exc))
            statuses[i] = Status.FAILED.value
            continue
        rows.append(i)
        specs.append(spec)
        resumes.append(resume)
        inits.append(init)
    if not rows:
        return statuses
    try:
        results = train_pack(specs, [recorders[i] for i in rows], resumes=resumes, init_weights=inits)
    except Exception as exc:
        if is_transient(exc):
            raise
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        for i in rows:
            _finish(recorders[i], Status.FAILED, error=f"its pack failed: {error}")
        raise
    for i, result in zip(rows, results):
        if isinstance(result, TrainingError):
            _finish(recorders[i], Status.FAILED, error=str(result))
            statuses[i] = Status.FAILED.value
        elif result.stopped:
            statuses[i] = Status.RUNNING.value  # the caller decides: cancelled, or released back to the queue
        else:
            _finish(recorders[i], Status.SUCCEEDED)
            statuses[i] = Status.SUCCEEDED.value
    return statuses


def check_weights_fit(spec: RunSpec, weights: dict) -> None:
    """Raise TrainingError("init_from: ...") unless ``weights`` load into ``spec``'s model (so one
    member's unfit parent fails that member, not its pack)."""
    from core.ml.model import ModelConfig, Transformer

    expected = {name: tuple(t.shape) for name, t in Transformer(ModelConfig.from_spec(spec)).state_dict().items()}
    given = {name: tuple(t.shape) for name, t in weights.items()}
    if expected != given:
        wrong = sorted(name for name in expected.keys() | given.keys() if expected.get(name) != given.get(name))
        raise TrainingError(f"init_from: the checkpoint's weights do not fit this model "
                            f"(differ in {', '.join(wrong[:4])}{', ...' if len(wrong) > 4 else ''})")


def _read_run(engine: Engine, run_id: int, device: str | None) -> tuple[RunSpec, tuple[int, bytes] | None]:
    """A run's spec (on ``device`` when it names none) and its newest resume checkpoint (step, bytes)."""
    def read(session: Session):
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            raise crud.RunNotFound(run_id)
        latest = crud.latest_checkpoint(session, run_id=run_id, kind=checkpoints.RESUME)
        return dict(run.spec), None if latest is None else (latest.step, latest.data)

    flat, latest = transact(engine, read)
    spec = RunSpec.from_flat(flat)
    if spec.train.device is None and device:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"device": device})})
    return spec, latest


def _finish(recorder: RunRecorder, status: Status, *, error: str | None = None) -> None:
    def write(session):
        rows = crud.get_metrics(session, run_id=recorder.run_id)
        crud.update_run(session, run_id=recorder.run_id, status=status, error=error,
                        finished_at=utcnow(), summary=summarize(rows, finished=True))
        recorder.on_final(session, status.value, error)
    recorder.write(write)

