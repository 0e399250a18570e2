"""Pattern detectors: validation plus key context, and the traps they must not fall into."""

from __future__ import annotations

import pytest

from shopguard.engine.detect import Detector
from shopguard.engine.extract import extract
from shopguard.engine.patterns import card_issuer_ok, cn_id_valid, luhn, stamped_id
from shopguard.engine.request import PlainRequest


def found(url: str, body: bytes = b"", content_type: str = "application/json") -> set[str]:
    headers = [("content-type", content_type)] if body else []
    extraction = extract(PlainRequest("POST" if body else "GET", url, headers, body))
    return {f"{f.category}@{f.location}" for f in Detector(b"k").detect(extraction)}


def test_validators() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert card_issuer_ok("4111111111111111") and not card_issuer_ok("9111111111111111")
    assert cn_id_valid("11010519491231002X") and cn_id_valid("11010519491231002x")
    assert not cn_id_valid("110105194912310021")  # wrong check character
    assert not cn_id_valid("11010519491331002X")  # month 13


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a/?receiverMobile=13912345678", {"phone@query:receiverMobile"}),
        ("https://a/?contactTel=%2B44%2020%207946%200958", {"phone@query:contactTel"}),
        ("https://a/?msg=" + "手机:13912345678", {"phone@query:msg"}),
        ("https://a/?itemId=13812345678", set()),
        ("https://a/?t=1700000000000", set()),
        ("https://a/?hotel=13912345678", set()),
        ("https://a/?contact=a.buyer@example.org", {"email@query:contact"}),
        ("https://a/?img=logo@2x.png&icon=icon@3x.webp", set()),
        ("https://a/?cardNumber=4111111111111111", {"payment_card@query:cardNumber"}),
        ("https://a/?skuId=4111111111111111", set()),
        ("https://a/?q=x&who=11010519491231002X", {"id_number@query:who"}),
        ("https://a/?orderNo=110105194912310021", set()),
        ("https://a/?clientIp=203.0.113.7", {"ip_address@query:clientIp"}),
        ("https://a/?v=1.2.3.4", set()),
        ("https://a/?utdid=WqK7nE0eHsADAJXm0bq8ZyAs", {"device_id@query:utdid"}),
        ("https://a/?imei=490154203237518", {"device_id@query:imei"}),
        ("https://a/?deviceId=unknown", set()),
        ("https://a/?lat=39.9912&lng=116.3252", {"geo@query:lat"}),
        ("https://a/?location=116.3252,39.9912", {"geo@query:location"}),
        ("https://a/?price=12.50,39.90", set()),
        ("https://a/?zip=100083", {"postcode@query:zip"}),
        ("https://a/?pageSize=100083", set()),
        ("https://a/?city=" + "北京市", set()),
        ("https://a/?receiverName=" + "李四", {"name@query:receiverName"}),
        ("https://a/?shopName=" + "旗舰店", set()),
    ],
)
def test_unlisted_values_need_shape_and_context(url: str, expected: set[str]) -> None:
    assert found(url) == expected


def test_name_under_an_address_object_and_address_keys() -> None:
    body = b'{"address": {"name": "Ann Lee", "addressDetail": "12 Long Road, Flat 3"}}'
    assert found("https://a/", body) == {
        "name@body:$.address.name",
        "address@body:$.address.addressDetail",
    }
    assert found("https://a/", b'{"item": {"name": "Canvas Bag"}}') == set()


def test_uuid_and_hex_signatures_are_not_phones() -> None:
    url = (
        "https://a/?trace=6d92078a-8246-4ba4-ae5b-76104861e7dc"
        "&sign=0f1e2d3c4b5a69788796a5b4c3d2e1f0&x-sign=138001380001380013800138"
    )
    assert found(url) == set()


@pytest.mark.parametrize(
    ("value", "stamped"),
    [
        ("GA1.2.1234567890.1700000000", True),  # Google Analytics' _ga
        ("1.1.1983204752.1700000000", True),  # Google Ads' _gcl_au
        ("fb.1.1596403881668.1098115397", True),  # Meta's _fbp
        ("fb.1.1700000000000.IwAR2kq_Xy-3bZc", True),  # Meta's _fbc (a click ID)
        ("3.8SsaxTmknuj6.1745953370", True),  # Temu's _ttc
        ("img.1700000000.ab12cd.jpg", False),  # a file name: a word is no version tag
        ("GS1.1.1700000000.1.1.1700000300.0.0.0", False),  # GA4's session state
        ("2.0.1.1700000000", False),  # a version and a time, nothing random
        ("1.1.aaaaaa.1700000000", False),  # nothing random either
        ("122270672.1700000000123456789.1700000000.1700000000.1700000000.1", False),
        ("3.8SsaxTmknuj6.2745953370", False),  # no Unix time
    ],
)
def test_visitor_ids_stamped_with_their_time(value: str, stamped: bool) -> None:
    assert stamped_id(value) is stamped
    assert found(f"https://a/?v={value}") == ({"tracking_id@query:v"} if stamped else set())
