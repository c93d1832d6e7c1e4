"""Read models shared by the JSON API and the HTML pages: one function per view, one data source.

    from server.views import runs
    page = runs.list_runs(session, query=runs.RunQuery(status="RUNNING"))    # RunPage
    detail = runs.run_detail(session, run_id=7)                              # RunDetail
    view = runs.snapshot_view(session, run_id=7, step=250, probe=3)          # SnapshotView

``server.api.runs`` returns these models as JSON; ``server.pages.runs`` renders the same models
into templates, so a page and its JSON twin can never disagree. ``submit`` validates and queues
new runs (form and API alike). Torch-free, like the rest of the server.
"""
