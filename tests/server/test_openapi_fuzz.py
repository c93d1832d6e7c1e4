"""Property-based requests over the OpenAPI schema (schemathesis, in-process on the ASGI app): never a 5xx.

Every operation in /openapi.json gets a bounded number of schema-valid and schema-violating
requests (seeded, so a failure reproduces), sent as an API client (``Authorization: Bearer``, so
CSRF does not stop them before the routes see them) to a loopback Host. The database holds one trained run, so run
ids 1.. reach real data. A 5xx anywhere fails the test with the request that caused it.
"""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 8  # per operation and mode: 2 x 8 x ~25 operations, about 10 s per database
HEADERS = {"Authorization": "Bearer fuzz", "Host": "127.0.0.1"}  # the open dashboard answers loopback names only


def fuzz(operation, mode: GenerationMode, failures: list[str]) -> int:
    calls = 0

    @seed(20261125)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=HEADERS)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"
                            f" -> {response.status_code} {response.text[:200]}")

    try:
        check()
    except Unsatisfiable:  # an operation without inputs has nothing to violate
        assert mode is GenerationMode.NEGATIVE
    return calls


def test_no_request_from_the_schema_gets_a_5xx(app, trained_run):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Host": "127.0.0.1"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/compare", "/api/sweeps", "/api/sweeps/{sweep_id}",
                                               "/api/runs/{run_id}/shares", "/api/shares/{share_id}"}
    started, failures, calls = time.monotonic(), [], 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            calls += fuzz(operation, mode, failures)
    assert calls >= len(operations) * EXAMPLES  # every operation was exercised
    assert not failures, "\n".join(failures[:20])
    assert time.monotonic() - started < 60
