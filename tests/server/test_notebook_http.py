"""The notebook API against a live server: the same figures as from the database it serves.

One tiny run is trained into a temp SQLite file (``tests/core/test_notebook.build_database``), a real
``uvicorn`` process serves that file (``tests/browser/conftest.live_server``), and every figure the
client reads over HTTP is compared with the one it reads from the database: each run's record, every
metric series, every probe of every snapshot, every checkpoint's weights, the intervention results.
A share link and a lab server's token are read through as well.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from core.db import shares
from core.db.session import make_engine, session_scope
from core.notebook import NotebookError
from core.notebook import open as cb_open
from tests.browser.conftest import ROOT, _env, _free_port, _stop, live_server
from tests.core.test_notebook import build_database

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    return build_database(tmp_path_factory.mktemp("notebook_http"))


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    yield from live_server(built["url"], tmp_path_factory.mktemp("notebook_server"))


@pytest.fixture(scope="module")
def both(built, server):
    with cb_open(built["url"]) as database, cb_open(server) as http:
        yield database, http


def same_series(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1], equal_nan=True)
        and a[k][0].dtype == b[k][0].dtype and a[k][1].dtype == b[k][1].dtype for k in a)


def test_runs_and_their_records_are_the_same(both, built):
    database, http = both
    for filters in ({}, {"status": "SUCCEEDED"}, {"preset": "other"}, {"tag": "done"}, {"text": "wait"},
                    {"problem": "parity"}, {"problem": "polynomial"}):
        assert [r.id for r in http.runs(**filters)] == [r.id for r in database.runs(**filters)], filters
    assert len(database.runs()) == 2
    for ours, theirs in zip(database.runs(), http.runs()):
        assert vars(ours).keys() == vars(theirs).keys()
        for name, value in vars(ours).items():
            if name != "_source":
                assert getattr(theirs, name) == value, name
    frames = [client.runs().to_dataframe() for client in (database, http)]
    assert frames[0].equals(frames[1])


def test_every_metric_series_is_the_same(both, built):
    database, http = both
    ours, theirs = database.run(built["trained"]), http.run(built["trained"])
    every = ours.metrics()
    assert len(every) > 50 and same_series(every, theirs.metrics())
    keys = ["train/loss", "test/seq_acc", *sorted(every)[:5]]
    assert same_series(ours.metrics(keys), theirs.metrics(keys))
    prefix = "score/eoi_locator/"
    assert same_series(ours.metrics(prefix=prefix), theirs.metrics(prefix=prefix))
    with pytest.raises(NotebookError, match="recorded no 'nope'"):
        theirs.metrics("nope")


def test_every_snapshot_is_the_same(both, built):
    database, http = both
    ours, theirs = database.run(built["trained"]), http.run(built["trained"])
    compared = 0
    for step in ours.snapshot_steps:
        for probe in range(len(ours.snapshot(step).lengths)):
            a, b = ours.snapshot(step, probe=probe), theirs.snapshot(step, probe=probe)
            assert a.attention.dtype == b.attention.dtype == np.float32
            assert np.array_equal(a.attention, b.attention), (step, probe)
            assert (a.tokens, a.labels, a.length, a.lengths) == (b.tokens, b.labels, b.length, b.lengths)
            assert all(np.array_equal(x, y) for role in a.expected for x, y in zip(a.expected[role], b.expected[role]))
            compared += 1
    assert compared == 3 * 6  # three snapshot steps, six probe sequences


def test_every_checkpoint_loads_the_same_weights(both, built):
    torch = pytest.importorskip("torch")
    database, http = both
    ours, theirs = database.run(built["trained"]), http.run(built["trained"])
    assert ours.checkpoint_steps == theirs.checkpoint_steps and len(ours.checkpoint_steps) >= 3
    for step in ours.checkpoint_steps:
        a, b = ours.model(step).state_dict(), theirs.model(step).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), step
    pytest.importorskip("transformer_lens")
    tokens = torch.tensor([ours.snapshot().tokens])
    with torch.no_grad():
        assert torch.equal(ours.hooked_model(paper_norm_hooks=True)(tokens),
                           theirs.hooked_model(paper_norm_hooks=True)(tokens))


def test_interventions_are_the_same(both, built):
    database, http = both
    ours, theirs = database.run(built["trained"]).interventions(), http.run(built["trained"]).interventions()
    assert ours.series and ours == theirs
    assert ours.to_dataframe().equals(theirs.to_dataframe())


def test_server_errors_name_what_was_asked(both, server):
    _, http = both
    with pytest.raises(NotebookError, match=r"no run 999 \(HTTP 404 from "):
        http.run(999)
    with pytest.raises(NotebookError, match="is not an http"):
        cb_open("http://")
    with pytest.raises(NotebookError, match="cannot reach http://127.0.0.1:9"):
        cb_open("http://127.0.0.1:9").runs()


def test_a_share_link_reads_only_its_run(built, server):
    engine = make_engine(built["url"])
    try:
        with session_scope(engine) as session:
            _, token = shares.create(session, kind="run", target={"run_ids": [built["trained"]]})
    finally:
        engine.dispose()
    with cb_open(f"{server}/s/{token}") as shared, cb_open(built["url"]) as database:
        assert [r.id for r in shared.runs()] == [built["trained"]]
        assert np.array_equal(shared.run(built["trained"]).snapshot().attention,
                              database.run(built["trained"]).snapshot().attention)
        with pytest.raises(NotebookError, match=f"no run {built['waiting']}"):
            shared.run(built["waiting"])


def test_a_lab_server_takes_its_token(built, tmp_path):
    """A server with CIRCUITBOARD_AUTH_TOKEN: no token is a clear error, the token reads the run."""
    import httpx

    port = _free_port()
    env = {**_env(built["url"]), "CIRCUITBOARD_AUTH_TOKEN": "s3cret"}
    with open(tmp_path / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "server.main:create_app",
                                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, Path(tmp_path / "server.log").read_text()
            time.sleep(0.2)
        with pytest.raises(NotebookError, match=r"wants a token: open\('http://127.0.0.1:\d+', token=\.\.\.\)"):
            cb_open(base).runs()
        with pytest.raises(NotebookError, match="wants a token"):
            cb_open(base, token="wrong").run(built["trained"])
        with cb_open(base, token="s3cret") as lab:
            assert lab.run(built["trained"]).metrics("train/loss")["train/loss"][0][-1] == 20
        page = httpx.get(f"{base}/runs/{built['trained']}", headers={"Authorization": "Bearer s3cret"})
        assert 'token=os.environ["CIRCUITBOARD_AUTH_TOKEN"]' in snippet(page.text)  # never the token itself
        assert "s3cret" not in page.text
    finally:
        _stop(process)


def snippet(html: str) -> str:
    """The code of a page's "open in a notebook" box, as a reader copies it."""
    box = html.split('<details class="notebook-snippet">', 1)[1].split("</details>", 1)[0]
    return unescape(re.search(r"<pre[^>]*><code>(.*?)</code></pre>", box, flags=re.S)[1])


