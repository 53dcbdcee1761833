"""What a simulated reply says, token by token, and how it ends — the request's wishes applied as vLLM would.

`ReplySpec.parse(kind, body)` reads what shapes the reply: `stop` strings, `response_format` (`json_object`, or
`json_schema`: a JSON value valid against the schema, as guided decoding gives), `tools` with `tool_choice`
(`required` or a named function forces a call whose arguments are valid against the function's parameters;
`auto` calls one unless the conversation's last message is a tool result, so agent loops end), and `logprobs`.
`ReplySpec.script(...)` makes one choice's `Script`: endless filler words (`text.Filler`, first token
`[simulated]`), filler cut at the first stop string, or a fixed JSON text split into 4-character tokens. Stop
strings apply to free text only. Knows nothing about the engine's timing, HTTP or the wire JSON around tokens.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from server.sim.schema import MARKER, SchemaError, instance
from server.sim.text import CHARS_PER_TOKEN, Filler

Mode = Literal["text", "json", "tool"]
MAX_STOP_STRINGS = 16
MAX_LOGPROBS = 20  # vLLM's default --max-logprobs


class ReplyError(ValueError):
    """The request's reply settings are invalid; `param` names the field (answered as a 400)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The function a tool-mode reply calls."""

    name: str
    parameters: Any  # its JSON schema
    finish_reason: str  # "tool_calls"; vLLM answers a named tool_choice with "stop"
    content: str | None  # the message's content beside the call: None for auto, "" when forced (as vLLM)


@dataclass(frozen=True, slots=True)
class ReplySpec:
    mode: Mode = "text"
    stop: tuple[str, ...] = ()
    schema: Any = None  # json mode: the schema; None: any JSON object
    tool: ToolCall | None = None  # tool mode: the function called
    logprobs: int | None = None  # alternatives listed per token (0: only the chosen token); None: no logprobs

    @classmethod
    def parse(cls, kind: str, body: dict[str, Any]) -> ReplySpec:
        stop = _stop_strings(body.get("stop"))
        logprobs = _logprobs(kind, body)
        if kind != "chat":
            return cls("text", stop, logprobs=logprobs)
        tool = _tool_call(body)
        if tool is not None:
            return cls("tool", stop, tool=tool, logprobs=logprobs)
        fmt = body.get("response_format")
        if fmt is None:
            return cls("text", stop, logprobs=logprobs)
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise ReplyError("response_format.type must be 'text', 'json_object' or 'json_schema'", "response_format")
        if fmt["type"] == "text":
            return cls("text", stop, logprobs=logprobs)
        schema = None
        if fmt["type"] == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict | bool):
                raise ReplyError("response_format.json_schema.schema must be a JSON schema", "response_format")
            schema = spec["schema"]
        return cls("json", stop, schema=schema, logprobs=logprobs)

    def script(self, filler: Filler, offset: int, target_tokens: int, seed: int) -> Script:
        """Choice text for a reply the engine would make `target_tokens` long; fixed ones set their own length."""
        if self.mode == "text":
            if self.stop:
                return _cut_at_stop(filler, offset, target_tokens, self.stop)
            return Script(filler, offset)
        rng = random.Random(seed)
        try:
            if self.mode == "tool" and self.tool is not None:
                value = instance(self.tool.parameters, rng)
                if not isinstance(value, dict):  # arguments are an object, whatever the schema says
                    value = {"value": value}
            elif self.schema is not None:
                value = instance(self.schema, rng)
            else:
                value = {"simulated": True, "text": filler.text(min(12, max(1, target_tokens)), offset)}
        except SchemaError as exc:
            param = "tools" if self.mode == "tool" else "response_format"
            raise ReplyError(f"cannot generate JSON for the schema: {exc}", param) from exc
        text = orjson.dumps(value).decode()
        pieces = [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]
        return Script(filler, offset, pieces)

    def finish_reason(self, script: Script, engine_reason: str) -> str:
        """The choice's finish_reason: the engine's, unless a stop string or a completed tool call ended it."""
        if script.stop_string is not None:
            return "stop"
        if self.tool is not None and engine_reason == "stop":
            return self.tool.finish_reason
        return engine_reason


