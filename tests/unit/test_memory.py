"""What the engine remembers between requests is bounded in bytes: requests that each carry a
new value of a megabyte leave nothing of it behind, and however many values pass, every memory
stays within the bytes `memory` documents (the README's *Limits*)."""

from __future__ import annotations

import gc
import json
import random
import string
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from shopguard.engine import pipeline
from shopguard.engine.detect import Detector
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import load_config

SITE = """\
hosts: ["*.shop.example"]
first_party: ["*.shop.example"]
tracking_ids: {cookies: [cna]}
fields:
  address: strip
"""
URL = "https://www.shop.example/order"
JSON_TYPE = [("content-type", "application/json")]
MIB = 1024 * 1024


@pytest.fixture
def ctx(tmp_path: Path) -> pipeline.Context:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(SITE, encoding="utf-8")
    (tmp_path / "profile.yaml").write_text('phone: ["+86 138 0013 8000"]\n', encoding="utf-8")
    config = load_config(tmp_path, None)
    detector = Detector(b"k" * 32, KnownMatcher(load_profile(tmp_path / "profile.yaml")))
    return pipeline.Context(config, detector)


def unique(n: int, size: int, seed: str) -> str:
    """A value of `size` characters that no other `n` gives (random letters, no delimiters)."""
    rnd = random.Random(f"{seed}{n}")
    head = f"{n:08d}" + "".join(rnd.choices(string.ascii_letters, k=56))
    return (head * (size // len(head) + 1))[:size]


PLACES: dict[str, Callable[[str], PlainRequest]] = {
    "receiverAddress in a JSON body": lambda v: PlainRequest(
        "POST",
        URL,
        JSON_TYPE,
        json.dumps({"receiverAddress": "上海市浦东新区世纪大道100号" + v}).encode(),
    ),
    "a tracking cookie": lambda v: PlainRequest("GET", URL, [("cookie", f"cna={v}")]),
    "an app's User-Agent": lambda v: PlainRequest("GET", URL, [("user-agent", f"App/1.0 {v}")]),
    "a query parameter": lambda v: PlainRequest("GET", f"{URL}?mobile={v}"),
    "a header": lambda v: PlainRequest("GET", URL, [("x-device-id", v)]),
}


def traced_growth(run: Callable[[], None]) -> int:
    """The bytes allocated by `run` that are still held afterwards."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("place", list(PLACES))
def test_new_megabyte_values_are_not_kept(ctx: pipeline.Context, place: str) -> None:
    make = PLACES[place]
    for n in range(3):  # (what is made once per process: made before measuring)
        pipeline.run(ctx, make(unique(n, 1024, "warm")))

    def twenty_megabytes() -> None:
        for n in range(20):
            pipeline.run(ctx, make(unique(n, MIB, place)))

    assert traced_growth(twenty_megabytes) < 4 * MIB


def test_memories_stay_within_their_bytes_however_many_values_pass(
    ctx: pipeline.Context,
) -> None:
    """Many requests of many new values small enough to be remembered, and of new values of a
    megabyte: each memory stays within its budget, all of them within `memory.TOTAL_BYTES`."""
    from shopguard.engine import extract, location, memory
    from shopguard.engine.detect import MEMORY_BYTES

    documented = memory.memo_bound() + MEMORY_BYTES + extract.MEMO_BYTES + location.NAMES_BYTES
    assert documented <= memory.TOTAL_BYTES
    for n in range(200):
        values = [unique(n * 40 + i, 200, "fill") for i in range(40)]
        cookies = "; ".join(f"c{v[:12]}={v}" for v in values[:10])
        headers = [("cookie", cookies), ("user-agent", f"App/1.0 {values[10]}")]
        headers += [(f"x-{v[:10].lower()}", v) for v in values[11:20]]
        body = {f"k{v[:20]}": {"receiverAddress": v, "n": [v]} for v in values[20:]}
        query = "&".join(f"q{v[:16]}={v}" for v in values[11:20])
        body_bytes = json.dumps(body).encode()
        pipeline.run(ctx, PlainRequest("POST", f"{URL}?{query}", headers + JSON_TYPE, body_bytes))
    for n in range(10):
        for make in PLACES.values():
            pipeline.run(ctx, make(unique(n, MIB, "large")))
    memories = [m for m in vars(ctx.detector).values() if isinstance(m, memory.Memory)]
    memories += extract._memos.values()
    assert len(memories) >= 8
    for kept in memories:
        assert kept.used <= kept.budget
    assert 0 < location.escaped_bytes() <= location.NAMES_BYTES
    accounted = memory.memos_held() + sum(m.used for m in memories) + location.escaped_bytes()
    assert 2 * MIB < accounted <= memory.TOTAL_BYTES  # (filled, and within the bound)


def test_a_memory_forgets_its_oldest_entries_or_all_of_them_when_full() -> None:
    from shopguard.engine import memory

    whole, oldest = memory.Memory(64 * 1024), memory.Memory(64 * 1024, oldest_first=True)
    for n in range(1000):
        for kept in (whole, oldest):
            kept.keep(n, "x", 1000)
            assert kept.used <= kept.budget
    assert list(oldest)[-1] == 999 and len(oldest) == 64 * 1024 // (1000 + 128)
    assert 999 in whole and len(whole) <= len(oldest)
    whole.keep("huge", "x", 64 * 1024 // 16)  # more than a sixteenth: not kept
    assert "huge" not in whole


def test_a_remembered_function_keeps_only_small_calls() -> None:
    from shopguard.engine import memory

    calls: list[str] = []

    @memory.remembered(8)
    def shout(text: str) -> str:
        calls.append(text)
        return text.upper()

    small, large = "a" * 10, "b" * 2000
    assert [shout(small), shout(small), shout(large), shout(large)] == [
        small.upper(),
        small.upper(),
        large.upper(),
        large.upper(),
    ]
    assert calls == [small, large, large]  # the large one is worked out each time
