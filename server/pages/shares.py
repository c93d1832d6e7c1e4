"""The share pages: a run's links with revoke (``/runs/{id}/shares``), and a form to make one.

    GET  /runs/7/shares            the links that open run 7: label, created, expires, live or revoked
    POST /runs/7/shares            (form) make a link; the page shows its URL once
    POST /shares/3/revoke          (form) revoke; back to the list

The "share" button on the run, compare and sweep views (``partials/share_button.html`` and
``static/js/share.js``) does the same through the JSON API without leaving the page. All owner only:
this module has no ``read`` routes, so nothing here exists under /s/.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.db import crud, shares
from server.access import Access
from server.api.shares import ShareIn, create_link, share_row
from server.deps import OwnerAccess, ReadSession, RunId, ShareId, WriteSession
from server.errors import NotFound
from server.login import safe_next

read = APIRouter()
write = APIRouter(include_in_schema=False)


def _page(request: Request, session: Session, *, run_id: int, access: Access, new_url: str = "",
          errors: list[str] | None = None, status_code: int = 200) -> Response:
    run = crud.get_run(session, run_id=run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    links = [share_row(share) for share in shares.list_for_run(session, run_id=run_id)]
    return request.app.state.templates.TemplateResponse(
        request, "shares.html", {"access": access, "run": run, "links": links, "new_url": new_url,
                                 "errors": errors or []}, status_code=status_code)


@write.get("/runs/{run_id}/shares")
def run_shares(request: Request, run_id: RunId, session: ReadSession, access: OwnerAccess) -> Response:
    return _page(request, session, run_id=run_id, access=access)


@write.post("/runs/{run_id}/shares")
def new_run_share(request: Request, run_id: RunId, session: WriteSession, access: OwnerAccess,
                  label: str = Form(""), expires_in_hours: str = Form(""), state: str = Form("")) -> Response:
    try:
        body = ShareIn(label=label, state=state, expires_in_hours=expires_in_hours.strip() or None)
    except ValidationError as error:
        messages = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        return _page(request, session, run_id=run_id, access=access, errors=messages, status_code=422)
    _share, url = create_link(session, kind="run", run_ids=[run_id], sweep_id=None, label=body.label,
                              expires_in_hours=body.expires_in_hours, state=body.state)
    session.flush()
    page = _page(request, session, run_id=run_id, access=access, new_url=url, status_code=201)
    page.headers["Cache-Control"] = "no-store"  # the page shows the token, once
    return page


@write.post("/shares/{share_id}/revoke")
def revoke(share_id: ShareId, session: WriteSession, _owner: OwnerAccess, back: str = Form("/")) -> Response:
    if shares.revoke(session, share_id=share_id) is None:
        raise NotFound(f"no share link {share_id}")
    return RedirectResponse(safe_next(back), status_code=303)
