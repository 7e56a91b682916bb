"""Credentials never leave the process: `rtsp://user:secret@cam` prints as `rtsp://user:***@cam`.

Camera and stream URIs carry passwords (RTSP, MJPEG over http). Every log line,
error message, stats field and report that names a source goes through here.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from segedge.runtime.uri import SCHEME

_USERINFO = re.compile(rf"(?P<scheme>{SCHEME}://)(?P<user>[^/@\s:]*):(?P<pw>[^/\s]*)@")
_SECRET_QUERY = ("password", "passwd", "pwd", "pass", "token", "access_token", "key", "apikey",
                 "api_key", "secret", "auth", "signature", "sig")
_QUERY = re.compile(r"\?(?P<q>[^\s#]*)")


def _query(match: re.Match[str]) -> str:
    pairs = parse_qsl(match.group("q"), keep_blank_values=True)
    if not any(k.lower() in _SECRET_QUERY for k, _ in pairs):
        return match.group(0)
    clean = [(k, "***" if k.lower() in _SECRET_QUERY else v) for k, v in pairs]
    return "?" + urlencode(clean, safe="*/:")


def redact(text: str) -> str:
    """Mask passwords in URLs (userinfo and well-known secret query parameters) in any text."""
    if "://" not in text:
        return text
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
    return _QUERY.sub(_query, out) if "?" in out else out
