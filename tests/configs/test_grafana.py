"""The shipped Grafana dashboard and Prometheus scrape config are valid, and every metric they query exists.

`configs/grafana/triage.json` is checked against a JSON schema written from Grafana's documented dashboard model
(`grafana_dashboard.schema.json` beside this file), then by what a schema cannot say: unique panel ids and
refIds, panels inside the 24-column grid and not overlapping, every panel on the dashboard's datasource
variable, balanced PromQL that calls only PromQL functions, and every metric name it reads exported by Triage
(`server/telemetry/metrics.py`) or by a vLLM engine (the names our simulated engine exports, which mirror
vLLM's), with `le` matchers on real bucket edges. The mutation tests show each check can fail.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram

from server.sim.engine import SimEngine
from server.sim.metrics import make_registry
from server.sim.spec import SimEngineSpec
from server.telemetry.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "configs" / "grafana" / "triage.json"
SCHEMA = json.loads((Path(__file__).parent / "grafana_dashboard.schema.json").read_text())
GRID_COLUMNS = 24
PROMQL_FUNCTIONS = {  # aggregations and functions the dashboard may call (PromQL's own names)
    *("sum", "min", "max", "avg", "count", "stddev", "topk", "bottomk", "quantile", "count_values", "group"),
    *("rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "clamp_min"),
    *("clamp_max", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "time", "vector"),
    *("label_replace", "absent", "changes", "resets", "round", "scalar", "sort", "sort_desc"),
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exported(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry exposes: counters as `_total`, histograms as `_bucket`, `_sum`, `_count`."""
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def bucket_edges() -> dict[str, set[float]]:
    """Histogram series name (`..._bucket`) -> its `le` edges, for Triage's and the engine's histograms."""
    metrics = Metrics()
    for value in vars(metrics).values():
        if isinstance(value, Histogram):
            labels = value._labelnames
            (value.labels(*["x"] * len(labels)) if labels else value).observe(0.0)
    registries = [metrics.registry, make_registry(SimEngine(SimEngineSpec(name="sim", port=1)))]
    edges: dict[str, set[float]] = {}
    for registry in registries:
        for family in registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    edges.setdefault(sample.name, set()).add(float(sample.labels["le"]))
    return edges


KNOWN_METRICS = exported(Metrics().registry) | exported(make_registry(SimEngine(SimEngineSpec(name="sim", port=1))))
BUCKETS = bucket_edges()


def promql_problems(expr: str) -> list[str]:
    """What is wrong with one PromQL expression: unbalanced brackets, unknown functions or metrics, bad `le`."""
    problems = []
    for open_, close in ("()", "[]", "{}"):
        if expr.count(open_) != expr.count(close):
            problems.append(f"unbalanced {open_}{close}")
    for metric, matchers in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        for edge in re.findall(r'\ble\s*=\s*"([^"]*)"', matchers):
            if float(edge) not in BUCKETS.get(metric, set()):
                problems.append(f'le="{edge}" is not a bucket edge of {metric}')
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+|\"[^\"]*\"", " ", expr)
    stripped = _LABEL_LISTS.sub(" ", stripped)
    for match in _IDENT.finditer(stripped):
        name = match.group()
        is_call = stripped[match.end() :].lstrip().startswith("(")
        if is_call and name not in PROMQL_FUNCTIONS:
            problems.append(f"unknown function {name}()")
        elif not is_call and name not in PROMQL_KEYWORDS and name not in KNOWN_METRICS:
            problems.append(f"unknown metric {name}")
    return problems


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """Everything wrong with a dashboard: schema errors first, then the checks a schema cannot express."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = [f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(dashboard)]
    if problems:
        return problems
    variables = {v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    problems += [f"panel id {i} used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for n, panel in enumerate(panels):
        where = f"panel {panel['id']} ({panel['title']})"
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > GRID_COLUMNS:
            problems.append(f"{where}: x + w = {grid['x'] + grid['w']} > {GRID_COLUMNS} columns")
        problems += [
            f"{where} overlaps panel {other['id']}" for other in panels[:n] if _overlap(grid, other["gridPos"])
        ]
        if panel["type"] == "row":
            continue
        for source in [panel["datasource"], *(t.get("datasource", panel["datasource"]) for t in panel["targets"])]:
            if source["type"] != "prometheus" or source["uid"].strip("${}") not in variables:
                problems.append(f"{where}: datasource {source} is not the dashboard's Prometheus variable")
        refs = [t["refId"] for t in panel["targets"]]
        if len(set(refs)) != len(refs):
            problems.append(f"{where}: refIds repeat: {refs}")
        problems += [f"{where}: {p}" for t in panel["targets"] for p in promql_problems(t["expr"])]
    return problems


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def test_shipped_dashboard_is_valid() -> None:
    dashboard = load()
    assert dashboard_problems(dashboard) == []
    queried = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for needed in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert needed in queried
    assert "vllm:time_to_first_token_seconds_bucket" in queried and "triage_decisions_total" in queried


def _mutated(change: str) -> dict[str, Any]:
    dashboard = copy.deepcopy(load())
    panel = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    if change == "unknown metric":
        panel["targets"][0]["expr"] = "sum(rate(triage_request_total[5m]))"  # _total missing its s
    elif change == "duplicate id":
        dashboard["panels"][-1]["id"] = panel["id"]
    elif change == "off the grid":
        panel["gridPos"]["x"] = 20
    elif change == "no datasource":
        del panel["datasource"]
    elif change == "bad function":
        panel["targets"][0]["expr"] = "histogram_quantil(0.5, triage_request_seconds_bucket)"
    elif change == "unbalanced":
        panel["targets"][0]["expr"] = "sum(rate(triage_requests_total[5m])"
    elif change == "le not an edge":
        panel["targets"][0]["expr"] = 'sum(rate(triage_time_to_first_token_seconds_bucket{le="0.8"}[5m]))'
    elif change == "width":
        panel["gridPos"]["w"] = 30
    return dashboard


@pytest.mark.parametrize(
    "change",
    [
        "unknown metric",
        "duplicate id",
        "off the grid",
        "no datasource",
        "bad function",
        "unbalanced",
        "le not an edge",
        "width",
    ],
)
def test_the_validator_catches(change: str) -> None:
    assert dashboard_problems(_mutated(change)) != []


def test_prometheus_config_scrapes_triage_and_vllm() -> None:
    config = yaml.safe_load((REPO / "configs" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"triage", "vllm"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        targets = [t for group in job["static_configs"] for t in group["targets"]]
        assert targets and all(re.fullmatch(r"[\w.-]+:\d+", t) for t in targets)
