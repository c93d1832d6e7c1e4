"""Who is looking, and what they may see: the owner (everything, may change things) or a share link.

Every route that reads a run or a sweep takes ``access: CurrentAccess`` (``server.deps``) and asks
it before reading (``access.require_run(run_id)``); routes that change things take ``OwnerAccess``.
Read routes are mounted twice by ``create_app``: at ``/...`` for the owner and at ``/s/{token}/...``
for a share link, where ``get_access`` turns the token into a read-only Access limited to what the
link names (unknown, revoked or expired: 404). Pages build their links with ``access.url(path)``,
so a shared page only ever links inside its share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from core.db import shares
from core.db.session import session_scope
from server.errors import NotFound


@dataclass(frozen=True)
class Access:
    readonly: bool = False
    run_ids: frozenset[int] | None = None  # None: every run
    sweep_ids: frozenset[int] | None = None  # None: every sweep
    prefix: str = ""  # "/s/<token>" on a shared view

    def can_see_run(self, run_id: int) -> bool:
        return self.run_ids is None or run_id in self.run_ids

    def require_run(self, run_id: int) -> None:
        if not self.can_see_run(run_id):
            raise NotFound(f"no run {run_id}")

    def can_see_sweep(self, sweep_id: int) -> bool:
        return self.sweep_ids is None or sweep_id in self.sweep_ids

    def require_sweep(self, sweep_id: int) -> None:
        if not self.can_see_sweep(sweep_id):
            raise NotFound(f"no sweep {sweep_id}")

    def require_owner(self) -> None:
        if self.readonly:
            raise HTTPException(status_code=403, detail="a share link is read-only")

    def url(self, path: str) -> str:
        """``access.url("/runs/7")`` -> ``/runs/7``, or ``/s/<token>/runs/7`` on a shared view."""
        return self.prefix + path


OWNER = Access()


def get_access(request: Request) -> Access:
    """The owner's Access, or the read-only Access of the share token in the path (kept on
    ``request.state.access``, so a not-found page still links inside the share)."""
    token = request.path_params.get("token")
    if token is None:
        request.state.access = OWNER
        return OWNER
    with session_scope(request.app.state.engine, readonly=True) as session:
        share = shares.resolve(session, token=token)
        if share is None:
            raise NotFound("this link is unknown, revoked or expired")
        sweep_ids = frozenset([share.target["sweep_id"]]) if "sweep_id" in share.target else frozenset()
        access = Access(readonly=True, run_ids=frozenset(shares.readable_run_ids(session, share)),
                        sweep_ids=sweep_ids, prefix=f"/s/{token}")
    request.state.access = access
    return access


def owner_access(access: Annotated[Access, Depends(get_access)]) -> Access:
    """``get_access``, refused (403) unless it is the owner's: the dependency of every write route."""
    access.require_owner()
    return access
