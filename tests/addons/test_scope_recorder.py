"""The scope and recorder addons and the fail-closed guard, on tflow flows inside taddons."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from mitmproxy import exceptions, http, tls
from mitmproxy.proxy.context import Context
from mitmproxy.test import tflow

from shopguard import paths
from shopguard.auditlog import AuditLog
from shopguard.engine.hosts import allow_hosts_pattern
from shopguard.engine.settings import load_config
from shopguard.runtime import Runtime, guarded
from shopguard.state import META
from tests.addons.conftest import HOOKS, Proxy, request_to, respond

PHONE = "13800138000"


# --- scope ----------------------------------------------------------------------------------


def test_allow_hosts_is_the_anchored_pattern_of_the_enabled_sites(
    start: Callable[..., Proxy],
) -> None:
    proxy = start({"sites/jd.yaml": "enabled: false\n"})
    config = load_config(paths.shipped_config_dir(), proxy.config)
    expected = allow_hosts_pattern(g for s in config.enabled_sites for g in s.hosts)
    (pattern,) = proxy.tctx.options.allow_hosts
    assert pattern == expected

    def allowed(host_port: str) -> bool:  # as mitmproxy's next_layer checks it
        return re.search(pattern, host_port, re.IGNORECASE) is not None

    assert allowed("www.taobao.com:443")
    assert allowed("TAOBAO.COM.:443")
    assert allowed("www.temu.com:443")
    assert not allowed("www.jd.com:443")  # disabled
    assert not allowed("taobao.com.evil.example:443")
    assert not allowed("example.org:443")
    assert not allowed("127.0.0.1:8080")


def test_in_scope_first_party_flow_is_tagged(proxy: Proxy) -> None:
    flow = proxy.run(request_to("www.taobao.com"), ("requestheaders",))
    state = flow.metadata[META]
    assert state["site"] == "taobao"
    assert state["third_party"] is False
    assert state["mode"] == "observe"


def test_shared_host_goes_to_the_referring_site_as_third_party(proxy: Proxy) -> None:
    flow = request_to("g.alicdn.com", referer="https://www.aliexpress.com/item/1.html")
    state = proxy.run(flow, ("requestheaders",)).metadata[META]
    assert (state["site"], state["third_party"]) == ("aliexpress", True)


def test_shared_host_goes_to_the_origin_before_the_referer(proxy: Proxy) -> None:
    flow = request_to(
        "g.alicdn.com", origin="https://www.aliexpress.com", referer="https://www.taobao.com/"
    )
    assert proxy.run(flow, ("requestheaders",)).metadata[META]["site"] == "aliexpress"


def test_a_shared_host_without_referer_goes_to_the_site_the_user_is_on(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Origin, no Referer (an app, a privacy setting): a CDN or tracker host several sites
    list belongs to the site of the last marketplace page that client loaded, for 30 minutes;
    after that, or for another client, to the first site listing it."""

    def shared(client: str = "127.0.0.1") -> str:
        flow = request_to("gm.mmstat.com", "/v.gif")
        flow.client_conn.peername = (client, 50000)
        return str(proxy.run(flow, ("requestheaders",)).metadata[META]["site"])

    first = shared()
    page = request_to("www.aliexpress.com", "/item/1.html")
    page.request.headers["sec-fetch-dest"] = "document"
    page.client_conn.peername = ("127.0.0.1", 50001)
    proxy.run(page, ("requestheaders",))
    assert first != "aliexpress" and shared() == "aliexpress"
    assert shared("192.168.1.20") == first  # another device is not on that page
    later = __import__("time").monotonic() + 31 * 60
    monkeypatch.setattr("shopguard.scope.time.monotonic", lambda: later)
    assert shared() == first


@pytest.mark.parametrize("host", ["example.org", "taobao.com.evil.example", "eviltaobao.com"])
def test_out_of_scope_flow_is_left_alone_and_not_logged(proxy: Proxy, host: str) -> None:
    flow = proxy.run(respond(request_to(host, f"/?mobile={PHONE}")))
    assert META not in flow.metadata
    assert flow.response is not None and flow.response.status_code == 200
    assert proxy.lines("flow") == []
    assert host not in proxy.log.read_text()


