"""Response bytes of one simulated reply, shaped like vLLM's: SSE chunks per token, the usage chunk, or the whole
JSON answer, for chat and completions, any number of choices, text or tool-call deltas, with logprobs if asked.

Chunks are built from per-choice byte templates, so a streamed plain-text token costs two concatenations; tool
calls and logprobs add their JSON per token. Logprob values are made up (deterministic, <= 0, the chosen token
first), as everything else in a simulated reply. Knows nothing about the engine's timing or about sockets.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from server.sim.protocol import Kind
from server.sim.reply import ReplySpec, Script
from server.sim.text import SYSTEM_FINGERPRINT

_OPEN_CHUNK = b"null}]}\n\n"  # a chunk's end while its choice goes on


class ReplyFramer:
    """Bytes of one reply with `len(scripts)` choices (the request's `n`)."""

    __slots__ = ("_close", "_common", "_heads", "_kind", "_model", "_plain_tail", "_rid", "created", "scripts", "spec")

    def __init__(self, kind: Kind, rid: str, model: str, spec: ReplySpec, scripts: list[Script]) -> None:
        self._kind = kind
        self._model = model
        self._rid = rid
        self.spec = spec
        self.scripts = scripts
        self.created = int(time.time())
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self._common = (
            b'data: {"id":"'
            + rid.encode()
            + b'","object":"'
            + obj.encode()
            + b'","created":'
            + str(self.created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"system_fingerprint":"'
            + SYSTEM_FINGERPRINT.encode()
            + b'","choices":['
        )
        if kind != "chat":
            opening, self._close = b'"text":"', b'"'
        elif spec.mode == "tool":
            opening, self._close = b'"delta":{"tool_calls":[{"index":0,"function":{"arguments":"', b'"}}]}'
        else:
            opening, self._close = b'"delta":{"content":"', b'"}'
        self._heads = [self._choice(j) + opening for j in range(len(scripts))]
        self._plain_tail = self._close + b',"logprobs":null,"finish_reason":' + _OPEN_CHUNK  # a token, no logprobs

    def _choice(self, j: int) -> bytes:
        return self._common + b'{"index":' + str(j).encode() + b","

    # ---- streamed -------------------------------------------------------------------------------------

    def role_chunk(self) -> bytes:
        """Chat streams open with the assistant role, one event per choice, as vLLM's do; completions have none."""
        if self._kind != "chat":
            return b""
        tail = b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
        return b"".join(self._choice(j) + tail for j in range(len(self.scripts)))

    def token_chunks(self, choice: int, start: int, end: int, finish_reason: str | None) -> bytes:
        """SSE events for tokens [start, end) of one choice; the last carries `finish_reason` when given."""
        head, close, script = self._heads[choice], self._close, self.scripts[choice]
        parts: list[bytes] = []
        if start == 0 and self.spec.tool is not None:
            parts.append(self._tool_header(choice))
        if self.spec.logprobs is None:
            tail, piece = self._plain_tail, script.piece_bytes
            parts += [head + piece(i) + tail for i in range(start, end)]
        else:
            for i in range(start, end):
                logprobs = orjson.dumps(self._logprobs(script, i, i + 1))
                parts.append(head + script.piece_bytes(i) + close + b',"logprobs":' + logprobs + b',"finish_reason":')
                parts[-1] += _OPEN_CHUNK
        if finish_reason is not None:
            if end == start:  # nothing left to say: a chunk with an empty delta carries the reason
                empty = b'"delta":{},' if self._kind == "chat" else b'"text":"",'
                parts.append(self._choice(choice) + empty + b'"logprobs":null,"finish_reason":' + _OPEN_CHUNK)
            parts[-1] = parts[-1][: -len(_OPEN_CHUNK)] + orjson.dumps(finish_reason) + b"}]}\n\n"
        return b"".join(parts)

    def _tool_header(self, choice: int) -> bytes:
        tool = self.spec.tool
        name = tool.name if tool is not None else ""
        call = {"index": 0, "id": self.call_id(choice), "type": "function", "function": {"name": name, "arguments": ""}}
        delta = orjson.dumps({"tool_calls": [call]})
        return self._choice(choice) + b'"delta":' + delta + b',"logprobs":null,"finish_reason":' + _OPEN_CHUNK

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The include_usage chunk: empty choices and the totals, as vLLM sends before [DONE]."""
        head = self._common[: -len(b'"choices":[')]
        return head + b'"choices":[],"usage":' + orjson.dumps(usage(prompt_tokens, completion_tokens)) + b"}\n\n"

    # ---- whole -----------------------------------------------------------------------------------------

    def full_body(self, generated: list[int], finish_reasons: list[str], prompt_tokens: int) -> bytes:
        """The non-streamed answer: one choice per script, `generated[j]` tokens each."""
        choices = [
            self._full_choice(j, script, n, reason)
            for j, (script, n, reason) in enumerate(zip(self.scripts, generated, finish_reasons, strict=True))
        ]
        return orjson.dumps(
            {
                "id": self._rid,
                "object": "chat.completion" if self._kind == "chat" else "text_completion",
                "created": self.created,
                "model": self._model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
                "usage": usage(prompt_tokens, sum(generated)),
            }
        )

    def _full_choice(self, j: int, script: Script, n_tokens: int, finish_reason: str) -> dict[str, Any]:
        text = script.text(n_tokens)
        logprobs = None if self.spec.logprobs is None else self._logprobs(script, 0, n_tokens)
        end = {"logprobs": logprobs, "finish_reason": finish_reason, "stop_reason": script.stop_string}
        if self._kind != "chat":
            return {"index": j, "text": text, **end}
        tool = self.spec.tool
        if tool is None:
            return {"index": j, "message": {"role": "assistant", "content": text, "tool_calls": []}, **end}
        call = {"id": self.call_id(j), "type": "function", "function": {"name": tool.name, "arguments": text}}
        return {"index": j, "message": {"role": "assistant", "content": tool.content, "tool_calls": [call]}, **end}

    def call_id(self, choice: int) -> str:
        return f"chatcmpl-tool-{self._rid.rsplit('-', 1)[-1]}{choice:x}"

    # ---- logprobs --------------------------------------------------------------------------------------

    def _logprobs(self, script: Script, start: int, end: int) -> dict[str, Any]:
        """vLLM's logprobs object for tokens [start, end): chat's `content` list or completions' four lists."""
        top = self.spec.logprobs or 0
        entries = [_alternatives(script, i, top) for i in range(start, end)]
        if self._kind == "chat":
            return {
                "content": [
                    {
                        "token": alts[0][0],
                        "logprob": alts[0][1],
                        "bytes": list(alts[0][0].encode()),
                        "top_logprobs": [_entry(t, lp) for t, lp in alts[:top]],
                    }
                    for alts in entries
                ]
            }
        return {
            "text_offset": [script.start_of(i) for i in range(start, end)],
            "token_logprobs": [alts[0][1] for alts in entries],
            "tokens": [alts[0][0] for alts in entries],
            "top_logprobs": [dict(alts[: max(1, top)]) for alts in entries],
        }


def _alternatives(script: Script, i: int, top: int) -> list[tuple[str, float]]:
    """Token i and `top - 1` other filler words, most likely first (made-up, deterministic log-probabilities)."""
    token = script.piece(i)
    chosen = -round(0.001 + 1.5 * ((i * 2654435761 + script.offset * 40503) & 0xFFFF) / 0xFFFF, 4)
    words = script.filler.words
    others: list[tuple[str, float]] = []
    k = 1
    while len(others) < top - 1 and k <= len(words):
        word = words[(i + 7 * k) % len(words)]
        if word != token and all(word != w for w, _ in others):
            others.append((word, round(chosen - 0.3 - 0.7 * len(others), 4)))
        k += 1
    return [(token, chosen), *others]


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }
