"""Hostile requests from a seed, and clients that send them through a proxy the way odd clients do.

`generate(seed, count)` makes the same list of `Case`s for the same seed: malformed URLs, invalid
UTF-8, header floods, huge cookies, JSON nested 50,000 deep, decompression bombs, false
Content-Encoding, broken multipart, bodies of 10 MB and more (at most `BIG_BODIES` a run), and
the fixture profile's values as keys and bare tokens, spread over HTTP/1.1 (plain and inside
CONNECT/TLS), HTTP/2 inside CONNECT (ALPN h2) and WebSocket. Every case carries its own id as the
first path segment (WebSocket cases also in their host name), so what reached the upstream can be
matched with the proxy's log lines.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import random
import socket
import ssl
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import yaml
from mitmproxy.net import encoding

from tests.support.market import API, BEACON, CDN, LOOKALIKE, SHOP

PROFILE_FILE = Path(__file__).parents[1] / "fixtures" / "corpus" / "profile.yaml"
BIG_BODIES = 2  # bodies of 10 MB or more per run (at most 10)
BIG = 10 * 1024 * 1024
TIMEOUT = 30.0
TRANSPORTS = ("h1", "h1s", "h2", "ws")
IN_SCOPE = (SHOP, API, BEACON, CDN)  # taobao's hosts (gm.mmstat.com is a blocked tracker)
WS_DOMAIN = "m.taobao.com"
FORM = b"application/x-www-form-urlencoded"  # WebSocket cases go to ws-<id>.m.taobao.com


@functools.cache
def profile() -> dict[str, list[str]]:
    """The fixture profile's values by category (the buyer the corpus is about)."""
    loaded = yaml.safe_load(PROFILE_FILE.read_text(encoding="utf-8"))
    return {k: [str(v) for v in vs] for k, vs in loaded.items() if isinstance(vs, list) and vs}


PHONES = ["13800138000", "+8613800138000", "138-0013-8000", "+86 138 0013 8000"]
EMAIL = "wang.xiaoming@example.com"


def personal_tokens() -> list[str]:
    """Profile values, in the forms a client sends them, to use as values, keys and tokens."""
    values = [v for vs in profile().values() for v in vs]
    email = profile()["email"][0]
    hashed = [
        hashlib.sha256(email.lower().encode()).hexdigest(),
        hashlib.md5(email.encode()).hexdigest(),
    ]
    return [*values, *PHONES, email.upper(), *hashed]


@dataclass
class Case:
    """One request (or WebSocket message) of a run."""

    id: str
    kind: str
    transport: str  # h1 (plain, absolute form), h1s (CONNECT + TLS), h2 (CONNECT + TLS, h2), ws
    host: str
    method: bytes = b"GET"
    target: bytes = b"/"  # after the id segment: path and query
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    message: bytes | str | None = None  # ws: the one message the client sends

    @property
    def path(self) -> bytes:
        return b"/" + self.id.encode() + self.target

    @property
    def in_scope(self) -> bool:
        return self.host != LOOKALIKE


@dataclass
class Outcome:
    """What the client saw."""

    status: int | None = None  # None: no response (reset, refused, timed out)
    error: str = ""
    ws_reply: bool = False  # ws: the upstream's answer to the message came back
    seconds: float = 0.0


# --- compression bombs: 1 GiB of zeros, built once --------------------------------------------

BOMB_SIZE = 1 << 30


@functools.cache
def bomb(coding: str) -> bytes:
    """`BOMB_SIZE` zero bytes compressed with `coding` (gzip, deflate, br, zstd)."""
    chunk = bytes(1 << 20)
    count = BOMB_SIZE // len(chunk)
    if coding in ("gzip", "deflate"):
        # after a full flush deflate forgets its history: the blocks for every further MiB of
        # zeros are the same bytes, so the bomb is built from one (compressing 1 GiB takes 9 s)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
        stream = block * count + compressor.flush()
        if coding == "gzip":
            crc = 0
            for _ in range(count):
                crc = zlib.crc32(chunk, crc)
            head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
            return head + stream + struct.pack("<II", crc, BOMB_SIZE & 0xFFFFFFFF)
        adler = 1
        for _ in range(count):
            adler = zlib.adler32(chunk, adler)
        return b"\x78\xda" + stream + struct.pack(">I", adler)
    if coding == "br":
        import brotli  # type: ignore[import-untyped,unused-ignore]

        brotli_compressor = brotli.Compressor(quality=5)
        parts = [brotli_compressor.process(chunk) for _ in range(count)]
        return b"".join(parts) + brotli_compressor.finish()
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]
    zstd_compressor = zstd.ZstdCompressor(level=3)
    return b"".join(zstd_compressor.compress(chunk) for _ in range(count)) + zstd_compressor.flush()


