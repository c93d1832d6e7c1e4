"""The large attention map at L = 16 (the default max_len): square cells, thinned labels, and the
expected-cell overlay drawn as thin outlines no bigger than a cell, so the attention stays visible.
The screenshot goes to /tmp/screens/.
"""

from __future__ import annotations

import pytest

from core.db.session import make_engine, session_scope, upgrade
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.browser.conftest import SCREENS, live_server
from tests.browser.test_share_and_xss import train
from tests.server.conftest import FAST

pytestmark = pytest.mark.browser


@pytest.fixture
def long_run(db_file_url, tmp_path):
    upgrade(db_file_url)
    engine = make_engine(db_file_url)
    with session_scope(engine) as session:
        spec = RunSpec.from_flat({**FAST, "problem": "polynomial", "max_len": 16, "n_train_per_len": 4,
                                  "n_test_per_len": 2, "probe_per_len": 1})
        run_id = submit_run(session, spec=spec, name="long").run_id
    engine.dispose()
    train(db_file_url, run_id)
    server = live_server(db_file_url, tmp_path)
    yield next(server), run_id
    next(server, None)


def test_the_overlay_outlines_cells_without_hiding_them_at_length_16(long_run, page):
    url, run_id = long_run
    page.goto(f"{url}/runs/{run_id}?layer=0&head=0")
    page.wait_for_function("() => { const el = document.getElementById('attention-focus');"
                           " return el && el.data && el.layout.shapes && el.layout.shapes.length > 0; }")
    fig = page.evaluate("() => { const el = document.getElementById('attention-focus');"
                        " return {n: el.data[0].z.length, shapes: el.layout.shapes, types: el.data.map(d => d.type),"
                        " ticks: el.layout.yaxis.tickvals.length, xlen: el._fullLayout.xaxis._length,"
                        " ylen: el._fullLayout.yaxis._length}; }")
    assert fig["n"] > 16  # an L = 16 probe: more positions than labels shown
    assert 0 < fig["ticks"] <= 16
    assert abs(fig["xlen"] - fig["ylen"]) <= 2  # square cells: the axes have one length
    for shape in fig["shapes"]:
        assert shape["type"] == "rect" and shape["fillcolor"] == "rgba(0,0,0,0)" and shape["line"]["width"] <= 2
        assert 0 < shape["x1"] - shape["x0"] < 1 and 0 < shape["y1"] - shape["y0"] < 1  # inside its cell
    # the legend traces name the colours and draw no markers over the cells
    assert page.evaluate("() => document.getElementById('attention-focus').data.slice(1).every(d => d.x.every(v => v === null))")
    page.locator("#attention-focus").screenshot(path=str(SCREENS / "attention_L16.png"))
    assert page.problems == []
