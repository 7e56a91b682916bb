"""The one rule for a URI's scheme (``rtsp://``, ``display://``, ``triton+grpc://``).

Sources, sinks, served backends and credential redaction all decide by the
scheme before ``://`` (RFC 3986: a letter, then letters, digits, ``+ . -``).
A Windows path (``C:\\clip.mp4``) or a plain path has none.
"""

from __future__ import annotations

import re

SCHEME = r"[a-zA-Z][a-zA-Z0-9+.-]*"  # RFC 3986 section 3.1; for patterns that embed it
_SCHEME = re.compile(rf"^({SCHEME})://")


def scheme(uri: str) -> str | None:
    """The lower-cased scheme of ``uri`` (``'rtsp'``), or None when it is not a URI."""
    match = _SCHEME.match(uri) if isinstance(uri, str) else None
    return match.group(1).lower() if match else None