@functools.cache
def prefixed_bomb(coding: str) -> bytes:
    """A form of fields a policy strips, then 64 MiB of zeros, compressed with `coding`."""
    return encoding.encode(b"umidToken=T1&mobile=13800138000&pad=" + bytes(64 << 20), coding)


def bomb_codings() -> list[str]:
    codings = ["gzip", "deflate"]
    for coding in ("br", "zstd"):
        try:
            encoding.encode(b"x", coding)
        except (ValueError, ImportError):
            continue
        codings.append(coding)
    return codings


# --- the generator ------------------------------------------------------------------------------


class Generator:
    """Builds cases from one seeded random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tokens = personal_tokens()
        self.codings = bomb_codings()

    # small pieces

    def pick[T](self, items: list[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def token(self) -> str:
        return self.pick(self.tokens)

    def junk(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def bad_utf8(self) -> bytes:
        return self.pick([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x92", b"\xed\xa0\x80"])

    def word(self, size: int = 6) -> str:
        return "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size))

    def q(self, text: str) -> bytes:
        return quote(text, safe="").encode()

    # request kinds: each returns (method, target, headers, body)

    def k_form(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        body = (
            b"receiverMobile="
            + self.q(self.pick(PHONES))
            + b"&umidToken=T"
            + self.word().encode()
            + b"&email="
            + self.q(EMAIL)
            + b"&receiverName="
            + self.q(profile()["name"][0])
            + b"&n="
            + str(self.rng.randrange(100)).encode()
        )
        headers = [(b"content-type", b"application/x-www-form-urlencoded")]
        return b"POST", b"/h5/mtop.trade.order.create/1.0/", headers, body

    def k_json(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        doc = {
            "data": {
                "receiverMobile": self.pick(PHONES),
                "umidToken": "T" + self.word(),
                "contact": {"email": EMAIL, "name": profile()["name"][self.rng.randrange(2)]},
            },
            "items": [{"sku": self.rng.randrange(10**6)}],
        }
        headers = [(b"content-type", b"application/json")]
        return b"POST", b"/h5/mtop.order/1.0/", headers, json.dumps(doc).encode()

    def k_query(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        target = (
            b"/item.htm?id=1&mobile="
            + self.q(self.pick(PHONES))
            + b"&spm=a21bo."
            + self.word().encode()
            + b"&em="
            + self.q(self.tokens[-2])
        )
        return b"GET", target, [(b"cookie", b"cna=Zm9vYmFyMTIz" + self.word().encode())], b""

    def k_bad_percent(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        bad = self.pick(["%", "%z", "%zz", "%E4%B8", "%00", "%%41", "%C0%AF", "%ff%fe", "%u4E2D"])
        target = f"/p{bad}/x?mobile={bad}{self.token()}&{bad}=1&q=%E4%B8%AD{bad}".encode()
        return b"GET", target.replace(b" ", b"%20"), [], b""

    def k_raw_bytes_url(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        raw = bytes(b for b in self.junk(self.rng.randrange(4, 40)) if b > 0x7F)
        target = b"/s/" + raw + b"?k=" + raw + self.bad_utf8() + b"&mobile=" + self.q(self.token())
        return b"GET", target, [], b""

    def k_weird_url(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        target = self.pick(
            [
                "//a//b/../../c/./d",
                "/;jsessionid=1;mobile=13800138000",
                "/x?&&==&=x&x==&mobile==13800138000",
                "/x?a[]=1&a[b][c]=2&a[=3",
                "/商品/详情?q=手机&收货人=王小明",
                "/x?" + "&" * 500,
                "/x?r=https%3A%2F%2Fwww.taobao.com%2F%3Fmobile%3D13800138000%23em%3Dx",
                "/x?data=%7B%22receiverMobile%22%3A%2213800138000%22%2C%22a%22%3A%5B%5D%7D",
                "/x?data=" + quote('{"a":' * 40 + "1" + "}" * 40),
                "/" + "a/" * 2000,
                "/x?" + "a=" + "%25" * 3000,
            ]
        )
        return b"GET", target.encode(), [], b""

    def k_long_url(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        count = self.rng.choice([500, 2000, 5000])
        params = "&".join(f"p{i}={self.word(4)}" for i in range(count))
        return b"GET", f"/l?{params}&mobile=13800138000".encode(), [], b""

    def k_header_flood(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        count = self.rng.choice([100, 500, 2000])
        headers = [(f"x-h{i}".encode(), self.word(8).encode()) for i in range(count)]
        headers.append((b"x-umt", self.token().encode()))
        return b"GET", b"/flood", headers, b""

    def k_long_header(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        size = self.rng.choice([8_000, 64_000, 200_000])
        value = (self.word(10) + ";" + self.token().replace(" ", "") + "|") * (size // 40)
        return b"GET", b"/lh", [(b"user-agent", value.encode())], b""

    def k_huge_cookie(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        count = self.rng.choice([200, 2000, 8000])
        pairs = [f"c{i}={self.word(12)}" for i in range(count)]
        pairs.insert(self.rng.randrange(len(pairs)), "cna=Zm9vYmFyMTIz" + self.word(4))
        pairs.insert(self.rng.randrange(len(pairs)), "tel=" + quote(self.pick(PHONES)))
        return b"GET", b"/hc", [(b"cookie", "; ".join(pairs).encode())], b""

    def k_bad_utf8_fields(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        bad = self.bad_utf8()
        headers = [
            (b"x-note", b"a" + bad + self.token().encode()),
            (b"cookie", b"cna=" + bad + b"; n" + bad + b"=" + self.q(self.token())),
            (b"referer", b"https://www.taobao.com/" + bad + b"?mobile=13800138000"),
            (
                b"content-type",
                self.pick(["application/json", "application/x-www-form-urlencoded"]).encode(),
            ),
        ]
        body = b'{"receiverMobile": "' + bad + b'13800138000", "k' + bad + b'": 1}'
        if b"form" in headers[-1][1]:
            body = b"mobile=" + bad + b"13800138000&" + bad + b"=" + bad
        return b"POST", b"/u8", headers, body

    def k_deep_json(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        depth = 50_000
        shape = self.rng.randrange(4)
        if shape == 0:
            doc = b"[" * depth + b'"13800138000"' + b"]" * depth
        elif shape == 1:
            doc = b'{"a":' * depth + b'{"receiverMobile":"13800138000"}' + b"}" * depth
        elif shape == 2:
            doc = b'{"umidToken":"x","d":' + b"[" * depth + b"]" * depth + b"}"
        else:
            doc = b"[" * depth  # never closed
        if self.rng.random() < 0.3:
            return (
                b"POST",
                b"/h5/deep/1.0/",
                [(b"content-type", b"application/x-www-form-urlencoded")],
                b"data=" + quote(doc.decode()).encode(),
            )
        return b"POST", b"/h5/deep/1.0/", [(b"content-type", b"application/json")], doc

    def k_bomb(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        coding = self.pick(self.codings)
        kind = self.pick(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        headers = [(b"content-type", kind.encode()), (b"content-encoding", coding.encode())]
        return b"POST", b"/bomb-" + coding.encode(), headers, bomb(coding)

    def k_prefixed_bomb(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        """A form whose first fields are to be stripped, then 64 MiB: an edit must not
        decompress it all to write it back."""
        coding = self.pick(["gzip", "zstd"] if "zstd" in self.codings else ["gzip"])
        headers = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-encoding", coding.encode()),
        ]
        return b"POST", b"/pbomb", headers, prefixed_bomb(coding)

    def k_false_encoding(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        coding = self.pick(["gzip", "br", "zstd", "deflate", "gzip, br", "identity, gzip", "x-foo"])
        plain = b"umidToken=T2&mobile=13800138000&email=" + self.q(EMAIL)
        body = self.pick(["plain", "junk", "truncated"])
        data = {
            "plain": plain,
            "junk": self.junk(300),
            "truncated": encoding.encode(plain * 20, "gzip")[:40],
        }[body]
        headers = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-encoding", coding.encode()),
        ]
        return b"POST", b"/fenc", headers, data

    def k_multipart(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        boundary = b"----b" + self.word(10).encode()
        good = (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="mobile"\r\n\r\n'
            b"13800138000\r\n--" + boundary + b"\r\nContent-Disposition: form-data; "
            b'name="umidToken"\r\n\r\nT3\r\n--' + boundary + b"\r\nContent-Disposition: "
            b'form-data; name="photo"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            + self.junk(200)
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
        variant = self.rng.randrange(7)
        content_type = b"multipart/form-data; boundary=" + boundary
        if variant == 0:
            body = good
        elif variant == 1:
            body = good[: len(good) // 2]  # no closing boundary
        elif variant == 2:
            content_type = b"multipart/form-data"  # no boundary at all
            body = good
        elif variant == 3:
            body = good.replace(b"Content-Disposition", b"X-Nothing")
        elif variant == 4:
            parts = [
                b"--"
                + boundary
                + b'\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
                for i in range(5000)
            ]
            body = b"".join(parts) + b"--" + boundary + b"--\r\n"
        elif variant == 5:
            body = good.replace(b'name="mobile"', b'name="' + self.bad_utf8() + b'"')
        else:
            content_type = b'multipart/form-data; boundary="' + b"x" * 200 + b'"'
            body = self.junk(2000)
        return b"POST", b"/mp", [(b"content-type", content_type)], body

    def k_big(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        size = BIG + self.rng.randrange(2 * 1024 * 1024)
        kind = self.rng.randrange(3)
        if kind == 0:
            body = b'{"umidToken":"T4","mobile":"13800138000","pad":"' + b"a" * size + b'"}'
            return b"POST", b"/big", [(b"content-type", b"application/json")], body
        if kind == 1:
            body = b"umidToken=T4&mobile=13800138000&pad=" + b"b" * size
            return b"PUT", b"/big", [(b"content-type", b"application/x-www-form-urlencoded")], body
        return b"POST", b"/big", [(b"content-type", b"application/octet-stream")], self.junk(size)

    def k_personal_names(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        token = self.token()
        shape = self.rng.randrange(6)
        if shape == 0:
            return b"GET", b"/search?" + self.q(token), [], b""
        if shape == 1:
            return b"GET", b"/search?" + self.q(token) + b"=1&x=2", [], b""
        if shape == 2:
            body = json.dumps({token: 1, "orders": {token: {"a": 1}}}).encode()
            return b"POST", b"/keys", [(b"content-type", b"application/json")], body
        if shape == 3:
            body = self.q(token) + b"=x&" + self.q(token) + b"&n=1"
            return (
                b"POST",
                b"/keys",
                [(b"content-type", b"application/x-www-form-urlencoded")],
                body,
            )
        if shape == 4:
            name = token.replace(" ", "").replace("@", ".").encode("utf-8")
            name = bytes(c for c in name if 0x21 <= c < 0x7F and c not in b";=,")
            return b"GET", b"/ck", [(b"cookie", name + b"=1; " + name)], b""
        digits = "".join(c for c in token if c.isalnum())[:40] or "x"
        return b"GET", b"/hd", [(f"x-{digits}".lower().encode(), b"1")], b""

    def k_text_plain(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        body = b"umidToken=T5&mobile=" + self.q(self.pick(PHONES))
        return b"POST", b"/beacon", [(b"content-type", b"text/plain;charset=UTF-8")], body

    def k_many_fields(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        count = self.rng.choice([1000, 5000, 6000])
        body = "&".join(f"f{i}={self.word(3)}" for i in range(count)) + "&umidToken=T6"
        headers = [(b"content-type", b"application/x-www-form-urlencoded")]
        return b"POST", b"/many", headers, body.encode()

    def k_odd_request(self) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        method = self.pick(["PATCH", "DELETE", "OPTIONS", "HEAD", "PUT"]).encode()
        headers = [
            (
                b"content-type",
                self.pick(["", "application/json; charset=utf-16", "*/*", "a/b/c"]).encode(),
            ),
            (b"accept", b"text/html"),
            (b"sec-fetch-dest", self.pick(["image", "document", "script", "x" * 300]).encode()),
        ]
        body = b"" if method == b"HEAD" else '\ufeff{"mobile":"13800138000"}'.encode("utf-16")
        return method, b"/odd?mobile=13800138000", headers, body

    KINDS: tuple[tuple[str, int], ...] = (  # drawn by weight
        ("form", 14),
        ("json", 12),
        ("query", 12),
        ("bad_percent", 8),
        ("raw_bytes_url", 6),
        ("weird_url", 8),
        ("long_url", 2),
        ("header_flood", 2),
        ("long_header", 2),
        ("huge_cookie", 2),
        ("bad_utf8_fields", 6),
        ("deep_json", 3),
        ("false_encoding", 6),
        ("multipart", 4),
        ("personal_names", 10),
        ("text_plain", 4),
        ("many_fields", 1),
        ("odd_request", 4),
    )
    COSTLY: tuple[tuple[str, int], ...] = (  # so many per run, whatever the count
        ("bomb", 4),  # (one per coding: gzip, deflate, br, zstd)
        ("prefixed_bomb", 1),
        ("big", BIG_BODIES),
    )

    def http_case(self, number: int, transport: str, kind: str | None = None) -> Case:
        if kind is None:
            names = [name for name, _ in self.KINDS]
            weights = [weight for _, weight in self.KINDS]
            kind = self.rng.choices(names, weights)[0]
        method, target, headers, body = getattr(self, f"k_{kind}")()
        roll = self.rng.random()
        host = API if roll < 0.55 else SHOP if roll < 0.75 else CDN if roll < 0.85 else BEACON
        if transport == "h1" and self.rng.random() < 0.05:
            host = LOOKALIKE  # out of scope: relayed, never logged
        return Case(f"z{number:05d}", kind, transport, host, method, target, headers, body)

    def ws_case(self, number: int) -> Case:
        case_id = f"z{number:05d}"
        shape = self.rng.randrange(6)
        message: bytes | str
        if shape == 0:
            message = json.dumps({"msg": {"mobile": self.pick(PHONES), "umidToken": "T7"}})
        elif shape == 1:
            message = json.dumps({self.token(): {"email": EMAIL}, "n": 1})
        elif shape == 2:
            message = "[" * 50_000 + "]" * 50_000
        elif shape == 3:
            message = self.junk(self.rng.choice([100, 4096, 1 << 20]))
        elif shape == 4:
            message = "mobile=13800138000&umidToken=T8&" + "x" * self.rng.randrange(1000)
        else:
            message = json.dumps({"id_number": profile()["id_number"][0], "t": self.word()})
        host = f"ws-{case_id}.{WS_DOMAIN}"
        return Case(case_id, "ws", "ws", host, b"GET", b"/socket", [], b"", message)

    def cases(self, count: int) -> list[Case]:
        costly = [kind for kind, times in self.COSTLY for _ in range(times)]
        placed = dict(zip(self.rng.sample(range(count), len(costly)), costly, strict=True))
        made = []
        for number in range(count):
            if number in placed:  # over HTTP/1.1: the h2 client sends one stream at a time
                transport = self.pick(["h1", "h1s"])
                made.append(self.http_case(number, transport, placed[number]))
                continue
            transport = self.rng.choices(TRANSPORTS, (65, 8, 17, 10))[0]
            if transport == "ws":
                made.append(self.ws_case(number))
            else:
                made.append(self.http_case(number, transport))
        return made


def generate(seed: int, count: int) -> list[Case]:
    """`count` hostile cases; the same seed gives the same cases."""
    return Generator(seed).cases(count)


# --- the clients ---------------------------------------------------------------------------------


def _tunnel(port: int, host: str, cafile: Path, alpn: list[str]) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply and len(reply) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        if not reply.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"CONNECT refused: {reply[:60]!r}")
        context = ssl.create_default_context(cafile=str(cafile))
        context.set_alpn_protocols(alpn)
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _head(case: Case, absolute: bool) -> bytes:
    target = b"http://" + case.host.encode() + case.path if absolute else case.path
    lines = [case.method + b" " + target + b" HTTP/1.1", b"Host: " + case.host.encode()]
    lines += [name + b": " + value for name, value in case.headers]
    if case.body or case.method in (b"POST", b"PUT"):
        lines.append(b"Content-Length: " + str(len(case.body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


class H1Client:
    """HTTP/1.1 through the proxy, one keep-alive connection per host (as a browser keeps one per
    origin), opened again after an error or when the response closes it (plain: absolute-form
    requests; tls: CONNECT, then TLS)."""

    def __init__(self, port: int, cafile: Path, tls: bool, keep_alive: bool = True) -> None:
        self.port, self.cafile, self.tls, self.keep_alive = port, cafile, tls, keep_alive
        self.socks: dict[str, socket.socket] = {}

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.socks.clear()

    def _drop(self, host: str) -> None:
        sock = self.socks.pop(host, None)
        if sock is not None:
            sock.close()

    def send(self, case: Case) -> Outcome:
        sock = self.socks.get(case.host)
        if sock is None:
            if self.tls:
                sock = _tunnel(self.port, case.host, self.cafile, ["http/1.1"])
            else:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
            self.socks[case.host] = sock
        try:
            sock.sendall(_head(case, absolute=not self.tls))
            if case.body:
                sock.sendall(case.body)
            response = http.client.HTTPResponse(sock, method=case.method.decode())  # type: ignore[arg-type]
            response.begin()
            response.read()
            if response.will_close or not self.keep_alive:
                self._drop(case.host)
            return Outcome(response.status)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._drop(case.host)
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:200])


class LinearHuffman:
    """HPACK's Huffman code (the `hpack` package's tables) in linear time: `hpack`'s own encoder
    shifts one integer as long as the whole value for every byte, so a 240 kB header cost the
    client 8 s of CPU (and the GIL), stalling every other client of the run."""

    def __init__(self, codes: list[int], lengths: list[int]) -> None:
        self.codes, self.lengths = codes, lengths

    def encode(self, data: bytes | None) -> bytes:
        out = bytearray()
        bits = pending = 0
        for byte in data or b"":
            pending = (pending << self.lengths[byte]) | self.codes[byte]
            bits += self.lengths[byte]
            while bits >= 8:
                bits -= 8
                out.append((pending >> bits) & 0xFF)
            pending &= (1 << bits) - 1
        if bits:  # padded with ones to the octet
            out.append(((pending << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xFF)
        return bytes(out)


class H2Client:
    """HTTP/2 inside a CONNECT tunnel (ALPN h2), one stream at a time on one connection per
    host (kept open while the client sends to other hosts), opened again after an error."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.port, self.cafile = port, cafile
        self.sock: ssl.SSLSocket | None = None
        self.conn: object | None = None
        self.host: str | None = None
        self.parked: dict[str, tuple[ssl.SSLSocket, object]] = {}  # the other hosts' connections

    def close(self) -> None:
        self._drop()
        for sock, _ in self.parked.values():
            sock.close()
        self.parked.clear()

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.conn = self.host = None

    def _switch(self, host: str) -> None:
        """Make `host`'s connection the current one (opened if there is none)."""
        if self.sock is not None and self.host is not None:
            self.parked[self.host] = (self.sock, self.conn)
            self.sock = self.conn = self.host = None
        if host in self.parked:
            self.sock, self.conn = self.parked.pop(host)
            self.host = host
        else:
            self._open(host)

    def _open(self, host: str) -> None:
        import h2.config
        import h2.connection

        self.sock = _tunnel(self.port, host, self.cafile, ["h2"])
        if self.sock.selected_alpn_protocol() != "h2":
            raise ConnectionError(f"no h2: {self.sock.selected_alpn_protocol()}")
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        conn = h2.connection.H2Connection(config=config)
        coder = conn.encoder.huffman_coder
        conn.encoder.huffman_coder = LinearHuffman(
            coder.huffman_code_list, coder.huffman_code_list_lengths
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(2**30)
        self.sock.sendall(conn.data_to_send())
        self.conn, self.host = conn, host

    def send(self, case: Case) -> Outcome:
        import h2.events
        import h2.exceptions

        try:
            if self.conn is None or self.host != case.host:
                self._switch(case.host)
            assert self.sock is not None
            conn = self.conn
            assert isinstance(conn, h2.connection.H2Connection)
            stream = conn.get_next_available_stream_id()
            headers = [
                (b":method", case.method),
                (b":scheme", b"https"),
                (b":authority", case.host.encode()),
                (b":path", case.path),
                *[(n.lower(), v) for n, v in case.headers],
            ]
            if case.body:
                headers.append((b"content-length", str(len(case.body)).encode()))
            conn.send_headers(stream, headers, end_stream=not case.body)
            self.sock.sendall(conn.data_to_send())
            body = memoryview(case.body)
            status: int | None = None
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                while body:
                    window = min(
                        conn.local_flow_control_window(stream), conn.max_outbound_frame_size
                    )
                    if window <= 0:
                        break
                    conn.send_data(stream, bytes(body[:window]), end_stream=len(body) <= window)
                    body = body[window:]
                self.sock.sendall(conn.data_to_send())
                data = self.sock.recv(65536)
                if not data:
                    self._drop()
                    return Outcome(status, "connection closed")
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                        status = int(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                        self.sock.sendall(conn.data_to_send())
                        return Outcome(status)
                    elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                        self.sock.sendall(conn.data_to_send())
                        return Outcome(status, f"stream reset {event.error_code}")
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        self._drop()
                        return Outcome(status, f"connection terminated {event.error_code}")
                self.sock.sendall(conn.data_to_send())
            self._drop()
            return Outcome(status, "timed out")
        except (OSError, h2.exceptions.H2Error, ValueError, KeyError) as exc:
            self._drop()
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:200])


