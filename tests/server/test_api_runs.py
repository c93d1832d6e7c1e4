"""The runs API on SQLite and PostgreSQL, over a database holding one really trained run."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest

from core.db import crud, shares
from core.db.session import make_engine, session_scope
from core.snapshots import pack
from tests.server.conftest import FAST

TINY = {**FAST, "steps": 5, "warmup_steps": 0}


def post_run(client, csrf, **body):
    return client.post("/api/runs", json={"preset": "fast-parity", "overrides": TINY, **body}, headers=csrf)


def count(client, tag):
    return client.get("/api/runs", params={"tag": tag}).json()["total"]


# ---------------------------------------------------------------- submit


def test_a_preset_with_overrides_queues_one_run(app_client, csrf, unique_tag):
    response = post_run(app_client, csrf, name="s3", tags=[unique_tag], notes="hello",
                        overrides={**TINY, "seed": 3})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["url"] == f"/runs/{created['id']}" and created["created"] is True
    run = app_client.get(f"/api/runs/{created['id']}").json()
    assert run["status"] == "QUEUED" and run["progress"]["job_status"] == "QUEUED"
    assert run["config"]["seed"] == 3 and run["config"]["n_heads"] == 4  # the override, and the preset
    assert run["preset"] == "fast-parity" and run["tags"] == [unique_tag] and run["notes"] == "hello"


def test_a_whole_flat_spec_is_accepted(app_client, csrf, unique_tag):
    response = app_client.post("/api/runs", json={"spec": TINY, "tags": [unique_tag]}, headers=csrf)
    assert response.status_code == 201, response.text
    assert app_client.get(response.json()["url"].replace("/runs", "/api/runs")).json()["config"]["d_model"] == 16


def test_the_same_idempotency_key_gives_the_same_run(app_client, csrf, unique_tag):
    first = post_run(app_client, csrf, tags=[unique_tag], idempotency_key=unique_tag)
    again = post_run(app_client, csrf, tags=[unique_tag], idempotency_key=unique_tag)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["created"] is False
    assert count(app_client, unique_tag) == 1


def test_a_reused_key_with_another_body_is_409_naming_what_differs(app_client, csrf, unique_tag):
    first = post_run(app_client, csrf, tags=[unique_tag], idempotency_key=unique_tag)
    other = post_run(app_client, csrf, tags=[unique_tag], idempotency_key=unique_tag,
                     overrides={**TINY, "lr": 0.003})
    assert (first.status_code, other.status_code) == (201, 409)
    message = other.json()["detail"]
    assert f"already made run {first.json()['id']}" in message and "lr" in message and "0.003" in message
    renamed = post_run(app_client, csrf, tags=[unique_tag], idempotency_key=unique_tag, name="another name")
    assert renamed.status_code == 409 and "name" in renamed.json()["detail"]
    assert count(app_client, unique_tag) == 1


@pytest.mark.parametrize("body, field, message", [
    ({"preset": "fast-parity", "overrides": {"d_model": 65536}}, "d_model", "must be <= 2048"),
    ({"preset": "fast-parity", "overrides": {"d_modle": 64}}, "d_modle", "did you mean 'd_model'"),
    ({"preset": "fast-parity", "overrides": {"lr": "fast"}}, "lr", "must be a number"),
    ({"preset": "no-such-preset"}, "preset", "unknown preset"),
    ({"name": "nothing to run"}, "preset", "is required"),
    ({"preset": "fast-parity", "spec": TINY}, "spec", "either a preset"),
    ({"preset": "fast-parity", "overrides": {"init_from": "99999@10"}}, "init_from", "there is no run 99999"),
])
def test_bad_specs_are_422_naming_the_field_and_queue_nothing(app_client, csrf, unique_tag, body, field, message):
    response = app_client.post("/api/runs", json={**body, "tags": [unique_tag]}, headers=csrf)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["field"] == field and message in e["msg"] for e in errors), errors
    assert count(app_client, unique_tag) == 0


def test_init_from_needs_a_checkpoint_at_that_step(app_client, csrf, trained_run, unique_tag):
    missing = post_run(app_client, csrf, tags=[unique_tag], overrides={**TINY, "init_from": f"{trained_run}@7"})
    assert missing.status_code == 422
    assert "no checkpoint at step 7" in missing.json()["detail"][0]["msg"]
    unfit = post_run(app_client, csrf, tags=[unique_tag], overrides={**TINY, "init_from": f"{trained_run}@10"})
    assert unfit.status_code == 422  # fast-parity has 4 heads; the parent (FAST) has 1
    assert unfit.json()["detail"][0]["field"] == "init_from"
    assert "do not fit this model (n_heads 4 against 1)" in unfit.json()["detail"][0]["msg"]
    child = post_run(app_client, csrf, tags=[unique_tag],
                     overrides={**TINY, "n_heads": 1, "init_from": f"{trained_run}@10", "trainable": "mlp2"})
    assert child.status_code == 201, child.text
    lineage = app_client.get(f"/api/runs/{child.json()['id']}").json()["lineage"]
    assert lineage["parent"]["id"] == trained_run and lineage["parent"]["step"] == 10
    children = app_client.get(f"/api/runs/{trained_run}").json()["lineage"]["children"]
    assert child.json()["id"] in [c["id"] for c in children]


def test_malformed_bodies_are_422_not_500(app_client, csrf):
    assert app_client.post("/api/runs", json={"preset": "fast-parity", "overrides": [1]}, headers=csrf).status_code == 422
    assert app_client.post("/api/runs", json={"preset": "fast-parity", "color": "red"}, headers=csrf).status_code == 422
    assert app_client.post("/api/runs", content=b"{not json", headers={**csrf, "Content-Type": "application/json"}).status_code == 422


# ---------------------------------------------------------------- list


def test_list_filters_sorts_and_pages(app_client, csrf, unique_tag):
    names = ["alpha", "bravo", "charlie", "delta", "echo"]
    ids = []
    for i, name in enumerate(names):
        overrides = {**TINY, "problem": "polynomial" if i % 2 else "parity"}
        ids.append(post_run(app_client, csrf, name=name, tags=[unique_tag], notes=f"note {name}",
                            overrides=overrides).json()["id"])
    app_client.post(f"/api/runs/{ids[0]}/cancel", headers=csrf)

    page = app_client.get("/api/runs", params={"tag": unique_tag, "limit": 2}).json()
    assert page["total"] == 5 and [r["id"] for r in page["runs"]] == ids[::-1][:2]  # newest first
    second = app_client.get("/api/runs", params={"tag": unique_tag, "limit": 2, "offset": 2}).json()
    assert [r["id"] for r in second["runs"]] == ids[::-1][2:4]

    by_name = app_client.get("/api/runs", params={"tag": unique_tag, "sort": "name"}).json()["runs"]
    assert [r["name"] for r in by_name] == names
    for sort in ("-acc", "acc", "-status", "step"):  # JSON-path and plain orders on both dialects
        assert app_client.get("/api/runs", params={"tag": unique_tag, "sort": sort}).json()["total"] == 5
    poly = app_client.get("/api/runs", params={"tag": unique_tag, "problem": "polynomial"}).json()
    assert poly["total"] == 2 and {r["problem"] for r in poly["runs"]} == {"polynomial"}
    cancelled = app_client.get("/api/runs", params={"tag": unique_tag, "status": "cancelled"}).json()
    assert [r["id"] for r in cancelled["runs"]] == [ids[0]]
    text = app_client.get("/api/runs", params={"tag": unique_tag, "q": "NOTE CHAR"}).json()
    assert [r["name"] for r in text["runs"]] == ["charlie"]


def test_list_rows_carry_progress_accuracy_and_verdict(app_client, trained_run):
    row = next(r for r in app_client.get("/api/runs", params={"tag": "trained"}).json()["runs"] if r["id"] == trained_run)
    assert row["status"] == "SUCCEEDED" and row["fraction"] == 1.0 and row["step"] == 20
    assert 0.0 <= row["test_acc"] <= 1.0 and "test accuracy" in row["verdict"]
    assert row["settings"]["d_model"] == 16


def test_list_rejects_bad_parameters_with_422(app_client):
    for params in ({"limit": 0}, {"limit": 10_000}, {"offset": -1}, {"sort": "drop table"}, {"status": "DONE"}):
        assert app_client.get("/api/runs", params=params).status_code == 422, params


# ---------------------------------------------------------------- one run, metrics


def test_run_detail_of_a_trained_run(app_client, trained_run):
    run = app_client.get(f"/api/runs/{trained_run}").json()
    assert run["status"] == "SUCCEEDED" and run["terminal"] is True and run["error"] is None
    assert run["progress"]["step"] == 20 and run["progress"]["total"] == 20
    assert run["snapshot_steps"] == [0, 10, 20] and 20 in run["checkpoint_steps"]
    assert set(run["summary"]["heads"]) == {"eoi_locator", "iteration"}
    assert run["config"]["max_len"] == 3 and run["lineage"]["parent"] is None


def test_unknown_runs_are_404_json(app_client):
    for path in ("/api/runs/999999", "/api/runs/999999/metrics", "/api/runs/999999/snapshots",
                 "/api/runs/999999/snapshots/0"):
        response = app_client.get(path)
        assert response.status_code == 404 and "no run 999999" in response.json()["detail"], path
    assert app_client.get("/api/runs/0").status_code == 422
    assert app_client.get("/api/runs/99999999999999999999").status_code == 422


def test_metrics_long_form_and_series(app_client, trained_run):
    rows = app_client.get(f"/api/runs/{trained_run}/metrics", params={"prefix": "test/"}).json()["rows"]
    assert rows and all(r["key"].startswith("test/") for r in rows)
    series = app_client.get(f"/api/runs/{trained_run}/metrics",
                            params={"keys": "train/loss,test/seq_acc", "format": "series"}).json()["series"]
    assert set(series) == {"train/loss", "test/seq_acc"}
    assert series["test/seq_acc"]["steps"] == [0, 10, 20]
    assert len(series["train/loss"]["steps"]) == len(series["train/loss"]["values"]) > 0


def test_figures_for_live_updates(app_client, trained_run):
    figs = app_client.get(f"/api/runs/{trained_run}/figures", params={"score": "mul"}).json()["figures"]
    assert {"fig-loss", "fig-acc-test", "fig-emergence-iteration"} <= set(figs)
    emergence = figs["fig-emergence-iteration"]["data"][0]
    assert emergence["x"] == [0, 10, 20] and emergence["y"] == ["L0H0", "L1H0"]


# ---------------------------------------------------------------- snapshots


def test_a_snapshot_gives_one_probe_sequence_every_layer_and_head(app_client, trained_run):
    assert app_client.get(f"/api/runs/{trained_run}/snapshots").json()["steps"] == [0, 10, 20]
    view = app_client.get(f"/api/runs/{trained_run}/snapshots/20", params={"probe": 5}).json()
    assert view["lengths"] == [1, 1, 2, 2, 3, 3] and view["length"] == 3 and view["probe"] == 5
    assert view["labels"][0] == "[parity]" and view["labels"][4] == "EoI" and view["labels"][1].startswith("x1=")
    assert len(view["attention"]) == 2 and len(view["attention"][1]) == 1  # layers, heads
    rows = view["attention"][1][0]
    assert [len(row) for row in rows] == list(range(1, 9))  # 2L+2 = 8 real positions, causal half
    assert all(abs(sum(row) - 1) < 0.02 for row in rows)  # each query's weights sum to 1
    expected = {e["role"]: e for e in view["expected"]}
    assert expected["eoi_locator"]["layer"] == 0 and expected["eoi_locator"]["cells"] == [[5, 4], [6, 4], [7, 4]]
    assert expected["iteration"]["cells"] == [[4, 1], [5, 2], [6, 3]]


def test_snapshot_errors_name_what_exists(app_client, trained_run):
    missing = app_client.get(f"/api/runs/{trained_run}/snapshots/15")
    assert missing.status_code == 404 and "snapshot steps: 0, 10, 20" in missing.json()["detail"]
    assert app_client.get(f"/api/runs/{trained_run}/snapshots/20", params={"probe": 6}).status_code == 404
    assert app_client.get(f"/api/runs/{trained_run}/snapshots/20", params={"probe": -1}).status_code == 422


def test_one_probe_of_the_fast_preset_is_well_under_64_kb(app_client, served_url, csrf):
    """A snapshot of the fast presets' size (2 layers x 4 heads, lengths 1..16, 4 probes each)."""
    run_id = post_run(app_client, csrf).json()["id"]
    lengths = np.repeat(np.arange(1, 17), 4)
    width = 35
    rng = np.random.default_rng(0)
    patterns = np.tril(rng.random((len(lengths), 2, 4, width, width))) + 1e-3
    patterns /= patterns.sum(-1, keepdims=True)
    blob, layout = pack(patterns, lengths)
    engine = make_engine(served_url)
    with session_scope(engine) as session:
        crud.put_snapshot(session, run_id=run_id, step=0, data=blob, shape=list(patterns.shape), layout=layout)
    engine.dispose()
    longest = len(lengths) - 1
    plain = app_client.get(f"/api/runs/{run_id}/snapshots/0", params={"probe": longest},
                           headers={"Accept-Encoding": "identity"})
    zipped = app_client.get(f"/api/runs/{run_id}/snapshots/0", params={"probe": longest},
                            headers={"Accept-Encoding": "gzip"})
    assert plain.json()["length"] == 16 and len(plain.json()["attention"][1]) == 4
    assert len(plain.content) < 64_000, len(plain.content)  # JSON, uncompressed
    assert zipped.headers.get("content-encoding") == "gzip"  # httpx decompressed it for us
    assert len(gzip.compress(plain.content)) < 20_000  # about what goes over the wire


