"""GET /api/runs/{id}/attention.gif: the chosen head at every snapshot step, one GIF frame each.

The file is decoded by the reader of tests/core/test_gif.py; a frame's cells must hold the weights
the snapshots API gives for the same head, probe and step. Bad choices are 422 naming the field, an
unknown run or one without snapshots 404, and a share link serves its own run's GIF only.
"""

from __future__ import annotations

from core.db import shares
from core.db.session import make_engine, session_scope
from server import animation
from tests.core.test_gif import read_gif
from tests.server.conftest import FAST


def test_one_frame_per_snapshot_with_the_snapshot_weights(app_client, trained_run):
    response = app_client.get(f"/api/runs/{trained_run}/attention.gif", params={"layer": 1, "head": 0, "probe": 5})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    assert 'filename="run' in response.headers["content-disposition"]
    decoded = read_gif(response.content)
    steps = app_client.get(f"/api/runs/{trained_run}/snapshots").json()["steps"]
    assert len(decoded["frames"]) == len(steps) == 3 and decoded["loop"] == 0
    assert decoded["palette"] == animation.palette()

    view = app_client.get(f"/api/runs/{trained_run}/snapshots/{steps[-1]}", params={"probe": 5}).json()
    attention = view["attention"][1][0]  # [query][key <= query]
    width = len(attention)
    cell = max(2, animation.MAP_PIXELS // width)
    top = 5 * animation.SCALE + 2 * animation.PAD  # the label band
    frame = decoded["frames"][-1]
    for q in range(width):
        for k in range(width):
            pixel = frame[(top + q * cell + cell // 2) * decoded["width"] + k * cell + cell // 2]
            if k > q:
                assert pixel == animation.EMPTY
            else:
                assert abs(pixel - attention[q][k] * (animation.LEVELS - 1)) <= 1.5, (q, k, pixel, attention[q][k])
    assert animation.INK in frame[:top * decoded["width"]]  # the label is drawn


def test_bad_choices_are_422_naming_the_field(app_client, trained_run):
    for params, field in (({"head": 99}, "head"), ({"layer": 2}, "layer"), ({"probe": 6}, "probe"),
                          ({"head": -1}, "head"), ({"layer": "x"}, "layer")):
        response = app_client.get(f"/api/runs/{trained_run}/attention.gif", params=params)
        assert response.status_code == 422, (params, response.text)
        entry = response.json()["detail"][0]
        assert entry["field"] == field and entry["msg"], entry
    head = app_client.get(f"/api/runs/{trained_run}/attention.gif", params={"head": 4}).json()["detail"][0]
    assert head["msg"] == "must be 0 (got 4): the run has 1 head"
    layer = app_client.get(f"/api/runs/{trained_run}/attention.gif", params={"layer": 5}).json()["detail"][0]
    assert layer["msg"] == "must be 0..1 (got 5): the run has 2 layers"


def test_no_run_or_no_snapshot_is_404(app_client, csrf):
    missing = app_client.get("/api/runs/999999/attention.gif")
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]
    queued = app_client.post("/api/runs", json={"spec": FAST}, headers=csrf).json()["id"]  # nothing trained yet
    response = app_client.get(f"/api/runs/{queued}/attention.gif")
    assert response.status_code == 404 and "no snapshot yet" in response.json()["detail"]


def test_a_share_link_serves_its_runs_gif(app_client, served_url, trained_run, csrf):
    other = app_client.post("/api/runs", json={"spec": FAST}, headers=csrf).json()["id"]
    engine = make_engine(served_url)
    with session_scope(engine) as session:
        token = shares.create(session, kind="run", target={"run_ids": [trained_run]})[1]
    engine.dispose()
    shared = app_client.get(f"/s/{token}/api/runs/{trained_run}/attention.gif", params={"layer": 0, "head": 0})
    assert shared.status_code == 200 and shared.content[:6] == b"GIF89a"
    assert app_client.get(f"/s/{token}/api/runs/{other}/attention.gif").status_code == 404
