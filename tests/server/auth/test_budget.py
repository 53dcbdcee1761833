"""Daily budgets: a request holds its worst case in the shared store before any work and settles with the engine's
reported usage, so neither concurrent requests, nor two routers on one store, nor a request without max_tokens,
nor `n` or a batch of prompts, can take a key past its budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.auth.budget import BudgetBook, Hold, Limit, Refusal, size_hold
from server.auth.keys import KeyStore
from server.config import parse_config
from server.intake import Demand, receive

from ..conftest import RunningTriage, free_port, run_triage, sim_model
from ..test_errors import assert_openai_error

HELLO = [{"role": "user", "content": "hello there"}]


def demand(prompt: int = 10, sequences: int = 1, cap: int | None = None, default: int | None = None) -> Demand:
    return Demand(prompt, sequences, cap, default, room=1000, estimate=prompt + sequences * (cap or 256))


def test_size_hold_follows_the_cap_the_budget_or_the_context() -> None:
    assert size_hold(demand(cap=50), 100) == (60, None)  # a cap that fits: held as asked, nothing sent
    assert size_hold(demand(cap=95), 100) is None  # a cap that does not fit: refused
    assert size_hold(demand(), 100) == (100, 90)  # no cap: what the budget allows, sent upstream
    assert size_hold(demand(), 10**6) == (1010, None)  # no cap, budget ample: the context, nothing sent
    assert size_hold(demand(default=16), 10**6) == (26, 16)  # completions: OpenAI's default 16, sent explicitly
    assert size_hold(demand(sequences=4), 100) == (98, 22)  # n=4: each sequence gets a quarter of the rest
    assert size_hold(demand(prompt=100), 100) is None  # not even one output token left


def test_intake_counts_n_best_of_and_every_prompt_of_a_batch() -> None:
    chat = receive(orjson.dumps({"model": "auto", "messages": HELLO, "max_tokens": 30, "n": 4}), "chat")
    assert chat.sequences == 4 and chat.tokens == chat.prompt_tokens + 4 * 30
    batch = {"model": "auto", "prompt": ["a" * 400, "b" * 40, "c" * 400], "max_tokens": 10, "best_of": 3, "n": 2}
    completions = receive(orjson.dumps(batch), "completions")
    assert completions.prompt_tokens == 101  # the longest, for the context check
    assert completions.billed_prompt_tokens == 101 + 11 + 101  # all of them, for the budget
    assert completions.sequences == 9 and completions.tokens == 213 + 9 * 10
    need = completions.demand(context_length=8192)
    assert need.output_cap == 10 and need.room == 8192 - 101
    bare = receive(orjson.dumps({"model": "auto", "prompt": "hi"}), "completions").demand(8192)
    assert bare.output_cap is None and bare.default_cap == 16


def _limit(daily: float = 1000) -> Limit:
    return Limit("key_a", daily, False, 0.0)


def test_two_books_on_one_file_hold_one_budget(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    books = [BudgetBook(path, hold_s=600), BudgetBook(path, hold_s=600)]  # two routers
    results: list[Hold | Refusal] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        import asyncio

        result = asyncio.run(books[i % 2].reserve(_limit(), f"r{i}", demand(cap=90)))
        with lock:
            results.append(result)

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(ask, range(40)))
        holds = [r for r in results if isinstance(r, Hold)]
        assert len(holds) == 10  # 10 x 100 = the budget, whichever router asked
        assert books[0].held_now("key_a").tokens == 1000
    finally:
        for book in books:
            book.close()


async def test_settle_books_what_was_used_and_frees_the_hold(tmp_path: Path) -> None:
    book = BudgetBook(str(tmp_path / "b.db"), hold_s=600)
    try:
        first = await book.reserve(_limit(), "r1", demand())  # no cap: the whole budget
        assert isinstance(first, Hold) and first.tokens == 1000 and first.max_tokens == 990
        assert isinstance(await book.reserve(_limit(), "r2", demand(cap=5)), Refusal)
        used = await book.settle(first, "m", False, 120, 0.0)  # the engine reported 120
        assert used.tokens == 120 and book.held_now("key_a").tokens == 0
        second = await book.reserve(_limit(), "r2", demand())
        assert isinstance(second, Hold) and second.tokens == 880
    finally:
        book.close()


async def test_a_remote_budget_is_held_in_dollars(tmp_path: Path) -> None:
    book = BudgetBook(str(tmp_path / "b.db"), hold_s=600)
    remote = Limit("key_a", 0.001, True, 1e-6)  # $0.001 a day at $1 per 1M tokens: 1,000 tokens' worth
    try:
        hold = await book.reserve(remote, "r1", demand(cap=490))
        assert isinstance(hold, Hold) and hold.tokens == 500 and hold.usd == pytest.approx(0.0005)
        assert book.held_now("key_a").tokens == 0 and book.held_now("key_a").usd == pytest.approx(0.0005)
        assert isinstance(await book.reserve(remote, "r2", demand(cap=490)), Hold)
        assert isinstance(await book.reserve(remote, "r3", demand(cap=1)), Refusal)  # the dollars are held
        used = await book.settle(hold, "cloud", True, 300, 0.0003)
        assert used.usd == pytest.approx(0.0003) and used.tokens == 0  # remote use is counted in dollars only
    finally:
        book.close()


async def test_a_dead_routers_holds_expire(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    dead = BudgetBook(path, hold_s=0.0)  # its holds expire at once, as a crashed process's eventually do
    assert isinstance(await dead.reserve(_limit(), "r1", demand()), Hold)
    dead.close()
    alive = BudgetBook(path, hold_s=600)
    try:
        assert isinstance(await alive.reserve(_limit(), "r2", demand()), Hold)
    finally:
        alive.close()


# -- end to end ----------------------------------------------------------------------------------------------


def _config(db: str, **server: Any) -> Any:
    models = [sim_model("chat", ["chat", "fast"], free_port(), time_scale=0.02)]
    return parse_config({"models": models, "auth": {"mode": "keys", "db": db}, "server": server})


@pytest.fixture
def budgeted(tmp_path: Path) -> Iterator[tuple[RunningTriage, KeyStore, str]]:
    db = str(tmp_path / "triage.db")
    store = KeyStore.open(db)
    with run_triage(_config(db)) as triage:
        yield triage, store, db
    store.close()


def _post(triage: RunningTriage, key: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(triage.base_url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def _settled(triage: RunningTriage, key_id: str) -> int:
    """Tokens booked today once no request of `key_id` holds anything (an answer reaches the client a moment
    before its request settles)."""
    budget = triage.gateway.guard.tenancy.budget
    assert budget is not None
    deadline = time.monotonic() + 5
    while budget.held_now(key_id).tokens and time.monotonic() < deadline:
        time.sleep(0.01)
    return budget.used_today(key_id).tokens


def _engine_tokens(response: httpx.Response) -> int:
    """Tokens the engine says it used, from a whole answer or a stream's usage event."""
    if response.headers["content-type"].startswith("application/json"):
        return int(response.json()["usage"]["total_tokens"])
    for line in response.text.splitlines():
        if line.startswith("data: {") and '"usage":{' in line:
            return int(orjson.loads(line[6:])["usage"]["total_tokens"])
    raise AssertionError("no usage in the stream")


