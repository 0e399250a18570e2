"""Findings: what was found, where and how, with a masked preview and a keyed fingerprint.

The finding's fields are a contract (README, *What gets logged*)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from shopguard.engine.memory import remembered

CATEGORIES = (
    "phone",
    "email",
    "name",
    "address",
    "postcode",
    "id_number",
    "payment_card",
    "geo",
    "device_id",
    "tracking_id",
    "ip_address",
)
DETECTORS = ("profile", "pattern", "tracker")


@dataclass(frozen=True)
class Finding:
    category: str
    location: str
    detector: str
    transform: str
    confidence: float
    preview: str
    fingerprint: str
    linked_from: str | None = None  # tracking IDs seen first elsewhere: "cookie:cna@host"
    value: str | None = None  # the raw value: only kept when the user asked (`log.values: raw`)
    name: str | None = None  # the field's name, when that name is the personal data (not logged)

    def to_dict(self) -> dict[str, Any]:
        """The finding as logged (a log line has many: built directly, not by `asdict`)."""
        data: dict[str, Any] = {
            "category": self.category,
            "location": self.location,
            "detector": self.detector,
            "transform": self.transform,
            "confidence": self.confidence,
            "preview": self.preview,
            "fingerprint": self.fingerprint,
        }
        if self.linked_from is not None:
            data["linked_from"] = self.linked_from
        if self.value is not None:
            data["value"] = self.value
        return data


@remembered(2048)  # the same values recur flow after flow
def fingerprint(secret: bytes, category: str, normalised: str) -> str:
    """Keyed BLAKE2: the same value is recognisable across lines without being readable."""
    digest = hashlib.blake2b(
        f"{category}\x00{normalised}".encode("utf-8", "surrogatepass"),
        key=secret[:64],
        digest_size=10,
    )
    return digest.hexdigest()


def mask(category: str, value: str) -> str:
    """A preview that shows the shape of a value but not the value: `138****8000`."""
    value = value.strip()
    if not value:
        return ""
    if category == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if category in ("phone", "id_number", "payment_card", "device_id") or value.isdigit():
        digits = value.replace(" ", "").replace("-", "")
        if len(digits) >= 11:
            return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"
        if len(digits) >= 7:
            return f"{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"
        return "*" * len(digits)
    if category in ("name", "address"):
        keep = 1 if len(value) <= 8 else 2
        return value[:keep] + "*" * min(len(value) - keep, 12)
    if category == "geo":
        return "".join("*" if ch.isdigit() else ch for ch in value)[:40]
    if len(value) > 8:
        return f"{value[:3]}***{value[-2:]}"
    return value[:1] + "***"
