"""A JSON value valid against a JSON schema, drawn deterministically: what the simulator "generates" for tool-call
arguments and `response_format` JSON schemas, the way vLLM's guided decoding makes a real model's output valid.

Covers what clients send (OpenAI function parameters, pydantic's and zod's schemas): `type` (one or a list),
`enum`, `const`, `properties`/`required`/`additionalProperties`/`minProperties`, `items`/`prefixItems` with
`minItems`/`maxItems`/`uniqueItems`, string `minLength`/`maxLength`/`format`, number bounds and `multipleOf`,
`anyOf`/`oneOf`/`allOf`, and local `$ref`s (`#/$defs/...`, `#/definitions/...`, `#`), recursive ones included.
Sizes are bounded (a schema requiring more than `MAX_SIZE` characters, items or properties is refused), and so is
recursion: past `SHALLOW_DEPTH` only what the schema requires is generated (required properties,
`minItems` items, the non-recursive branch of a union), and a schema that requires nesting deeper than
`MAX_DEPTH` is refused. `pattern` is not generated: a string that happens to fit is looked for among a few
candidates. Strings say `[simulated]` where the schema leaves them free. Pure; knows nothing about HTTP or engines.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from typing import Any

SHALLOW_DEPTH = 3  # below this nesting depth optional properties and a couple of array items are generated
MAX_DEPTH = 16  # a schema that requires deeper nesting than this is refused
MAX_SIZE = 10_000  # longest string, most items or properties a schema may require
MARKER = "[simulated]"
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00Z",
    "duration": "P1D",
    "email": "simulated@example.com",
    "idn-email": "simulated@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/simulated",
    "iri": "https://example.com/simulated",
    "uri-reference": "https://example.com/simulated",
    "url": "https://example.com/simulated",
}


class SchemaError(ValueError):
    """The schema cannot be satisfied (or is not a schema); the message says which part."""


def instance(schema: Any, rng: random.Random) -> Any:
    """A value valid against `schema` (a JSON-schema dict or boolean), drawn with `rng`."""
    try:
        return _Drawer(schema, rng).draw(schema, 0, "#")
    except SchemaError:
        raise
    except (AttributeError, TypeError, ValueError, OverflowError, RecursionError) as exc:  # a malformed schema
        raise SchemaError(f"the schema is malformed or out of range ({type(exc).__name__}: {exc})") from None


class _Drawer:
    def __init__(self, root: Any, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.drawn = 0  # values drawn so far, bounded by MAX_SIZE * 10

    def draw(self, schema: Any, depth: int, where: str) -> Any:
        self.drawn += 1
        if self.drawn > MAX_SIZE * 10:
            raise SchemaError(f"the schema requires more than {MAX_SIZE * 10} values")
        if isinstance(schema, dict):
            for key in ("minLength", "minItems", "minProperties"):
                if isinstance(schema.get(key), int) and schema[key] > MAX_SIZE:
                    raise SchemaError(f"{key} {schema[key]} at {where} is over the simulator's limit of {MAX_SIZE}")
        if depth > MAX_DEPTH:
            raise SchemaError(f"the schema requires nesting deeper than {MAX_DEPTH} levels at {where}")
        if schema is True or schema == {}:
            return MARKER
        if schema is False:
            raise SchemaError(f"the schema at {where} is `false`: no value is valid")
        if not isinstance(schema, dict):
            raise SchemaError(f"the schema at {where} is a {type(schema).__name__}, not an object")
        if "$ref" in schema:
            target = self.resolve(schema["$ref"], where)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return self.draw({**target, **rest} if rest else target, depth + 1, schema["$ref"])
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        if isinstance(schema.get("allOf"), list):
            return self.draw(_merge(schema), depth, where)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k != key}
                branch = self.pick_branch(branches, depth)
                merged = {**rest, **branch} if isinstance(branch, dict) else branch
                return self.draw(merged, depth, f"{where}/{key}")
        kind = self.pick_type(schema, depth)
        if kind == "object":
            return self.draw_object(schema, depth, where)
        if kind == "array":
            return self.draw_array(schema, depth, where)
        if kind == "string":
            return self.draw_string(schema)
        if kind == "integer":
            return _integer(schema, self.rng)
        if kind == "number":
            return _number(schema, self.rng)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        raise SchemaError(f"unknown type '{kind}' at {where}")

    def resolve(self, ref: Any, where: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"only local $refs (#/...) are supported, got {ref!r} at {where}")
        node = self.root
        for part in ref[1:].split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise SchemaError(f"$ref {ref} at {where} points nowhere")
        return node

    def pick_branch(self, branches: list[Any], depth: int) -> Any:
        """Deep down, the branch least likely to recurse; otherwise the first that is not null."""
        if depth >= SHALLOW_DEPTH:
            return min(branches, key=_recursion_risk)
        non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
        return (non_null or branches)[0]

    def pick_type(self, schema: dict[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list) and kind:
            non_null = [k for k in kind if k != "null"]
            if "null" in kind and (depth >= SHALLOW_DEPTH or not non_null):
                return "null"
            return str(non_null[0])
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if "minimum" in schema or "maximum" in schema:
            return "number"
        return "string"

    def draw_object(self, schema: dict[str, Any], depth: int, where: str) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        wanted = list(properties) if depth < SHALLOW_DEPTH else [p for p in properties if p in required]
        out: dict[str, Any] = {}
        for name in [*wanted, *(r for r in required if r not in wanted)]:
            sub = properties.get(name, schema.get("additionalProperties", True))
            out[name] = self.draw(sub if sub is not False else True, depth + 1, f"{where}/properties/{name}")
        extra = schema.get("additionalProperties", True)
        at_least = int(schema.get("minProperties") or 0)
        if not properties and isinstance(extra, dict) and depth < SHALLOW_DEPTH:
            at_least = max(at_least, 1)  # a free-form map: show one entry
        n = 0
        while len(out) < at_least and extra is not False:
            n += 1
            out[f"{_WORDS[n % len(_WORDS)]}_{n}"] = self.draw(extra, depth + 1, f"{where}/additionalProperties")
        return out

    def draw_array(self, schema: dict[str, Any], depth: int, where: str) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        low = int(schema.get("minItems") or 0)
        high = schema.get("maxItems")
        count = max(low, len(prefix) if depth < SHALLOW_DEPTH else 0, 2 if depth < SHALLOW_DEPTH else 0)
        if isinstance(high, int):
            count = min(count, high)
        if items is False:
            count = min(count, len(prefix))
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            value = self.draw(sub, depth + 1, f"{where}/items/{i}")
            if schema.get("uniqueItems"):
                unused = [v for v in sub.get("enum") or [] if v not in out] if isinstance(sub, dict) else []
                value = unused[0] if unused else value
                for _ in range(16):  # redraw a repeated value a few times, then drop it if allowed
                    if value not in out:
                        break
                    value = self.draw(sub, depth + 1, f"{where}/items/{i}")
                if value in out:
                    if len(out) >= low:
                        break
                    raise SchemaError(f"cannot draw {low} unique items at {where}")
            out.append(value)
        return out

    def draw_string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            text = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        elif isinstance(fmt, str) and fmt in _FORMATS:
            text = _FORMATS[fmt]
        else:
            text = f"{MARKER} {self.rng.choice(_WORDS)}"
        low = int(schema.get("minLength") or 0)
        high = schema.get("maxLength")
        if len(text) < low:
            text += "x" * (low - len(text))
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            text = _fit_pattern(pattern, text, low, high if isinstance(high, int) else None)
        return text


def _merge(schema: dict[str, Any]) -> dict[str, Any]:
    """`allOf` folded into one schema: properties and required lists united, other keys from later parts."""
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _recursion_risk(branch: Any) -> int:
    """0 for null, 1 for scalars, 2 for containers, 3 for references (which may lead back up)."""
    if not isinstance(branch, dict):
        return 1
    if branch.get("type") == "null":
        return 0
    if "$ref" in branch:
        return 3
    if branch.get("type") in ("object", "array") or "properties" in branch or "items" in branch:
        return 2
    return 1


def _bounds(schema: dict[str, Any], default_low: float, default_high: float) -> tuple[float, float, bool, bool]:
    """(low, high, low exclusive, high exclusive), drafts 4 (boolean exclusives) and 6+ (numeric) alike."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_ex = high_ex = False
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_min, bool):
        low_ex = ex_min
    elif isinstance(ex_min, int | float):
        low, low_ex = ex_min, True
    if isinstance(ex_max, bool):
        high_ex = ex_max
    elif isinstance(ex_max, int | float):
        high, high_ex = ex_max, True
    span = default_high - default_low
    if not isinstance(low, int | float):
        if not isinstance(high, int | float):
            return default_low, default_high, False, False
        low, low_ex = float(high) - span, False
    if not isinstance(high, int | float):
        high, high_ex = float(low) + span, False
    return float(low), float(high), low_ex, high_ex