@dataclass(slots=True)
class Script:
    """The tokens of one choice: endless filler (`pieces` None) or a fixed list of token texts."""

    filler: Filler
    offset: int  # where this reply's filler words start cycling
    pieces: list[str] | None = None
    stop_string: str | None = None  # the stop string that cut it, if any
    _escaped: list[bytes] = field(default_factory=list)
    _starts: list[int] = field(default_factory=lambda: [0])  # character offset of each token, grown lazily

    @property
    def length(self) -> int | None:
        """Tokens a fixed reply has; None for filler (the engine decides)."""
        return None if self.pieces is None else len(self.pieces)

    def piece(self, i: int) -> str:
        if self.pieces is None:
            return self.filler.words[self.filler.index(i, self.offset)]
        return self.pieces[i]

    def piece_bytes(self, i: int) -> bytes:
        """Token i's text, JSON-escaped, to splice inside a JSON string."""
        if self.pieces is None:
            return self.filler.token_bytes(i, self.offset)
        if not self._escaped:
            self._escaped = [orjson.dumps(p)[1:-1] for p in self.pieces]
        return self._escaped[i]

    def text(self, n_tokens: int) -> str:
        if self.pieces is None:
            return self.filler.text(n_tokens, self.offset)
        return "".join(self.pieces[:n_tokens])

    def start_of(self, i: int) -> int:
        """Character offset of token i in the reply text."""
        starts = self._starts
        while len(starts) <= i:
            starts.append(starts[-1] + len(self.piece(len(starts) - 1)))
        return starts[i]


def _cut_at_stop(filler: Filler, offset: int, n_tokens: int, stops: tuple[str, ...]) -> Script:
    """Filler of `n_tokens` tokens, ended at the first stop string (excluded, as vLLM does) if one occurs."""
    words: list[str] = []
    text = ""
    longest = max(len(s) for s in stops)
    for i in range(n_tokens):
        word = filler.words[filler.index(i, offset)]
        start = max(0, len(text) - longest + 1)
        words.append(word)
        text += word
        hits = [(pos, s) for s in stops if (pos := text.find(s, start)) >= 0]
        if hits:
            pos, stop = min(hits)
            kept, pieces, at = text[:pos], [], 0
            for w in words:
                pieces.append(kept[at : at + len(w)])
                at += len(w)
            return Script(filler, offset, pieces, stop)
    return Script(filler, offset, words)


def _stop_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ReplyError("'stop' must be a string or a list of strings", "stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise ReplyError(f"'stop' holds {len(stops)} strings; at most {MAX_STOP_STRINGS} are allowed", "stop")
    return tuple(s for s in stops if s)


def _logprobs(kind: str, body: dict[str, Any]) -> int | None:
    """Alternatives per token: chat `logprobs: true` + `top_logprobs: k`; completions `logprobs: k`."""
    if kind == "chat":
        wanted, top = body.get("logprobs"), body.get("top_logprobs")
        if top is not None and wanted is not True:
            raise ReplyError("when using `top_logprobs`, `logprobs` must be set to true", "top_logprobs")
        if wanted is not True:
            return None
        value, param = (0 if top is None else top), "top_logprobs"
    else:
        value, param = body.get("logprobs"), "logprobs"
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LOGPROBS:
        raise ReplyError(f"'{param}' must be an integer in [0, {MAX_LOGPROBS}], got {value!r}", param)
    return value


def _tool_call(body: dict[str, Any]) -> ToolCall | None:
    """The function this reply calls, or None for a text reply."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools:
        if choice not in (None, "none"):
            raise ReplyError("When using `tool_choice`, `tools` must be set.", "tool_choice")
        return None
    functions: dict[str, Any] = {}
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ReplyError("each tool must be {'type': 'function', 'function': {'name': ..., ...}}", "tools")
        functions[fn["name"]] = fn.get("parameters") or {"type": "object", "properties": {}}
    if not functions:
        raise ReplyError("'tools' must be a non-empty list of functions", "tools")
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in functions:
            raise ReplyError(f"tool_choice names '{name}', which is not among the tools", "tool_choice")
        return ToolCall(name, functions[name], "stop", "")
    if choice not in (None, "auto", "required"):
        raise ReplyError("tool_choice must be 'none', 'auto', 'required' or a named function", "tool_choice")
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    if choice != "required" and isinstance(last, dict) and last.get("role") == "tool":
        return None  # the tool answered: reply in words, as a model ending an agent loop would
    name = _likeliest(functions, _text_of(last))
    return ToolCall(name, functions[name], "tool_calls", "" if choice == "required" else None)


def _likeliest(functions: dict[str, Any], text: str) -> str:
    """The function whose name shares the most words with `text` (get_weather: "get", "weather"), else the first."""
    said = set(re.findall(r"[a-z0-9]+", text.lower()))
    best = max(functions, key=lambda name: len(said.intersection(re.findall(r"[a-z0-9]+", name.lower()))))
    return best if said.intersection(re.findall(r"[a-z0-9]+", best.lower())) else next(iter(functions))


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


__all__ = ["MARKER", "ReplyError", "ReplySpec", "Script", "ToolCall"]
