"""shopguard benchmarks (`make bench`): engine cost per request, body throughput, profile build.

Prints figures; asserts nothing. Targets (issue: detection): <= 150 us median per typical 2 KB
request with a full profile, >= 50 MB/s on a 1 MiB JSON body, profile build <= 1 s. The
app-shaped request (an app User-Agent, a composite cookie, JSON in base64 in a parameter) is
measured as the typical one is.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shopguard import paths  # noqa: E402
from shopguard.engine.detect import Detector  # noqa: E402
from shopguard.engine.extract import Limits, clear_caches, extract  # noqa: E402
from shopguard.engine.findings import fingerprint  # noqa: E402
from shopguard.engine.known_values import KnownMatcher, load_profile  # noqa: E402
from shopguard.engine.pipeline import early, route  # noqa: E402
from shopguard.engine.redact import redact  # noqa: E402
from shopguard.engine.request import PlainRequest  # noqa: E402
from shopguard.engine.settings import load_config  # noqa: E402
from shopguard.engine.trackers import Identifiers, Linker  # noqa: E402

PROFILE = ROOT / "tests" / "fixtures" / "corpus" / "profile.yaml"


def typical_request(n: int = 0) -> PlainRequest:
    """An mtop order-create call of about 2 KB: query, cookies, headers, form body with JSON.

    As in a browsing session, the person, cookies and headers stay the same from one request to
    the next, while the timestamp, signature, anti-bot token and items are new in each (`n`).
    """
    data = {
        "addressId": "8837726511",
        "receiver": {"fullName": "李四", "mobile": "13912345678", "postCode": "200120"},
        "deliveryAddress": "上海市浦东新区世纪大道100号",
        "items": [
            {"itemId": 651234567890 + 7 * n + i, "skuId": 4812345678901 + 7 * n + i, "quantity": 1}
            for i in range(6)
        ],
        "buyerMessage": "请尽快发货",
        "ua": "140#" + base64.b64encode(hashlib.shake_256(str(n).encode()).digest(225)).decode(),
    }
    encoded = quote(json.dumps(data, ensure_ascii=False))
    url = (
        "https://h5api.m.taobao.com/h5/mtop.trade.order.create.h5/4.0/?jsv=2.7.2&appKey=12574478"
        f"&t={1700000000000 + n}&sign={hashlib.md5(str(n).encode()).hexdigest()}"
        "&api=mtop.trade.order.create.h5"
        "&v=4.0&type=originaljson&dataType=json&timeout=20000"
    )
    headers = [
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari"),
        ("accept", "application/json"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", "https://buy.taobao.com"),
        ("referer", "https://buy.taobao.com/auction/order/confirm_order.htm?spm=a1z0d.1.0.0"),
        (
            "cookie",
            "cna=Zm9vYmFyYmF6cXV4; isg=BKqqZm9vYmFyYmF6cXV4c3VzcGVjdA; t=0a1b2c3d4e5f; "
            "_m_h5_tk=0123456789abcdef0123456789abcdef_1700000000000; "
            "_m_h5_tk_enc=fedcba9876543210fedcba9876543210; cookie2=1f2e3d4c5b6a",
        ),
        ("bx-umidtoken", "T2gAk" + "Z" * 60),
    ]
    return PlainRequest("POST", url, headers, f"data={encoded}".encode())


def app_request(n: int = 0) -> PlainRequest:
    """A JD-app-shaped call: the `jdapp;…` User-Agent with the device ID as a field, a cookie of
    `|`-joined parts, JSON in base64 in a query parameter, a form body with JSON in `body=`.
    The device, cookies and User-Agent stay; the time, signature and request body change."""
    device = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    agent = (
        f"jdapp;android;12.1.0;;{device};network/wifi;model/SM-G9910;appBuild/98787;"
        "ef/1;ep/%7B%22ciphertype%22%3A5%2C%22cipher%22%3A%7B%22ud%22%3A%22EQ%3D%3D%22%7D%7D;"
        "Mozilla/5.0 (Linux; Android 12; SM-G9910 Build/SP1A.210812.016; wv) AppleWebKit/537.36"
    )
    context = base64.b64encode(
        json.dumps(
            {"net": "wifi", "lat": "39.98", "lng": "116.31", "oaid": "8f7e6d5c4b3a2910"}
        ).encode()
    ).decode()
    body = {"pageSize": 20, "page": 1 + n % 5, "keyword": "双肩包", "sort": n % 3}
    url = (
        "https://api.m.jd.com/client.action?functionId=search&clientVersion=12.1.0&build=98787"
        f"&client=android&uuid={device}&st={1700000000000 + n}"
        f"&sign={hashlib.md5(str(n).encode()).hexdigest()}&sv=120&ctx={context}"
    )
    headers = [
        ("user-agent", agent),
        ("content-type", "application/x-www-form-urlencoded"),
        (
            "cookie",
            f"pt_key=AAJk{'x' * 40}; pt_pin=jd_buyer; pwdt_id=jd_buyer; "
            "unpl=JF8EAK|a1b2c3d4e5f6a7b8|1700000000|android",
        ),
        ("charset", "UTF-8"),
    ]
    return PlainRequest("POST", url, headers, f"body={quote(json.dumps(body))}".encode())


def big_json(size: int = 1024 * 1024) -> PlainRequest:
    item = {
        "itemId": 651234567890,
        "title": "学院风双肩包 大容量",
        "price": "59.90",
        "shop": {"shopId": 123456, "name": "旗舰店"},
        "tags": ["new", "hot"],
    }
    items = []
    while len(json.dumps(items, ensure_ascii=False).encode()) < size:
        items.extend([item] * 200)
    full = len(json.dumps({"items": items}).encode())
    body = json.dumps({"items": items[: len(items) * size // full]}).encode()  # about `size`
    return PlainRequest(
        "POST", "https://h5api.m.taobao.com/h5/x/1.0/", [("content-type", "application/json")], body
    )


def main() -> None:
    started = time.perf_counter()
    profile = load_profile(PROFILE)
    matcher = KnownMatcher(profile)
    build = time.perf_counter() - started
    print(
        f"profile: {len(profile.values)} values, {len(profile.forms)} plain forms, "
        f"digest pool {matcher.pool_size} entries, built in {build * 1000:.1f} ms"
    )

    config = load_config(paths.shipped_config_dir(), None)
    trackers = config.site("taobao").identifiers  # type: ignore[union-attr]
    detector = Detector(b"bench-secret", matcher, profile.default_region)
    session(detector, trackers, [typical_request(n) for n in range(4000)], "typical request")
    jd = config.site("jd").identifiers  # type: ignore[union-attr]
    session(detector, jd, [app_request(n) for n in range(4000)], "app-shaped request")
    requests = [typical_request(n) for n in range(2000)]
    body = big_json()
    limits = Limits(body_cap=4 * 1024 * 1024)
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        detector.detect(extract(body, limits), "h5api.m.taobao.com", trackers)
        rounds.append(time.perf_counter() - t)
    megabytes = len(body.body or b"") / 1e6
    extraction = extract(body, limits)
    print(
        f"1 MiB JSON body ({len(body.body or b''):,} bytes): {megabytes / min(rounds):.0f} MB/s "
        "(best of 5), "
        f"{megabytes / statistics.median(rounds):.0f} MB/s median; {len(extraction.fields)} fields "
        f"read, inspection {extraction.inspection} (the field budget is 5,000 per request)"
    )
    policy_bench(requests, detector)


def session(
    detector: Detector, trackers: Identifiers, requests: list[PlainRequest], what: str
) -> None:
    """Median cost per request of a browsing session's requests, warm, then first seen."""
    matcher, region = detector.matcher, detector.region
    host = urlsplit(requests[0].url).hostname or ""
    party = "site:bench"
    request = requests[0]
    size = (
        len(request.url)
        + sum(len(k) + len(v) for k, v in request.headers)
        + len(request.body or b"")
    )
    linker = Linker()
    for request in requests[:200]:  # warm-up: the session's cookies and person become known
        detector.detect(extract(request), host, trackers, linker, party)
    # as `shopguard run` does after start-up: long-lived objects (here also the 4,000 prepared
    # requests) are not rescanned by the cyclic garbage collector; per-request garbage still is
    gc.collect()
    gc.freeze()
    times = []
    for request in requests[200:3200]:
        t = time.perf_counter_ns()
        detector.detect(extract(request), host, trackers, linker, party)
        times.append((time.perf_counter_ns() - t) / 1000)
    gc.unfreeze()
    times.sort()
    print(
        f"{what} ({size} bytes): median {statistics.median(times):.0f} us, "
        f"p99 {times[int(len(times) * 0.99)]:.0f} us per request (extract + detect; cookies, "
        "headers and the person seen before, timestamp, signature, token and items new)"
    )
    cold = []
    for request in requests[3200:]:
        clear_caches()
        fingerprint.cache_clear()
        fresh = Detector(b"bench-secret", matcher, region)
        t = time.perf_counter_ns()
        fresh.detect(extract(request), host, trackers, linker, party)
        cold.append((time.perf_counter_ns() - t) / 1000)
    print(
        f"  the same, every value seen for the first time: median {statistics.median(cold):.0f} us"
    )


def policy_bench(requests: list[PlainRequest], detector: Detector) -> None:
    """Policy matching alone (block lookup, strips, field rules, re-signing) for the typical
    request and a beacon, with every shipped site plus a user file of 5,000 blocked hosts."""
    with tempfile.TemporaryDirectory() as user:
        sites = Path(user) / "sites"
        sites.mkdir()
        hosts = "\n".join(f"    - tracker{n}.example.net" for n in range(5000))
        (sites / "blocklist.yaml").write_text(
            f"site: blocklist\nhosts: ['*.example.net']\ntrackers:\n  block:\n{hosts}\n",
            encoding="utf-8",
        )
        config = load_config(paths.shipped_config_dir(), Path(user))
    beacon = PlainRequest(
        "GET",
        "https://gm.mmstat.com/v.gif?cna=Zm9vYmFyYmF6&spm=a21bo.1.0&logtype=1",
        [("referer", "https://www.taobao.com/"), ("sec-fetch-dest", "image")],
    )
    cases = []
    for request in [*requests, beacon]:
        extraction = extract(request)  # (the body is read once, by extraction)
        cases.append((request, detector.detect(extraction, "h5api.m.taobao.com"), extraction))
    times = []
    blocks = sum(len(s.policy.block) for s in config.enabled_sites)
    for _ in range(2):
        for request, findings, extraction in cases:
            t = time.perf_counter_ns()
            split = urlsplit(request.url)
            host = split.hostname or ""
            routed = route(config, host, request.header("origin"), request.header("referer"))
            assert routed is not None and extraction.body is not None
            routed.mode = "enforce"
            path = split.path + (f"?{split.query}" if split.query else "")
            if early(routed, path, request.headers) is None:
                redact(
                    routed.site.policy,
                    request,
                    extraction.body,
                    host,
                    findings,
                    site=routed.site.name,
                    secret=b"bench-secret",
                    enforce=True,
                )
            times.append((time.perf_counter_ns() - t) / 1000)
    times.sort()
    print(
        f"policy matching ({len(config.enabled_sites)} sites, {blocks} block rules): median "
        f"{statistics.median(times):.0f} us, p99 {times[int(len(times) * 0.99)]:.0f} us per "
        "request (site routing, block lookup, strips, field rules, re-signing; not detection)"
    )


def addon_chain() -> None:
    """CPU time of shopguard's own addons per request of the proxy benchmark's marketplace mix
    (bench/proxy_full.py: shop pages, assets, mtop calls, a checkout POST, beacons, with their
    responses), through the four hooks of a request in a real mitmproxy addon context, the log
    written to a file: what shopguard adds to mitmproxy's own work, without the proxy around it."""
    import os

    from mitmproxy import http
    from mitmproxy.test import taddons, tflow

    sys.path.insert(0, str(ROOT / "bench"))
    from proxy_full import _bodies, _kind, request_mix, site_hosts

    from shopguard.chain import make_addons
    from shopguard.runtime import Runtime

    mix, bodies = request_mix(site_hosts()), _bodies()

    def flows() -> list[tuple[http.HTTPFlow, http.Response]]:
        made = []
        for method, host, path, headers, body in mix:
            flow = tflow.tflow(live=True)
            flow.request = http.Request.make(
                method, f"https://{host}{path}", body.encode(), headers
            )
            kind, content, gzipped = bodies[_kind(path)]
            response = http.Response.make(200, b"", {"content-type": kind})
            if gzipped:
                response.headers["content-encoding"] = "gzip"
            response.raw_content = content
            made.append((flow, response))
        return made

    hooks = ("requestheaders", "request", "responseheaders", "response")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "XDG_STATE_HOME")}
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(XDG_CONFIG_HOME=f"{home}/config", XDG_STATE_HOME=f"{home}/state")
        (Path(home) / "user" / "sites").mkdir(parents=True)
        try:
            figures = []
            for mode in ("observe", "enforce"):
                rt = Runtime()
                addons = make_addons(rt)
                with taddons.context(*addons) as tctx:
                    tctx.configure(
                        addons[0],
                        shopguard_config=f"{home}/user",
                        shopguard_log=f"{home}/{mode}.jsonl",
                        shopguard_mode=mode,
                    )
                    calls = [[getattr(a, h) for a in addons if hasattr(a, h)] for h in hooks]
                    rounds = []
                    for n in range(4):  # (the first round warms up)
                        made = flows()
                        t = time.process_time()
                        for flow, response in made:
                            for call in calls[0] + calls[1]:
                                call(flow)
                            if flow.response is None:  # (not answered by shopguard itself)
                                flow.response = response
                            for call in calls[2] + calls[3]:
                                call(flow)
                        if n:
                            rounds.append((time.process_time() - t) / len(made) * 1e6)
                    figures.append(f"{mode} {statistics.median(rounds):.0f} us")
                    if rt.audit is not None:
                        rt.audit.close()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    print(
        f"shopguard's addons per request of the proxy mix ({len(mix)} requests, shipped sites, "
        f"log written; CPU time, median of 3 rounds): {', '.join(figures)}"
    )


if __name__ == "__main__":
    main()
    addon_chain()
