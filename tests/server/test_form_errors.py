"""The New-run form names every bad field in one answer, as the README promises.

A field that does not parse, a field out of its bound, a pair that does not fit (d_model and n_heads)
and an ``init_from`` naming a run that is not there all come back together, each beside its field;
a whole number written as ``1e9`` is a number (refused for its bound, not as "not an integer").
"""

from __future__ import annotations

import html
import re

from server.forms import whole_number
from server.pages.runs import preset_values
from tests.server.conftest import form_token


def form_for(app_client, **changes: str) -> dict[str, str]:
    """What the form posts for the fast-parity preset, with ``changes``."""
    token = form_token(app_client.get("/runs/new").text)
    values = {key: "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
              for key, value in preset_values("fast-parity").items() if key not in ("init_from", "trainable")}
    return {**values, **token, "preset": "fast-parity", "trainable_choice": "all", "name": "bad", **changes}


def shown_errors(page: str) -> dict[str, str]:
    return {field: html.unescape(text) for field, text in re.findall(r'data-error-for="([a-z_]+)">([^<]*)<', page)}


def test_every_bad_field_comes_back_at_once(app_client):
    form = form_for(app_client, d_model="sixty", lr="-1", steps="1e9", init_run="99", init_step="0")
    response = app_client.post("/runs/new", data=form, follow_redirects=False)
    assert response.status_code == 422
    errors = shown_errors(response.text)
    assert errors["d_model"].startswith("must be an integer")
    assert errors["lr"].startswith("must be > 0")
    assert errors["steps"].startswith("must be <= ") and "integer" not in errors["steps"]  # 1e9 is a number
    assert errors["init_from"] == "there is no run 99 (got '99@0')"
    assert "Nothing was queued: 4 fields to fix" in response.text


def test_no_run_99_is_named_beside_errors_only_the_whole_spec_finds(app_client):
    form = form_for(app_client, d_model="30", n_heads="4", init_run="99", init_step="0")  # each parses alone
    errors = shown_errors(app_client.post("/runs/new", data=form, follow_redirects=False).text)
    assert errors["init_from"].startswith("there is no run 99")
    assert errors["d_model"].startswith("must be divisible by n_heads (4)")
    assert errors["n_heads"] == "must divide d_model (30) evenly: change n_heads or d_model (got 4)"


def test_a_whole_number_in_float_notation_is_a_number():
    assert [whole_number(text) for text in ("1e9", "2.0e3", "40", "-3", "1.5", "abc", "inf")] == [
        "1000000000", "2000", "40", "-3", "1.5", "abc", "inf"]


def test_a_good_form_with_1e2_steps_is_queued(app_client):
    form = form_for(app_client, steps="1e2", name="float notation")
    response = app_client.post("/runs/new", data=form, follow_redirects=False)
    assert response.status_code == 303, shown_errors(response.text)
    run = app_client.get(response.headers["location"].replace("/runs/", "/api/runs/")).json()
    assert run["config"]["steps"] == 100