def test_scope_follows_where_the_request_goes_not_its_host_header(
    start: Callable[..., Proxy],
) -> None:
    """An absolute-form request (`curl -x … -H 'Host: example.org' http://gm.mmstat.com/…`)
    goes to gm.mmstat.com whatever its Host header says: it is that site's, blocked as a
    tracker, and the mismatch has its line."""
    proxy = start(shopguard_mode="enforce")
    flow = request_to("gm.mmstat.com", f"/b.gif?mobile={PHONE}", referer="https://www.taobao.com/")
    flow.request.headers["host"] = "example.org"
    proxy.run(flow)
    assert flow.response is not None and flow.response.status_code in (204, 403)
    (line,) = proxy.lines("flow")
    assert (line["site"], line["host"]) == ("taobao", "gm.mmstat.com")
    (mismatch,) = proxy.lines("host_mismatch")
    assert (mismatch["host"], mismatch["claimed"]) == ("gm.mmstat.com", "example.org")
    # and the other way round: a marketplace name in the Host header of a request to another
    # site is that site's business, neither tagged nor logged
    other = request_to("example.org", f"/?mobile={PHONE}")
    other.request.headers["host"] = "gm.mmstat.com"
    proxy.run(respond(other))
    assert META not in other.metadata and len(proxy.lines("flow")) == 1


def test_in_reverse_and_transparent_mode_scope_follows_the_kept_host_and_sni(
    proxy: Proxy,
) -> None:
    from mitmproxy.proxy import mode_specs

    reverse = request_to("127.0.0.1")  # the reverse target is an address; Host is kept
    reverse.request.headers["host"] = "www.taobao.com"
    reverse.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:1")
    assert proxy.run(reverse, ("requestheaders",)).metadata[META]["site"] == "taobao"
    transparent = request_to("10.0.0.1")
    transparent.request.headers["host"] = "example.org"
    transparent.client_conn.sni = "www.taobao.com"  # the name the client gave in TLS
    transparent.client_conn.proxy_mode = mode_specs.ProxyMode.parse("transparent")
    assert proxy.run(transparent, ("requestheaders",)).metadata[META]["site"] == "taobao"


def test_configuration_is_logged_when_loaded(proxy: Proxy) -> None:
    (loaded,) = proxy.lines("policy_loaded")
    assert {s["site"] for s in loaded["sites"]} >= {"taobao", "jd", "temu"}


def test_invalid_configuration_is_refused_and_the_last_good_one_kept(proxy: Proxy) -> None:
    before = proxy.rt.config
    bad = proxy.config / "sites" / "bazaar.yaml"
    bad.write_text("hosts:\n  - ok.example\n  - '*bazaar.example'\n", encoding="utf-8")
    with pytest.raises(exceptions.OptionsError, match=r"sites/bazaar.yaml:3: hosts\[1\]: "):
        proxy.tctx.options.update(shopguard_config=str(proxy.config) + "/")
    assert proxy.rt.config is before
    assert proxy.run(request_to("www.taobao.com"), ("requestheaders",)).metadata[META]


def test_missing_config_directory_is_an_options_error(proxy: Proxy, tmp_path: Path) -> None:
    with pytest.raises(exceptions.OptionsError, match="config directory not found"):
        proxy.tctx.options.update(shopguard_config=str(tmp_path / "nope"))


# --- modes ----------------------------------------------------------------------------------

ENFORCE_BUT_JD = {
    "shopguard.yaml": "mode: enforce\n",
    "sites/jd.yaml": 'hosts: ["*.jd.com"]\nmode: observe\n',
}


