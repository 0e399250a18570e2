"""Signing of calls to Alibaba's mtop API gateway (Taobao, Tmall, 1688) after an edit.

The gateway (`h5api.m.taobao.com/h5/<api>/<version>/?…&t&sign&appKey&data=<JSON>`) checks
`sign = md5(token&t&appKey&data)`, the token being the first part of the `_m_h5_tk` cookie
(public client code). An edit of `data` needs a new signature, or must be undone.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from shopguard.engine.editor import Editor, Fields
from shopguard.engine.location import top

NO_TOKEN = "a signed mtop call without the _m_h5_tk token cannot be re-signed"


def mtop_sign(token: str, t: str, app_key: str, data: str) -> str:
    """The mtop gateway's signature: md5 of `token&t&appKey&data`."""
    return hashlib.md5(f"{token}&{t}&{app_key}&{data}".encode()).hexdigest()


class Resigned(NamedTuple):
    """What became of a signed call whose `data` was edited: `field` is where `data` is
    (`query:data` or `body.form:data`); `signed` False means the edits were undone."""

    field: str
    signed: bool


def resign(editor: Editor) -> Resigned | None:
    """Sign `editor`'s request again if a rule edited its mtop `data`; without the token, put
    `data` back as it came. None when the request is no signed call or `data` is unchanged."""
    editor.write_back()
    query = editor.query
    sign, t, app_key = query.get("sign"), query.get("t"), query.get("appKey")
    if sign is None or t is None or app_key is None or "/h5/" not in editor.path:
        return None
    pairs: Fields
    if "data" in query:
        where, pairs = "query", query
    elif editor.form_read and "data" in editor.form:
        where, pairs = "body.form", editor.form
    else:
        return None  # (an unread body was not edited)
    data, original = pairs.get("data"), pairs.original("data")
    if data == original or data is None or original is None:
        return None
    token = editor.cookies.get("_m_h5_tk")
    token = token.split("_", 1)[0] if token else ""
    if not token:
        pairs.restore("data")  # leave the call as it was
        editor.nested.pop((where, "data"), None)
        return Resigned(top(where, "data"), False)
    query.set("sign", mtop_sign(token, t, app_key, data))
    return Resigned(top(where, "data"), True)
