"""Schemathesis against Triage's own OpenAPI spec: valid and invalid requests on every operation, against a
running router with simulated engines; no answer may be a 5xx.

Bounded: `TRIAGE_FUZZ_EXAMPLES` cases per operation and mode (default 150: about 1,200 cases, 1-3 minutes on two
cores). `TRIAGE_FUZZ_REPORT=path.json` writes the counts (the fault benchmark reads them).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from server.sim.spec import SimEngineSpec

from .conftest import RunningTriage, demo_like_config, run_triage

EXAMPLES = int(os.environ.get("TRIAGE_FUZZ_EXAMPLES", "150"))
REPORT = os.environ.get("TRIAGE_FUZZ_REPORT")
MODELS = [None, "auto", "auto", "coder", "chat", "fast"]  # None: keep the generated name


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[RunningTriage]:
    config = demo_like_config()
    for model in config.models:
        assert isinstance(model.simulated, SimEngineSpec)
        model.simulated.time_scale = 0.005  # generation is not what is under test here
    with run_triage(config) as running:
        yield running


@pytest.mark.slow
def test_no_5xx_on_any_generated_request(fuzzed: RunningTriage) -> None:
    schema = schemathesis.openapi.from_url(fuzzed.base_url + "/openapi.json")
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    session = requests.Session()
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # our own spec: never an Err
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), model=st.sampled_from(MODELS))
            def run(case: Any, model: str | None) -> None:
                if model is not None and isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
                    case.body["model"] = model  # reach the engines too, not only the 404 for unknown names
                response = case.call(base_url=fuzzed.base_url, session=session, timeout=30)
                statuses[response.status_code] += 1
                if response.status_code >= 500 and len(failures) < 20:
                    failures.append(f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}")

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (e.g. GET /health takes nothing)
                assert mode is GenerationMode.NEGATIVE, operation.label
    cases = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    if REPORT:
        with open(REPORT, "w") as out:
            json.dump(
                {
                    "cases": cases,
                    "5xx": server_errors,
                    "by_status": dict(sorted(statuses.items())),
                    "seconds": round(time.monotonic() - t0, 1),
                },
                out,
            )
    assert server_errors == 0, failures
    assert cases >= 6 * EXAMPLES, statuses  # 8 operations; tiny input spaces (GET /health) run out early
