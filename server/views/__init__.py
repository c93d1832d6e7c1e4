"""Read models shared by the JSON API and the HTML pages: one function per view, one data source.

    from server.views import compare, runs, sweeps
    page = runs.list_runs(session, query=runs.RunQuery(status="RUNNING"))    # RunPage
    detail = runs.run_detail(session, run_id=7)                              # RunDetail
    view = runs.snapshot_view(session, run_id=7, step=250, probe=3)          # SnapshotView
    data = sweeps.sweep_view(session, sweep_id=4, access=access)             # the sweep page's data
    data = compare.compare_view(session, access=access, run_ids=[3, 5], ...) # the compare page's data

Every page and its JSON twin call the same function here (``server.api.runs`` returns the model,
``server.pages.runs`` renders it), so ``/runs/7`` and ``/api/runs/7`` can never disagree. Views only
read; what is missing raises ``server.errors.NotFound``, which the app answers with 404 (HTML for a
page, JSON for the API). Writes live elsewhere (``server.submit`` queues new runs). Torch-free, like
the rest of the server.
"""