def _integer(schema: dict[str, Any], rng: random.Random) -> int:
    low, high, low_ex, high_ex = _bounds(schema, 0, 100)
    lo = int(low) + 1 if low_ex and low == int(low) else -int(-low // 1)  # ceil
    hi = int(high) - 1 if high_ex and high == int(high) else int(high // 1)  # floor
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        first = -(-lo // step) * step
        if first > hi:
            raise SchemaError(f"no multiple of {step} lies in [{low:g}, {high:g}]")
        return first + step * rng.randint(0, (hi - first) // step)
    if lo > hi:
        raise SchemaError(f"no integer lies in the bounds [{low:g}, {high:g}]")
    return rng.randint(lo, hi)


def _number(schema: dict[str, Any], rng: random.Random) -> float | int:
    low, high, low_ex, high_ex = _bounds(schema, 0, 100)
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        first, last = math.ceil(low / step), math.floor(high / step)
        first += 1 if low_ex and first * step <= low else 0
        last -= 1 if high_ex and last * step >= high else 0
        for k in [rng.randint(first, last) for _ in range(8)] if first <= last else []:
            value = round(k * step, 12)
            if (value / step).is_integer():  # what validators check, in floating point
                return value
        raise SchemaError(f"no multiple of {step:g} lies in [{low:g}, {high:g}]")
    if high < low or (high == low and (low_ex or high_ex)):
        raise SchemaError(f"no number lies in the bounds [{low:g}, {high:g}]")
    span = high - low
    value = round(low + span * (0.25 + 0.5 * rng.random()), 2)
    if not low < value < high:
        value = low + span / 2
    return value


def _fit_pattern(pattern: str, text: str, low: int, high: int | None) -> str:
    """`text` if it matches `pattern`, else the first of a few plain candidates that does (no generator)."""
    try:
        regex = re.compile(pattern)
    except re.error:
        return text
    for candidate in (text, MARKER, "simulated", "a", "A", "0", "abc", "ABC", "123", "a1", ""):
        if regex.search(candidate) and len(candidate) >= low and (high is None or len(candidate) <= high):
            return candidate
    return text
