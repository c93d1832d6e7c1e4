"""A seed-set intervention shows its distribution: in Chromium, the seed-set page's panel refuses a head
the seeds lack (the field outlined, nothing queued), queues the ideal-map patch on every seed, and once
the jobs have run (here, in-process) draws one point per seed against its head's peakiness, one per
seed in the distribution, and one row per seed in the table.

The seed set is three really trained tiny runs (``tests/population_support.trained_seed_set``, the
FAST spec: 20 steps each), so the jobs load real checkpoints. Its screenshot goes to
``$CIRCUITBOARD_SCREENS`` (default /tmp/screens).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.causal.jobs import execute_intervention_job
from core.db.models import Job
from core.db.session import make_engine, session_scope, upgrade
from tests.browser.conftest import SCREENS, live_server
from tests.population_support import trained_seed_set
from tests.server.conftest import FAST

pytestmark = pytest.mark.browser
SEEDS = [0, 1, 2]


@pytest.fixture
def trained_seeds(db_file_url, tmp_path, one_thread):
    upgrade(db_file_url)
    engine = make_engine(db_file_url)
    sweep_id = trained_seed_set(engine, seeds=SEEDS, spec=FAST, name="three trained seeds")
    server = live_server(db_file_url, tmp_path)
    yield next(server), engine, sweep_id
    next(server, None)
    engine.dispose()


def population_jobs(engine, sweep_id: int) -> list[int]:
    with session_scope(engine, readonly=True) as session:
        found = session.scalars(select(Job).where(Job.kind == "intervene").order_by(Job.id))
        return [job.id for job in found if job.payload.get("population") == sweep_id]


def run_jobs(engine, job_ids: list[int]) -> None:
    """What a worker does with each job: run it, then record it SUCCEEDED."""
    for job_id in job_ids:
        assert execute_intervention_job(engine, job_id) == "SUCCEEDED"
        with session_scope(engine) as session:
            session.get(Job, job_id).status = "SUCCEEDED"


def points_inside_the_plot(page, element_id: str, trace: int) -> list[bool]:
    """For each marker of ``trace``: is it drawn, with a size, inside the plot area (a 0.00 included)?"""
    return page.evaluate("""([id, index]) => {
        const root = document.getElementById(id);
        const area = root.querySelector('rect.nsewdrag').getBoundingClientRect();
        const trace = root.querySelectorAll('.scatterlayer .trace')[index];
        return [...trace.querySelectorAll('.point')].map(p => {
            const r = p.getBoundingClientRect();
            return r.height > 2 && r.top >= area.top - 1 && r.bottom <= area.bottom + 1;
        });
    }""", [element_id, trace])


def test_a_seed_set_intervention_shows_its_distribution(trained_seeds, page):
    url, engine, sweep_id = trained_seeds
    page.goto(f"{url}/seed-sets/{sweep_id}")
    form = page.locator("#population-form")
    form.wait_for()
    page.wait_for_selector("#iv-empty", state="visible")  # read from the API: nothing run on these seeds yet
    form.locator("input[name=rows_per_len]").fill("4")
    form.locator("input[name=heads]").fill("L9H9")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#iv-status:has-text('refused')")
    assert "heads: seed 0 (run" in page.locator("#iv-status").text_content()
    assert "invalid" in form.locator("input[name=heads]").get_attribute("class")
    assert population_jobs(engine, sweep_id) == []

    form.locator("input[name=heads]").fill("")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#iv-status:has-text('3 jobs queued, one per member')")
    job_ids = population_jobs(engine, sweep_id)
    assert len(job_ids) == len(SEEDS)
    page.wait_for_selector("#iv-jobs:has-text('3 member jobs queued or running')")
    run_jobs(engine, job_ids)

    page.wait_for_selector("#fig-iv-members .scatterlayer .trace .point", timeout=20_000)
    page.wait_for_function("() => document.getElementById('iv-jobs').textContent === ''")
    titles = page.locator("#iv-series option").all_text_contents()
    assert "pattern/ideal @ each member's EoI locator" in titles
    page.select_option("#iv-series", label="pattern/ideal @ each member's EoI locator")
    names = page.evaluate("() => document.getElementById('fig-iv-members').data.map(t => t.name)")
    assert names == ["baseline -> intervened", "baseline (untouched)", "intervened"]
    assert points_inside_the_plot(page, "fig-iv-members", 2) == [True] * len(SEEDS)  # one point per seed, all visible
    assert points_inside_the_plot(page, "fig-iv-members", 1) == [True] * len(SEEDS)  # and each one's baseline
    boxes = page.evaluate("""() => document.getElementById('fig-iv-distribution').data
        .map(t => [t.name, t.y.length])""")
    assert ["intervened", len(SEEDS) * len(titles)] in boxes
    drawn = page.locator("#fig-iv-distribution .boxlayer .trace").nth(1).locator(".point").count()
    assert drawn == len(SEEDS) * len(titles)  # every seed's point in the strip
    rows = page.locator("#iv-members tbody tr")
    assert rows.count() == len(SEEDS)
    assert rows.locator("td:first-child").all_text_contents() == [str(seed) for seed in SEEDS]
    assert "intervened accuracy over 3 seeds: mean" in page.locator("#iv-summary").text_content()
    page.locator("#population-interventions").screenshot(path=str(SCREENS / "seed_set_interventions.png"))
    assert page.problems == []
