"""The profile: validation with file:line errors, normalisation, plain and hashed matching."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from urllib.parse import quote

import pytest

from shopguard.engine.known_values import KnownMatcher, load_profile, normalise
from shopguard.engine.located import ConfigErrors

PROFILE = """\
default_region: CN
name: ["王小明", "Wang Xiaoming"]
phone: ["+86 138 0013 8000"]
email: ["Wang.Xiaoming@Example.com "]
address: ["北京市海淀区学院路38号"]
postcode: ["100083"]
"""


@pytest.fixture
def matcher(tmp_path: Path) -> KnownMatcher:
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    return KnownMatcher(load_profile(path))


def categories(matcher: KnownMatcher, text: str) -> set[tuple[str, str]]:
    return {(m.value.category, m.value.canonical) for m, _, _ in matcher.find(text)}


@pytest.mark.parametrize(
    "written",
    ["+8613800138000", "13800138000", "138 0013 8000", "138-0013-8000", "008613800138000",
     "+86 138 0013 8000", "8613800138000"],
)  # fmt: skip
def test_phone_in_every_usual_form(matcher: KnownMatcher, written: str) -> None:
    assert ("phone", "+8613800138000") in categories(matcher, f"tel={written}&x=1")


def test_digit_boundaries_prevent_partial_numbers(matcher: KnownMatcher) -> None:
    assert not categories(matcher, "id=9138001380001")
    assert not categories(matcher, "t=1380013800012")


def test_email_is_case_folded_and_trimmed(matcher: KnownMatcher) -> None:
    assert ("email", "wang.xiaoming@example.com") in categories(
        matcher, "WANG.XIAOMING@example.COM"
    )


def test_names_whole_and_in_parts_but_not_a_lone_surname(matcher: KnownMatcher) -> None:
    assert ("name", "王小明") in categories(matcher, "收货人王小明")
    assert ("name", "小明") in categories(matcher, "dear 小明")
    assert not categories(matcher, "王先生")
    assert ("name", "Xiaoming") in categories(matcher, "hi xiaoming!")
    assert not categories(matcher, "xiaomingtian")  # Latin parts need word boundaries


def test_addresses_whole_and_street_level_never_the_city(matcher: KnownMatcher) -> None:
    assert ("address", "北京市海淀区学院路38号") in categories(matcher, "北京市海淀区学院路38号")
    assert ("address", "学院路38号") in categories(matcher, "送到学院路38号")
    assert not categories(matcher, "北京市海淀区")


def test_hashed_forms_are_found_by_digest(matcher: KnownMatcher) -> None:
    email = "wang.xiaoming@example.com"
    sha256 = hashlib.sha256(email.encode()).hexdigest()
    md5_of_sha = hashlib.md5(sha256.encode()).hexdigest()
    b64_sha1 = base64.b64encode(hashlib.sha1(email.upper().encode()).digest()).decode()
    url_sha = hashlib.sha512(quote(email, safe="").encode()).hexdigest()
    phone = hashlib.sha256(b"+8613800138000").hexdigest().upper()
    text = f"a={sha256}&b={md5_of_sha}&c={b64_sha1}&d={url_sha}&e={phone}"
    found = {(m.value.category, m.transform) for m, _ in matcher.find_digests(text)}
    assert ("email", "sha256") in found
    assert ("email", "md5(sha256)") in found
    assert ("email", "base64(sha1(upper))") in found
    assert ("email", "sha512") in found or ("email", "sha512(urlencode)") in found
    assert ("phone", "sha256") in found
    unrelated = hashlib.sha256(b"someone.else@example.com").hexdigest()
    assert not list(matcher.find_digests(unrelated))


def test_digest_pool_is_built_for_three_levels(matcher: KnownMatcher) -> None:
    triple = hashlib.sha1(hashlib.md5(hashlib.sha256(b"100083").hexdigest().encode())
                          .hexdigest().encode()).hexdigest()  # fmt: skip
    assert [m.transform for m, _ in matcher.find_digests(triple)] == ["sha1(md5(sha256))"]
    assert matcher.pool_size > 1000


def test_profile_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        'default_region: XX\nphone: ["not a phone"]\nemail: "a@b.c"\nnickname: [x]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigErrors) as raised:
        load_profile(path)
    messages = [str(e) for e in raised.value.errors]
    assert f"{path}:1: default_region: expected a region code like CN" in messages
    assert f"{path}:2: phone[0]: not a valid phone" in messages
    assert f"{path}:3: email: expected a list, got text" in messages
    assert any(m.startswith(f"{path}:4: ***: unknown key (expected one of:") for m in messages)


def test_profile_errors_never_show_a_value(tmp_path: Path) -> None:
    """The profile holds the user's own data: where a value is in the wrong place (as a key,
    nested, of the wrong type), the error says where and what kind, never the value."""
    path = tmp_path / "profile.yaml"
    path.write_text(
        "default_region: 13800138000\n"
        'phone: [[13800138000], "wang.xiaoming@example.com", 王小明]\n'
        "13800138000: x\n"
        "王小明: [1]\n"
        "email: {wang.xiaoming@example.com: 1}\n"
        "email: [x]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigErrors) as raised:
        load_profile(path)
    text = "\n".join(str(e) for e in raised.value.errors)
    assert text.count(f"{path}:") >= 6, text  # every problem is named, with its line
    for value in ("13800138000", "wang.xiaoming", "王小明"):
        assert value not in text
    assert f"{path}:3: keys must be text, got a whole number" in text
    assert f"{path}:6: email: duplicate key (first given on line 5)" in text


def test_normalise_payment_card_and_device() -> None:
    card = normalise("payment_card", "4111 1111 1111 1111", "CN")
    assert card and {form for _, form, _ in card} >= {"4111111111111111", "4111 1111 1111 1111"}
    device = normalise("device_id", "6D92078A-8246-4BA4-AE5B-76104861E7DC", "CN")
    assert device and "6D92078A82464BA4AE5B76104861E7DC" in {form for _, form, _ in device}