@pytest.mark.parametrize(
    ("files", "option", "taobao", "jd"),
    [
        pytest.param({}, "", "observe", "observe", id="shipped global"),
        pytest.param({"shopguard.yaml": "mode: enforce\n"}, "", "enforce", "enforce", id="global"),
        pytest.param(ENFORCE_BUT_JD, "", "enforce", "observe", id="site beats global"),
        pytest.param(
            {"sites/jd.yaml": 'hosts: ["*.jd.com"]\nmode: enforce\n'},
            "",
            "observe",
            "enforce",
            id="site beats shipped global",
        ),
        pytest.param(ENFORCE_BUT_JD, "observe", "observe", "observe", id="option beats all"),
        pytest.param(ENFORCE_BUT_JD, "enforce", "enforce", "enforce", id="option enforce"),
    ],
)
def test_mode_precedence(
    start: Callable[..., Proxy], files: dict[str, str], option: str, taobao: str, jd: str
) -> None:
    proxy = start(files, shopguard_mode=option)
    for host, expected in (("www.taobao.com", taobao), ("www.jd.com", jd)):
        flow = proxy.run(respond(request_to(host)))
        assert flow.metadata[META]["mode"] == expected
    assert [x["mode"] for x in proxy.lines("flow")] == [taobao, jd]


def test_mode_option_can_be_cleared(start: Callable[..., Proxy]) -> None:
    proxy = start(ENFORCE_BUT_JD, shopguard_mode="observe")
    proxy.tctx.options.update(shopguard_mode="")
    flow = proxy.run(request_to("www.taobao.com"), ("requestheaders",))
    assert flow.metadata[META]["mode"] == "enforce"


def test_bad_mode_option_is_refused(proxy: Proxy) -> None:
    with pytest.raises(exceptions.OptionsError, match="shopguard_mode: expected observe or"):
        proxy.tctx.options.update(shopguard_mode="block")
    assert proxy.rt.mode_for("taobao") == "observe"


# --- recorder -------------------------------------------------------------------------------


def test_one_flow_line_per_flow_with_masked_path(proxy: Proxy) -> None:
    flow = request_to("www.taobao.com", f"/item.htm?id=42&spm=a1z10.1&from=&mobile={PHONE}")
    proxy.run(flow, ("requestheaders", "request"))
    assert proxy.lines("flow") == []  # written once the flow is complete
    proxy.run(respond(flow, 200), ("responseheaders", "response"))
    (line,) = proxy.lines("flow")
    assert list(line)[:3] == ["schema", "timestamp", "event"]
    duration = line.pop("duration_ms")
    assert isinstance(duration, int | float) and duration >= 0
    line.pop("timestamp")
    assert line == {
        "schema": 1,
        "event": "flow",
        "site": "taobao",
        "host": "www.taobao.com",
        "method": "GET",
        "path": "/item.htm?id=***&spm=***&from=&mobile=***",
        "status": 200,
        "third_party": False,
        "mode": "observe",
        "inspection": "full",
        "findings": line["findings"],
        "actions": line["actions"],
    }
    assert not [f for f in line["findings"] if f["category"] != "phone"]
    # the shipped taobao policy strips spm; in observe mode that is only reported
    assert [(a["action"], a["target"], a["applied"]) for a in line["actions"]] == [
        ("strip", "query:spm", False)
    ]
    assert PHONE not in proxy.log.read_text()


def test_a_third_party_flow_is_logged_as_such(proxy: Proxy) -> None:
    flow = request_to("g.alicdn.com", "/js/x.js", referer="https://www.aliexpress.com/")
    proxy.run(respond(flow, 304))
    (line,) = proxy.lines("flow")
    assert (line["site"], line["host"], line["third_party"], line["status"]) == (
        "aliexpress",
        "g.alicdn.com",
        True,
        304,
    )
    assert line["findings"] == [] and line["actions"] == []


def test_a_failed_flow_is_logged_with_its_error(proxy: Proxy) -> None:
    flow = request_to("www.temu.com", "/api?x=1", method="POST", err=True)
    proxy.run(flow, ("requestheaders", "request"))
    proxy.recorder.error(flow)
    (line,) = proxy.lines("flow")
    assert line["error"] == flow.error.msg  # type: ignore[union-attr]
    assert "status" not in line
    assert (line["site"], line["method"], line["path"]) == ("temu", "POST", "/api?x=***")


