"""Where simulated engine specs come from: a `sim_engines:` YAML, or Triage models of `kind: simulated`.

Turns dicts into validated `SimEngineSpec`s with errors that name the model or entry. Knows nothing about
running engines; `${ENV}` interpolation of the main config is not applied here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from server.sim.spec import SimEngineSpec


class SimConfigError(ValueError):
    """The simulated-engine config is unreadable or invalid; the message names the entry and the fix."""


def _port_from_url(url: str, model: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.port is None or parts.hostname is None:
        raise SimConfigError(
            f"model '{model}': endpoint '{url}' has no explicit port; give simulated.port or a URL like "
            "http://127.0.0.1:8101/v1"
        )
    return parts.hostname, parts.port


def spec_for_model(model: Mapping[str, Any]) -> SimEngineSpec:
    """The spec of one Triage model of kind `simulated` (a mapping of its config keys).

    Its `simulated:` settings (a mapping, a `SimEngineSpec`, or absent for all defaults) are completed from the
    model: name = served_name or name; port and host from simulated.port or the first endpoint (`endpoints[0]`,
    or `base_url`); gpu from simulated.gpu, else the model's `gpu`; max_model_len from simulated, else the model's
    `context_length`.
    """
    label = str(model.get("name", "?"))
    sim = model.get("simulated")
    if isinstance(sim, SimEngineSpec):
        sim = sim.model_dump()
    if sim is None:
        sim = {}
    if not isinstance(sim, dict):
        raise SimConfigError(f"model '{label}': 'simulated' must be a mapping of SimEngineSpec keys")
    data: dict[str, Any] = dict(sim)
    data.setdefault("name", model.get("served_name") or model.get("name"))
    if "port" not in data:
        endpoints = model.get("endpoints") or ([model["base_url"]] if model.get("base_url") else [])
        if not endpoints:
            raise SimConfigError(f"model '{label}': give simulated.port or an endpoint URL with a port")
        host, port = _port_from_url(str(endpoints[0]), label)
        data["port"] = port
        data.setdefault("host", host)
    if model.get("gpu") is not None:
        data.setdefault("gpu", model["gpu"])
    if model.get("context_length") is not None:
        data.setdefault("max_model_len", model["context_length"])
    try:
        return SimEngineSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'simulated'}: {e['msg']}" for e in exc.errors())
        raise SimConfigError(f"model '{label}': invalid simulated engine: {problems}") from exc


def specs_from_models(models: list[dict[str, Any]]) -> list[SimEngineSpec]:
    """Specs of the models of `kind: simulated` (see `spec_for_model`); the others are skipped."""
    return [spec_for_model(m) for m in models if m.get("kind") == "simulated"]


def specs_from_yaml(path: str | Path) -> list[SimEngineSpec]:
    """Read `sim_engines: [SimEngineSpec...]` or a Triage config's `models:` list from a YAML file."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SimConfigError(f"cannot read simulated-engine config '{path}': {exc}") from exc
    if not isinstance(doc, dict):
        raise SimConfigError(f"'{path}' must hold a mapping with 'sim_engines:' or 'models:'")
    if "sim_engines" in doc:
        entries = doc["sim_engines"]
        if not isinstance(entries, list):
            raise SimConfigError(f"'{path}': 'sim_engines' must be a list of engine mappings")
        specs = []
        for i, entry in enumerate(entries):
            try:
                specs.append(SimEngineSpec.model_validate(entry))
            except ValidationError as exc:
                raise SimConfigError(f"'{path}': sim_engines[{i}] is invalid: {exc}") from exc
    elif isinstance(doc.get("models"), list):
        specs = specs_from_models(doc["models"])
    else:
        raise SimConfigError(f"'{path}' has neither 'sim_engines:' nor a 'models:' list")
    if not specs:
        raise SimConfigError(f"'{path}' defines no simulated engines (no model has kind: simulated)")
    return specs
