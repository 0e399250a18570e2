"""`shopguard report` over the log of a real `shopguard run` session (enforce mode, with a
profile): the hashed e-mail a Meta-style pixel got from a Taobao page is listed first as sent
with no rule acting on it; the phone a blocked tracker would have got is listed as stopped."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.market import API, BEACON, PIXEL, SHOP, FakeMarket
from tests.support.proxy import SHOPGUARD, fetch, start_proxy

pytestmark = pytest.mark.integration

EMAIL, PHONE = "wang.xiaoming@example.com", "13800138000"


def test_report_answers_what_the_shop_and_its_trackers_learnt(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(f'phone: ["{PHONE}"]\nemail: ["{EMAIL}"]\n', encoding="utf-8")
    profile.chmod(0o600)
    proxy = start_proxy(
        tmp_path,
        "--mode",
        "enforce",
        "--profile",
        str(profile),
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )
    page = {"referer": f"https://{SHOP}/"}
    hashed = hashlib.sha256(EMAIL.encode()).hexdigest()
    try:
        fetch(
            proxy.port,
            f"https://{PIXEL}/tr?id=1&ev=PageView&{quote('ud[em]')}={hashed}",
            cafile=proxy.ca,
            headers=page,
        )
        fetch(
            proxy.port,
            f"https://{API}/h5/mtop.order/1.0/",
            cafile=proxy.ca,
            method="POST",
            headers={**page, "content-type": "application/x-www-form-urlencoded"},
            body=f"mobile={PHONE}".encode(),
        )
        fetch(
            proxy.port,
            f"https://{BEACON}/v.gif?mobile={PHONE}",
            cafile=proxy.ca,
            headers={**page, "sec-fetch-dest": "image"},
        )
        assert len(proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == BEACON)) == 1
    finally:
        proxy.stop()
    result = subprocess.run(
        [SHOPGUARD, "report", str(proxy.log), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(result.stdout)
    first = data["unhandled"][0]  # most serious first: personal data to a third party
    assert (first["site"], first["category"], first["host"]) == ("taobao", "email", PIXEL)
    assert first["third_party"] is True and "sha256" in first["how"][0]
    (phone,) = [v for v in data["sites"]["taobao"]["your_values"] if v["category"] == "phone"]
    hosts = {h["host"]: (h["sent"], h["stopped"]) for h in phone["hosts"]}
    assert hosts == {API: (1, 0), BEACON: (0, 1)}  # the blocked beacon got nothing
    assert EMAIL not in result.stdout and PHONE not in result.stdout
