"""Everything a parsed JSON body says, as text: every string, every dict key at every level, every number.

`collect()` walks the body with an explicit stack (no recursion: depth is the client's to choose) and stops
with `NestingTooDeep` past `MAX_DEPTH` levels and with `Collected.over_budget` once the text would exceed the
character budget. Everything costs budget, so that the walk is bounded too: a list or an object
`CONTAINER_CHARS` (about what walking it costs, measured against text: 200 000 empty lists took 0.4 s),
`true`, `null` and a fraction one. Integers become their digits (a card number sent as a JSON number),
integral floats likewise. A completions `prompt` (or embeddings `input`) made of token ids is text nobody can
read here: `Collected.token_ids` says so. Knows nothing about what the text contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat

from ..errors import NestingTooDeep
from .matching import Deadline

MAX_DEPTH = 64  # levels of nested lists and objects; the body itself is level 1
# Values that name structure rather than say something; left out of the joined conversation so that the
# pieces of a secret split across messages meet (they are still scanned on their own).
_STRUCTURAL_KEYS = frozenset({"role", "model", "type", "id", "tool_call_id", "object", "name"})
# Field names of the OpenAI and Anthropic request schemas: a key that is one of these says nothing, so it is not
# scanned (unknown keys are: a secret may hide in a metadata key). "max_tokens" alone made the password detector
# run its regexes on every request, since its triggers include "token".
KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "role",
        "content",
        "name",
        "stream",
        "stream_options",
        "include_usage",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "user",
        "tools",
        "tool_choice",
        "type",
        "function",
        "description",
        "parameters",
        "properties",
        "required",
        "strict",
        "response_format",
        "json_schema",
        "schema",
        "text",
        "image_url",
        "url",
        "detail",
        "tool_calls",
        "tool_call_id",
        "id",
        "arguments",
        "logprobs",
        "top_logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "prompt",
        "suffix",
        "echo",
        "best_of",
        "input",
        "instructions",
        "max_output_tokens",
        "system",
        "stop_sequences",
        "top_k",
        "metadata",
        "route",
        "priority",
        "weights",
        "max_latency_ms",
        "max_cost",
        "models",
        "allow_remote",
        "ignore_eos",
        "min_tokens",
        "",
    }
)
_TOKEN_ID_KEYS = ("prompt", "input")
_TOKEN_ID_PROBE = 64  # items looked at to call a list token ids
CONTAINER_CHARS = 16  # what a list or object costs of the budget: walking one costs about as much as that text
_BIG_NUMBER = 10**20  # numbers this large or larger are no card or phone number (and int->str has a limit)
_CHECK_EVERY = 4096  # items between deadline checks inside one long list


@dataclass
class Collected:
    parts: list[str] = field(default_factory=list)  # every string, key and number, in body order
    said: list[str] = field(default_factory=list)  # the string values a person or tool wrote, in body order
    chars: int = 0  # characters in `parts` plus one per container
    over_budget: bool = False
    token_ids: bool = False


def is_token_ids(value: object) -> bool:
    """`[1, 2, 3]` or `[[1, 2], [3]]`: a completions prompt given as token ids. Judged on the first
    `_TOKEN_ID_PROBE` items of the first rows (a body so judged is kept local whatever the rest holds)."""
    if not isinstance(value, list) or not value:
        return False
    head = value[:_TOKEN_ID_PROBE]
    rows = head if all(isinstance(row, list) for row in head) else [head]
    ids = [t for row in rows for t in row[:_TOKEN_ID_PROBE]]
    return bool(ids) and all(isinstance(t, int) and not isinstance(t, bool) for t in ids)


def _scalar_text(value: object) -> str | None:
    """The text of a JSON scalar that is not a plain str or int: an integral float's digits, a str subclass
    itself; None for the rest (fractions and huge numbers hold no card or phone number)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not -_BIG_NUMBER < value < _BIG_NUMBER:
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return str(int(value))


def collect(body: object, budget_chars: int, max_depth: int = MAX_DEPTH, deadline: Deadline | None = None) -> Collected:
    """Every string, key and number in `body`, until they exceed `budget_chars`; raises `NestingTooDeep`, and
    `ScanTimeout` past `deadline`."""
    out = Collected()
    if isinstance(body, dict) and any(is_token_ids(body.get(key)) for key in _TOKEN_ID_KEYS):
        out.token_ids = True
        body = {k: v for k, v in body.items() if not (k in _TOKEN_ID_KEYS and is_token_ids(v))}
    if not isinstance(body, dict | list):
        body = [body]
    parts, said_texts = out.parts, out.said
    chars = CONTAINER_CHARS  # the body's own container
    stack: list[tuple[object, int, bool]] = [(body, 1, True)]  # (container, depth, said by a person or tool)
    while stack:
        node, depth, said = stack.pop()
        if depth > max_depth:
            raise NestingTooDeep(
                f"the request body nests more than {max_depth} levels of lists and objects; flatten it"
            )
        pairs = node.items() if isinstance(node, dict) else zip(repeat(None), node)  # type: ignore[call-overload]
        children: list[tuple[object, int, bool]] = []
        for seen, (key, value) in enumerate(pairs, 1):
            if seen % _CHECK_EVERY == 0 and deadline is not None:
                deadline.check()
            if key is not None and key not in KNOWN_FIELDS:
                parts.append(key)
                chars += len(key) + 1
            kind = type(value)
            if kind is str:
                parts.append(value)
                chars += len(value) + 1
                if said and key not in _STRUCTURAL_KEYS:
                    said_texts.append(value)
            elif kind is int and -_BIG_NUMBER < value < _BIG_NUMBER:
                text = str(value)
                parts.append(text)
                chars += len(text) + 1
            elif kind is dict or kind is list or isinstance(value, dict | list):
                children.append((value, depth + 1, said and key not in _STRUCTURAL_KEYS))
                chars += CONTAINER_CHARS
            else:
                other = _scalar_text(value)
                if other is None:
                    chars += 1
                else:
                    parts.append(other)
                    chars += len(other) + 1
                    if said and isinstance(value, str) and key not in _STRUCTURAL_KEYS:
                        said_texts.append(other)
            if chars > budget_chars:
                out.chars, out.over_budget = chars, True
                return out
        stack.extend(reversed(children))
        if deadline is not None:
            deadline.check()
    out.chars = chars
    return out