def test_twenty_concurrent_requests_without_max_tokens_stay_within_the_budget(
    budgeted: tuple[RunningTriage, KeyStore, str],
) -> None:
    triage, store, _ = budgeted
    key, record = store.create("k", daily_tokens=1000)

    def one(i: int) -> httpx.Response:
        body: dict[str, Any] = {"model": "auto", "messages": HELLO, "ignore_eos": True, "stream": i % 2 == 1}
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}  # so that the client sees the engine's count
        return _post(triage, key, body)

    triage.gateway.guard.tenancy.reload()
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(one, range(20)))
    served = [r for r in responses if r.status_code == 200]
    assert served and all(r.status_code in (200, 429) for r in responses)
    engine_tokens = sum(_engine_tokens(r) for r in served)
    assert engine_tokens <= 1000 + 8  # the engine counts the chat template a few tokens above our estimate
    assert _settled(triage, record.id) == engine_tokens  # settled as the engine reported
    refused = next(r for r in responses if r.status_code == 429)
    assert assert_openai_error(refused, 429, "local tokens")["code"] == "insufficient_quota"


def test_a_stream_without_max_tokens_stops_at_the_budget_and_usage_is_stripped(
    budgeted: tuple[RunningTriage, KeyStore, str],
) -> None:
    triage, store, _ = budgeted
    key, record = store.create("k", daily_tokens=1000)
    triage.gateway.guard.tenancy.reload()
    body = {"model": "auto", "messages": HELLO, "ignore_eos": True, "stream": True}
    response = _post(triage, key, body)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and not any('"usage":{' in e for e in events)  # the client did not ask for it
    generated = sum(1 for e in events[:-1] if orjson.loads(e)["choices"][0].get("delta", {}).get("content"))
    assert generated < 1000  # the engine was told to stop at what the budget allowed, not at its context
    assert 990 <= _settled(triage, record.id) <= 1000 + 8


def test_n_and_batches_are_counted_in_full(budgeted: tuple[RunningTriage, KeyStore, str]) -> None:
    triage, store, _ = budgeted
    key = store.create("k", daily_tokens=300)[0]
    triage.gateway.guard.tenancy.reload()
    many = _post(triage, key, {"model": "auto", "messages": HELLO, "max_tokens": 80, "n": 4})
    assert assert_openai_error(many, 429, "needs at least")["code"] == "insufficient_quota"  # 4 x 80 > 300
    batch = {"model": "auto", "prompt": ["word " * 100] * 5, "max_tokens": 10}  # 5 x 126 prompt tokens
    assert _post(triage, key, batch, "/v1/completions").status_code == 429
    assert _post(triage, key, {**batch, "prompt": "word " * 100}, "/v1/completions").status_code == 200


def test_two_routers_on_one_store_enforce_one_budget(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    store = KeyStore.open(db)
    key, record = store.create("k", daily_tokens=300)
    body = {"model": "auto", "messages": HELLO, "max_tokens": 40, "ignore_eos": True}
    with ExitStack() as stack:
        routers = [stack.enter_context(run_triage(_config(db))) for _ in range(2)]

        def one(i: int) -> httpx.Response:
            return _post(routers[i % 2], key, body)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(one, range(24)))
        served = [r for r in responses if r.status_code == 200]
        engine_tokens = sum(_engine_tokens(r) for r in served)
        booked = _settled(routers[0], record.id)
    store.close()
    assert {r.status_code for r in responses} == {200, 429}
    assert engine_tokens == booked and booked <= 300 + 8  # the engine counts a few template tokens more than we do
