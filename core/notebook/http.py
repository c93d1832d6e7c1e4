"""The server source: a run's records read over the JSON API of a running dashboard (``docs/api.md``).

``HttpSource("http://127.0.0.1:8000", token=...)`` sends ``Authorization: Bearer <token>`` when given
one (a lab deployment's token; the open loopback dashboard needs none). A share link's address
(``http://host/s/<token>``) works too: every read is then made under it, for the runs it names.
It uses the standard library only (urllib), and returns exactly what :mod:`core.notebook.database`
returns from the database: snapshots come from the lossless npz download (float16, as stored), not
from the rounded per-probe JSON, so both sources give the same figures.
"""

from __future__ import annotations

import io
import json
import math
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np

from core.notebook.errors import NotebookError

PAGE = 200  # runs per request when listing (the API's most)
MAX_KEYS_CHARS = 4000  # ?keys= stays under the API's 5000 characters


class HttpSource:
    """Reads runs from a circuitboard server at ``url`` (its root, or a share link's root)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 60.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NotebookError(f"open: {url!r} is not an http(s) server URL")
        self.url = url.rstrip("/")
        self.api = self.url + "/api"
        self.token = token
        self.timeout = timeout
        self._npz: dict[int, dict[str, np.ndarray]] = {}  # run id -> its snapshots download

    def close(self) -> None:
        self._npz.clear()

    def _get(self, path: str, query: dict[str, Any] | None = None) -> bytes:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        address = self.api + path + (f"?{urlencode(query)}" if query else "")
        request = urllib.request.Request(address, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code == 401:
                raise NotebookError(f"{self.url} wants a token: open({self.url!r}, token=...) ({detail})") from exc
            raise NotebookError(f"{detail} (HTTP {exc.code} from {address})") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise NotebookError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from exc

    def _json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return json.loads(self._get(path, query))

    # ------------------------------------------------------------ runs

    def run_ids(self, *, status: str | None, problem: str | None, tag: str | None, text: str | None) -> list[int]:
        ids: list[int] = []
        while True:
            page = self._json("/runs", {"status": status, "problem": problem, "tag": tag, "q": text,
                                        "sort": "-created", "limit": PAGE, "offset": len(ids)})
            ids += [item["id"] for item in page["runs"]]
            if not page["runs"] or len(ids) >= page["total"]:
                return ids

    def run(self, run_id: int) -> dict[str, Any]:
        body = self._json(f"/runs/{int(run_id)}")
        parent = body["lineage"].get("parent") or {}
        return {"id": body["id"], "name": body["name"], "status": body["status"], "preset": body["preset"],
                "tags": body["tags"], "notes": body["notes"], "created_at": _time(body["created_at"]),
                "started_at": _time(body["started_at"]), "finished_at": _time(body["finished_at"]),
                "spec": body["config"], "summary": body["summary"], "error": body["error"],
                "parent_run_id": parent.get("id"), "parent_step": parent.get("step"),
                "sweep_id": body["lineage"].get("sweep_id"),
                "snapshot_steps": body["snapshot_steps"], "checkpoint_steps": body["checkpoint_steps"]}

    # ------------------------------------------------------------ records

    def metrics(self, run_id: int, *, keys: list[str] | None, prefix: str | None) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        for chunk in _chunks(keys) if keys is not None else [None]:
            body = self._json(f"/runs/{int(run_id)}/metrics", {"format": "series", "prefix": prefix,
                                                              "keys": None if chunk is None else ",".join(chunk)})
            for key, series in (body.get("series") or {}).items():
                values = [math.nan if v is None else v for v in series["values"]]
                out[key] = (np.asarray(series["steps"], dtype=np.int64), np.asarray(values, dtype=np.float64))
        return dict(sorted(out.items()))

    def snapshot(self, run_id: int, step: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        arrays = self._npz.get(run_id)
        if arrays is None or f"step_{step}" not in arrays:  # a live run may have recorded more since
            with np.load(io.BytesIO(self._get(f"/runs/{int(run_id)}/download/snapshots.npz"))) as npz:
                arrays = self._npz[run_id] = {name: npz[name] for name in npz.files}
        if f"step_{step}" not in arrays:
            raise NotebookError(f"run {run_id} has no snapshot at step {step}")
        patterns = arrays[f"step_{step}"].astype(np.float32)
        tokens = arrays.get("tokens", np.zeros(patterns.shape[:1] + patterns.shape[-1:], np.uint8))
        return patterns, tokens, [int(n) for n in arrays["lengths"]]

    def checkpoint(self, run_id: int, step: int) -> bytes:
        return self._get(f"/runs/{int(run_id)}/download/checkpoint/{int(step)}")

    def interventions(self, run_id: int) -> dict[str, Any]:
        body = self._json(f"/runs/{int(run_id)}/interventions")
        body.pop("run_id", None)
        return body


def _detail(exc: urllib.error.HTTPError) -> str:
    """The server's ``{"detail": ...}`` as a sentence (422 lists: "field: msg; ...")."""
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError):
        return exc.reason or f"HTTP {exc.code}"
    if isinstance(detail, list):
        return "; ".join(f"{d.get('field', '?')}: {d.get('msg', '')}" for d in detail)
    return str(detail)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _chunks(keys: list[str]) -> list[list[str]]:
    """``keys`` split so each comma-joined, URL-quoted group stays under MAX_KEYS_CHARS."""
    chunks: list[list[str]] = [[]]
    size = 0
    for key in keys:
        cost = len(quote(key)) + 3
        if chunks[-1] and size + cost > MAX_KEYS_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(key)
        size += cost
    return chunks