# ---------------------------------------------------------------- cancel, retry


def test_cancel_then_retry_a_queued_run(app_client, csrf):
    run_id = post_run(app_client, csrf).json()["id"]
    cancelled = app_client.post(f"/api/runs/{run_id}/cancel", headers=csrf)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    retried = app_client.post(f"/api/runs/{run_id}/retry", headers=csrf)
    assert retried.status_code == 200 and retried.json()["status"] == "QUEUED"
    again = app_client.post(f"/api/runs/{run_id}/retry", headers=csrf)
    assert again.status_code == 409 and "only FAILED or CANCELLED" in again.json()["detail"]
    assert app_client.post("/api/runs/999999/cancel", headers=csrf).status_code == 404


# ---------------------------------------------------------------- downloads, estimate, schema, shares


def test_downloads(app_client, trained_run):
    metrics = app_client.get(f"/api/runs/{trained_run}/download/metrics.json")
    assert "attachment" in metrics.headers["content-disposition"]
    assert any(row["key"] == "train/loss" for row in json.loads(metrics.content)["rows"])
    npz = np.load(io.BytesIO(app_client.get(f"/api/runs/{trained_run}/download/snapshots.npz").content))
    assert list(npz["steps"]) == [0, 10, 20] and npz["step_20"].shape == (6, 2, 1, 9, 9)
    checkpoint = app_client.get(f"/api/runs/{trained_run}/download/checkpoint/10")
    assert checkpoint.status_code == 200 and len(checkpoint.content) > 1000
    assert app_client.get(f"/api/runs/{trained_run}/download/checkpoint/7").status_code == 404


