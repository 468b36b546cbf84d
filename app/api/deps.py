"""FastAPI dependencies: the runtime, a per-request session, and the job dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app import outbox
from app.runtime import Runtime
from app.services import Enqueue, Job


class Dispatcher:
    """Commits a request's jobs through the outbox, then publishes them (DESIGN §2, inv. 7).

    ``dispatch(session, jobs)`` records the jobs in the request's own transaction, commits it,
    and relays the outbox at once; it returns False when the broker did not take them (they
    stay in the outbox: the API's relay thread publishes them when the broker is back). Jobs
    held back to fill a message of several documents count as taken: the relay thread sends
    them within ``job_batch.wait_s``.
    """

    def __init__(
        self,
        runtime: Runtime,
        publish: Enqueue | outbox.Publisher,
        relay_thread: outbox.RelayThread | None,
    ) -> None:
        self._runtime, self._publish, self._relay_thread = runtime, publish, relay_thread

    def __call__(self, session: Session, jobs: list[Job]) -> bool:
        outbox.put_jobs(session, jobs)
        session.commit()
        if not jobs:
            return True
        report = outbox.relay(self._runtime.sessions, self._publish)
        if (not report.ok or report.held) and self._relay_thread is not None:
            # The thread retries a failed publish, or sends a partly filled message once its
            # wait is over (settings.job_batch.wait_s).
            self._relay_thread.kick()
        return report.ok


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(request: Request) -> Iterator[Session]:
    runtime: Runtime = request.app.state.runtime
    with runtime.sessions() as session:
        yield session


def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
DispatchDep = Annotated[Dispatcher, Depends(get_dispatcher)]