def send_ws(port: int, cafile: Path, case: Case, tls: bool) -> Outcome:
    """A WebSocket through the proxy (ws:// as an absolute-form upgrade, wss:// in a CONNECT
    tunnel): the handshake, one message and a close, the upstream's answer if any, its close."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, Request

    sock: socket.socket
    try:
        if tls:
            sock = _tunnel(port, case.host, cafile, ["http/1.1"])
        else:
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except (OSError, ConnectionError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:200])
    with sock:
        ws = WSConnection(ConnectionType.CLIENT)
        target = case.path.decode() if tls else f"http://{case.host}{case.path.decode()}"
        outcome = Outcome()
        try:
            sock.sendall(ws.send(Request(host=case.host, target=target)))
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        outcome.status = 101
                        assert case.message is not None
                        # the close right behind the message: a message the proxy drops (a
                        # block) gets no answer, and the proxy relays frames in order, so a
                        # message it lets through still reaches the upstream before the close
                        sock.sendall(
                            ws.send(Message(data=case.message))
                            + ws.send(CloseConnection(code=1000))
                        )
                    elif isinstance(event, RejectConnection):
                        outcome.status = event.status_code
                        return outcome
                    elif isinstance(event, Message) and outcome.status == 101:
                        outcome.ws_reply = True
                    elif isinstance(event, CloseConnection):
                        return outcome
        except Exception as exc:  # wsproto's own errors have no common base class
            outcome.error = f"{type(exc).__name__}: {exc}"[:200]
        return outcome


def h2_works(port: int, cafile: Path, host: str) -> bool:
    """Whether the proxy speaks HTTP/2 to a client that offers it (ALPN h2)."""
    try:
        with _tunnel(port, host, cafile, ["h2", "http/1.1"]) as sock:
            return sock.selected_alpn_protocol() == "h2"
    except (OSError, ConnectionError):
        return False