def test_estimate(app_client, csrf):
    ok = app_client.post("/api/estimate", json={"preset": "paper-parity"}, headers=csrf)
    assert ok.status_code == 200 and ok.json()["n_params"] > 100_000 and "parameters" in ok.json()["text"]
    bad = app_client.post("/api/estimate", json={"preset": "paper-parity", "overrides": {"n_heads": 3}}, headers=csrf)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "d_model"


def test_every_422_has_one_shape(app_client, csrf, unique_tag):
    """A body FastAPI rejects and a spec core.specs rejects answer alike: {"detail": [{"field", "msg", ...}]}."""
    bad_request = app_client.post("/api/runs", json={"preset": "fast-parity", "tags": "not a list"}, headers=csrf)
    bad_spec = app_client.post("/api/runs", json={"preset": "fast-parity", "tags": [unique_tag],
                                                  "overrides": {"d_model": 65536}}, headers=csrf)
    for response in (bad_request, bad_spec):
        assert response.status_code == 422, response.text
        assert set(response.json()) == {"detail"}
        for entry in response.json()["detail"]:
            assert {"field", "loc", "msg", "type"} <= set(entry), entry
    assert bad_request.json()["detail"][0]["field"] == "tags"
    assert bad_spec.json()["detail"][0]["field"] == "d_model"


def test_the_openapi_schema_documents_the_models(app_client):
    schema = app_client.get("/openapi.json").json()
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/snapshots/{step}"} <= set(schema["paths"])
    assert {"RunDetail", "SnapshotView", "SubmitRequest", "RunPage"} <= set(schema["components"]["schemas"])


def test_a_share_link_reads_only_its_run(app_client, served_url, trained_run, csrf):
    other = post_run(app_client, csrf).json()["id"]
    engine = make_engine(served_url)
    with session_scope(engine) as session:
        token = shares.create(session, kind="run", target={"run_ids": [trained_run]})[1]
    engine.dispose()
    base = f"/s/{token}/api/runs"
    assert app_client.get(f"{base}/{trained_run}").status_code == 200
    assert app_client.get(f"{base}/{other}").status_code == 404
    assert [r["id"] for r in app_client.get(base).json()["runs"]] == [trained_run]
    assert app_client.post(f"{base}/{trained_run}/cancel", headers=csrf).status_code in (403, 404, 405)