def test_the_run_page_snippet_loads_what_the_page_shows(built, server):
    import httpx

    html = httpx.get(f"{server}/runs/{built['trained']}?step=10&probe=3&layer=1&head=0").text
    code = snippet(html)
    assert f"cb_open(\"{server}\")" in code and f"run = cb.run({built['trained']})" in code
    assert "run.snapshot(10, probe=3)" in code and "snap.attention[1, 0]" in code and "run.model(10)" in code
    scope: dict = {}
    exec(compile(code, "snippet", "exec"), scope)  # the lines run as shown, against the live server
    with cb_open(built["url"]) as database:
        run = database.run(built["trained"])
        assert np.array_equal(scope["pattern"], run.snapshot(10, probe=3).attention[1, 0])
        assert np.array_equal(scope["loss"], run.metrics("train/loss")["train/loss"][1])
    assert scope["causal"].series  # the edge intervention's results


def test_a_shared_page_snippet_reads_through_its_link(built, server):
    engine = make_engine(built["url"])
    try:
        with session_scope(engine) as session:
            _, token = shares.create(session, kind="run", target={"run_ids": [built["trained"]]})
    finally:
        engine.dispose()
    import httpx

    code = snippet(httpx.get(f"{server}/s/{token}/runs/{built['trained']}").text)
    assert f"cb_open(\"{server}/s/{token}\")" in code and "token=" not in code
    scope: dict = {}
    exec(compile(code, "snippet", "exec"), scope)
    assert scope["run"].id == built["trained"] and scope["snap"].step == 20  # the page's default: the last step
