"""URLs as the sidecar shows them (health, logs, errors): without credentials or tokens.

Hosted RPC endpoints carry API keys in the userinfo (`https://user:key@host`), in the query
(`?apikey=...`) or as a path segment (`https://host/v2/<key>`). What is shown keeps the scheme,
host, port and path, and drops the rest; a path segment that looks like a token is masked.
"""

from __future__ import annotations

import re

MASK = "***"
# A path segment of 16+ URL-safe characters with a digit in it: an API key or access token, not a
# route name such as /websocket or /api.
_TOKEN_SEGMENT = re.compile(r"^(?=[^/]*\d)[A-Za-z0-9_\-.~]{16,}$")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def public_url(url: str) -> str:
    """`https://user:pass@host:8443/path?apikey=k#f` -> `https://host:8443/path`."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    path = "/".join(MASK if _TOKEN_SEGMENT.match(segment) else segment for segment in path.split("/"))
    return f"{scheme}{sep}{host}{slash}{path}"


def scrub_urls(text: str) -> str:
    """Every URL inside free text (an error message, a problem) replaced by its public form."""

    def public(match: re.Match[str]) -> str:
        url = match.group(0)
        bare = url.rstrip(".,;:)]}")  # sentence punctuation after a URL is not part of it
        return public_url(bare) + url[len(bare) :]

    return _URL_IN_TEXT.sub(public, text)
