"""The per-flow state the addons share, kept in `flow.metadata` as JSON values only.

mitmproxy deep-copies `flow.metadata` and serialises it (tnetstring) when flows are saved
(`-w`, mitmweb's save) and replayed, so it holds plain dicts, lists, strings and numbers: the
findings and actions as the log writes them. Typed engine objects stay out of it.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

META = "shopguard"  # the key of the state in flow.metadata


class MessageState(TypedDict):
    """The last WebSocket message's summary (the recorder writes it as a `ws_message` line)."""

    direction: str  # sent | received
    inspection: str
    findings: list[dict[str, Any]]
    actions: list[dict[str, Any]]


class FlowState(TypedDict):
    """What a flow's log line says besides its request line and status: see the README's table
    of the `flow` line."""

    site: str
    host: str
    third_party: bool
    mode: str  # observe | enforce
    inspection: str  # full | partial | none
    findings: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    started: float  # time.time() at the request headers
    run: str  # the proxy process that tagged the flow (a saved flow read back is not its own)
    inspection_notes: NotRequired[list[str]]
    masked_names: NotRequired[dict[str, str]]  # names that are personal data -> as logged
    via: NotRequired[str]  # ad pixels: the site whose page fired the request
    addon_error: NotRequired[str]
    recorded: NotRequired[bool]
    ws: NotRequired[MessageState]


def state_of(flow: Any) -> FlowState | None:
    """The flow's state, if shopguard handles the flow."""
    metadata = getattr(flow, "metadata", None)
    return metadata.get(META) if metadata is not None else None