def test_a_response_failing_after_its_headers_is_logged_with_status_and_error(
    proxy: Proxy,
) -> None:
    """The upstream answered (headers) and then reset mid-body: `response` never runs, but
    the request reached the site, so `error` records it."""
    flow = request_to("h5api.m.taobao.com", f"/h5/x?mobile={PHONE}")
    proxy.run(flow, ("requestheaders", "request"))
    flow.response = tflow.tresp(status_code=200)
    for addon in proxy.addons:
        if hasattr(addon, "responseheaders"):
            addon.responseheaders(flow)
    flow.error = tflow.terr(f"illegal chunk header: bytearray(b'{PHONE}')")
    proxy.recorder.error(flow)
    (line,) = proxy.lines("flow")
    assert (line["status"], line["error"]) == (200, "illegal chunk header: bytearray(b'***')")
    assert [f["category"] for f in line["findings"]] == ["phone"]
    assert PHONE not in proxy.log.read_text()


def test_a_flow_is_logged_once_even_if_an_error_follows_its_response(proxy: Proxy) -> None:
    flow = proxy.run(respond(request_to("www.taobao.com")))
    flow.error = tflow.terr("connection closed")
    proxy.recorder.error(flow)
    assert len(proxy.lines("flow")) == 1


def test_the_log_option_moves_the_log(proxy: Proxy, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "log.jsonl"
    proxy.tctx.options.update(shopguard_log=str(other))
    proxy.run(respond(request_to("www.taobao.com")))
    assert proxy.lines("flow") == []
    assert [json.loads(x)["event"] for x in other.read_text().splitlines()] == ["flow"]


def test_an_unwritable_log_path_is_refused(proxy: Proxy, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(exceptions.OptionsError, match="cannot write the shopguard log"):
        proxy.tctx.options.update(shopguard_log=str(blocker / "flows.jsonl"))


# --- tls_failed -----------------------------------------------------------------------------


def tls_failure(proxy: Proxy, sni: str | None) -> tls.TlsData:
    client = tflow.tclient_conn()
    client.sni = sni
    client.error = "Client TLS handshake failed. The client does not trust the proxy's certificate"
    return tls.TlsData(client, Context(client, proxy.tctx.options))


def test_tls_failure_of_an_in_scope_host_is_logged(proxy: Proxy) -> None:
    proxy.recorder.tls_failed_client(tls_failure(proxy, "h5api.m.taobao.com"))
    (line,) = proxy.lines("tls_failed")
    assert (line["site"], line["host"]) == ("taobao", "h5api.m.taobao.com")
    assert "does not trust" in line["error"]
    assert "shopguard ca" in line["hint"]


@pytest.mark.parametrize("sni", ["example.org", "taobao.com.evil.example", None])
def test_tls_failure_out_of_scope_is_not_logged(proxy: Proxy, sni: str | None) -> None:
    proxy.recorder.tls_failed_client(tls_failure(proxy, sni))
    assert proxy.lines("tls_failed") == []


# --- the guard: an addon that raises --------------------------------------------------------


class Boom:
    """An addon whose request hook fails once, with personal data in its message."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.failures = 1

    @guarded
    def request(self, flow: http.HTTPFlow) -> None:
        if self.failures:
            self.failures -= 1
            raise ValueError(PHONE)


@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_a_failing_hook_fails_closed_in_enforce_and_open_in_observe(
    start: Callable[..., Proxy], mode: str
) -> None:
    proxy = start(shopguard_mode=mode)
    boom = Boom(proxy.rt)
    proxy.addons.insert(2, boom)
    flow = proxy.run(request_to("www.taobao.com", "/cart"), ("requestheaders", "request"))
    if mode == "enforce":
        assert flow.response is not None and flow.response.status_code == 502
        assert "shopguard stopped this request" in flow.response.get_text()
    else:
        assert flow.response is None
    (error,) = proxy.lines("addon_error")
    assert error["error_type"] == "ValueError"
    assert error["mode"] == mode
    assert PHONE not in error["message"]
    assert PHONE not in proxy.log.read_text()

    second = proxy.run(respond(proxy.run(request_to("www.taobao.com", "/"), HOOKS[:2])))
    assert second.response is not None and second.response.status_code == 200
    assert [x["status"] for x in proxy.lines("flow")][-1] == 200
    assert len(proxy.lines("addon_error")) == 1


class EarlyBoom:
    """An addon that fails before the scope addon has given the flow to a site."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        raise ValueError("before scope")


def test_a_flow_failing_before_its_site_is_known_gets_its_hosts_mode(
    start: Callable[..., Proxy],
) -> None:
    """Fail closed for the sites' hosts, and leave every other site alone."""
    proxy = start(
        {
            "shopguard.yaml": "mode: enforce\n",
            "sites/jd.yaml": 'hosts: ["*.jd.com"]\nmode: observe\n',
        }
    )
    proxy.addons.insert(0, EarlyBoom(proxy.rt))
    taobao = proxy.run(request_to("www.taobao.com"), ("requestheaders",))
    assert taobao.response is not None and taobao.response.status_code == 502
    jd = proxy.run(request_to("www.jd.com"), ("requestheaders",))
    assert jd.response is None  # its site is in observe mode
    outside = proxy.run(request_to("example.org"), ("requestheaders",))
    assert outside.response is None
    pixel = proxy.run(request_to("bat.bing.com", "/action/0?ti=1"), ("requestheaders",))
    assert pixel.response is None  # an ad pixel fired by no marketplace page: left alone
    fired = request_to("bat.bing.com", "/action/0?ti=2")
    fired.request.headers["referer"] = "https://www.taobao.com/"
    assert proxy.run(fired, ("requestheaders",)).response is not None  # one fired by taobao
    modes = [(e["host"], e["mode"], e["outcome"]) for e in proxy.lines("addon_error")]
    assert modes == [
        ("www.taobao.com", "enforce", "blocked"),
        ("www.jd.com", "observe", "passed"),
        ("example.org", "observe", "passed"),
        ("bat.bing.com", "observe", "passed"),
        ("bat.bing.com", "enforce", "blocked"),
    ]


# --- the log cannot be written --------------------------------------------------------------


def break_log(proxy: Proxy) -> None:
    assert proxy.rt.audit is not None
    proxy.rt.audit.close()
    proxy.rt.audit = AuditLog(Path("/dev/full"), 1024 * 1024, 1, 0)


def test_unwritable_log_blocks_enforce_and_passes_observe(
    start: Callable[..., Proxy], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proxy = start({"sites/jd.yaml": 'hosts: ["*.jd.com"]\nmode: enforce\n'})
    break_log(proxy)
    proxy.run(respond(request_to("www.taobao.com")))  # its line cannot be written
    assert "cannot write the log /dev/full" in capsys.readouterr().err

    enforced = proxy.run(request_to("www.jd.com"), ("requestheaders",))
    assert enforced.response is not None and enforced.response.status_code == 502
    assert "cannot write its log" in enforced.response.get_text()

    observed = proxy.run(request_to("www.taobao.com"), ("requestheaders",))
    assert observed.response is None

    outside = proxy.run(request_to("example.org"), ("requestheaders",))
    assert outside.response is None

    good = tmp_path / "recovered.jsonl"
    proxy.rt.audit.close()  # type: ignore[union-attr]
    proxy.rt.audit = AuditLog(good, 1024 * 1024, 1, 0)
    recovered = proxy.run(request_to("www.jd.com"), ("requestheaders",))
    assert recovered.response is None
    proxy.run(respond(recovered), ("response",))
    assert [json.loads(x)["host"] for x in good.read_text().splitlines() if '"flow"' in x] == [
        "www.jd.com"
    ]
    proxy.rt.audit.close()


def test_a_nearly_full_disk_stops_enforcement_before_a_line_is_lost(
    start: Callable[..., Proxy],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write fails only once the disk is full, after the request it records has left; with
    less than 1 MiB free, enforce sites are answered with a 502 before anything is sent."""
    proxy = start({"sites/jd.yaml": 'hosts: ["*.jd.com"]\nmode: enforce\n'})
    real = os.fstatvfs
    free_blocks = {"n": 100}  # of 4 KiB: 400 KiB free

    def statvfs(fd: int) -> os.statvfs_result:
        info = real(fd)
        return os.statvfs_result((4096, 4096, *info[2:4], free_blocks["n"], *info[5:]))

    monkeypatch.setattr("shopguard.auditlog.os.fstatvfs", statvfs)
    for _ in range(3):  # it stays stopped while lines (the blocked flows') are written
        enforced = proxy.run(request_to("www.jd.com"))
        assert enforced.response is not None and enforced.response.status_code == 502
    observed = proxy.run(respond(proxy.run(request_to("www.taobao.com"), HOOKS[:2])))
    assert observed.response is not None and observed.response.status_code == 200
    assert capsys.readouterr().err.count("less than 1024 KiB free") == 1  # said once

    free_blocks["n"] = 10_000  # 40 MiB: room again
    recovered = proxy.run(request_to("www.jd.com"), ("requestheaders",))
    assert recovered.response is None
    assert "room for the log" in capsys.readouterr().err
    events = [json.loads(line)["event"] for line in proxy.log.read_text().splitlines()]
    assert events.count("log_recovered") == 1


def test_a_replayed_flow_saved_by_an_older_version_is_recorded(proxy: Proxy) -> None:
    """Saved flows keep shopguard's state; one saved before the state held the host goes
    through every hook without an addon error."""
    flow = request_to("www.taobao.com", "/cart")
    flow.metadata[META] = {
        "site": "taobao",
        "third_party": False,
        "mode": "observe",
        "inspection": "none",
        "findings": [],
        "actions": [],
        "started": 0.0,
    }
    proxy.run(respond(proxy.run(flow, HOOKS[:2])), HOOKS[2:])
    assert not proxy.lines("addon_error")
    assert [line["host"] for line in proxy.lines("flow")] == ["www.taobao.com"]


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_path_with_bytes_that_are_not_utf8_gets_its_line(
    start: Callable[..., Proxy], mode: str
) -> None:
    """The request reached the site: its line is written (the byte as %FF), and no addon fails
    on it — in enforce mode a failing recorder would have answered a 502 after the fact."""
    proxy = start(shopguard_mode=mode)
    flow = request_to("www.taobao.com", "/x", resp=True)
    flow.request.data.path = b"/item/\xff\xfe?mobile=13800138000"
    proxy.run(flow)
    (line,) = proxy.lines("flow")
    assert line["path"] == "/item/%FF%FE?mobile=***"
    assert proxy.lines("addon_error") == []
    assert flow.response is not None and flow.response.status_code == 200


def test_a_host_label_that_is_personal_data_is_masked_in_the_line(proxy: Proxy) -> None:
    resident_id = "11010519491231002x"  # the GB 11643 sample ID, as a subdomain
    flow = request_to(f"{resident_id}.m.taobao.com", "/")
    proxy.run(respond(flow, 200))
    (line,) = proxy.lines("flow")
    assert [(f["category"], f["location"]) for f in line["findings"]] == [("id_number", "host:0")]
    assert line["host"] == "***.m.taobao.com"
    assert resident_id not in proxy.log.read_text().lower()


def test_a_tls_failure_masks_a_host_label_that_is_personal_data(proxy: Proxy) -> None:
    proxy.recorder.tls_failed_client(tls_failure(proxy, "11010519491231002x.m.taobao.com"))
    (line,) = proxy.lines("tls_failed")
    assert line["host"] == "***.m.taobao.com"


def test_what_left_follows_the_actions_applied_and_the_location_grammar() -> None:
    from shopguard.recorder import what_left

    def finding(location: str) -> dict[str, str]:
        return {"category": "tracking_id", "location": location}

    findings = [
        finding("cookie:cna"),
        finding("body:$.device.imei"),
        finding("body:$.devices"),
        finding("set-cookie:cna"),
    ]
    actions = [
        {"action": "strip", "target": "cookie:cna", "applied": True},
        {"action": "strip", "target": "body:$.device", "applied": True},
        {"action": "strip", "target": "body:$.devices", "applied": False},
    ]
    marked = {
        f["location"]: f.get("left", f.get("received")) for f in what_left(findings, actions, True)
    }
    assert marked == {
        "cookie:cna": False,
        "body:$.device.imei": False,  # inside what was stripped
        "body:$.devices": True,  # not applied (observe): it left
        "set-cookie:cna": True,  # (received, not sent)
    }
    assert "left" not in what_left(findings, actions, True)[3]
    assert all(not f.get("left", False) for f in what_left(findings, [], sent=False))
