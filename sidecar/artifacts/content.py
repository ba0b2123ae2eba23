"""What an attachment may be: size counted while it streams, type judged by its bytes and its name.

Declared sizes and content types come from whoever sent the file and are never trusted: `Counted`
stops a stream the moment it passes the limit, `sniff` names the type from magic bytes, and `allowed`
refuses a type the operator did not allow or a name whose extension claims another kind of file.
Refusal reasons are short fixed words (audited, shown in the desk note); they never quote content.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from sidecar import boundedjson
from sidecar.errors import SidecarError

SNIFF_BYTES = 64 * 1024  # how much of a file's head `sniff` looks at (and `Counted.head` keeps)
MAX_NAME_BYTES = 255  # what every common filesystem, Jira and Waldur accept
MAX_EXTENSION_CHARS = 16
FALLBACK_NAME = "attachment"
OCTET_STREAM = "application/octet-stream"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
)

_TEXT = frozenset({"text/plain", "application/json"})
_ZIP = frozenset({"application/zip"})
# Extensions that name a kind of file: content of any other type under such a name is a mismatch.
# Office and other zip-container formats are zips by their bytes. Unlisted extensions claim nothing.
_FAMILIES: dict[str, frozenset[str]] = {
    "png": frozenset({"image/png"}),
    "jpg": frozenset({"image/jpeg"}),
    "jpeg": frozenset({"image/jpeg"}),
    "jpe": frozenset({"image/jpeg"}),
    "jfif": frozenset({"image/jpeg"}),
    "gif": frozenset({"image/gif"}),
    "webp": frozenset({"image/webp"}),
    "pdf": frozenset({"application/pdf"}),
    **dict.fromkeys(("zip", "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub"), _ZIP),
    **dict.fromkeys(("json", "txt", "text", "log", "csv", "tsv", "md", "yaml", "yml", "ini", "conf", "cfg"), _TEXT),
}
# Names a desk user's machine would run or a browser would render as active content: no content check
# makes them safe to hand on, so they are refused whatever the bytes and the allowed types.
_PROGRAMS = ("exe", "com", "scr", "pif", "msi", "msp", "dll", "cpl", "lnk", "reg", "jar", "apk", "app")
_SCRIPTS = ("bat", "cmd", "ps1", "psm1", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "sh", "bash", "zsh", "command")
_WEB = ("html", "htm", "xhtml", "shtml", "mht", "mhtml", "svg", "svgz", "xml")
ACTIVE_EXTENSIONS = frozenset(_PROGRAMS + _SCRIPTS + _WEB)

_WHITESPACE = re.compile(r"\s+")
_TRAILING = " ."  # Windows drops trailing dots and spaces: "a.exe." would open as "a.exe"


class Refused(SidecarError):
    """An attachment is withheld. `reason` is one of a few fixed words; the message names no content."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _utf8_text(head: bytes) -> str | None:
    """The head as text, or None when it is not UTF-8 without NUL bytes. A multi-byte character cut
    by the end of the head is fine: the head is often a prefix of the file."""
    if b"\x00" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def _extension(file_name: str) -> str:
    """The extension of the name the desk will show (hidden characters and paths gone), lowercase."""
    stem, dot, ext = safe_file_name(file_name).rpartition(".")
    return ext.lower() if dot and stem else ""


def sniff(head: bytes, file_name: str) -> str:
    """The content type of a file from the first bytes (up to SNIFF_BYTES) of its content.

    JSON: text starting with `{` or `[` that either parses whole (the head is the whole file) or, when it
    does not (a head cut mid-document), carries a .json name. Other UTF-8 text without NULs is text/plain."""
    head = head[:SNIFF_BYTES]
    for magic, content_type in _MAGIC:
        if head.startswith(magic):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = _utf8_text(head)
    if text is None:
        return OCTET_STREAM
    body = text.lstrip("\ufeff \t\r\n")
    if body[:1] in ("{", "[") and (_extension(file_name) == "json" or _parses(head)):
        return "application/json"
    return "text/plain"


def _parses(head: bytes) -> bool:
    try:
        boundedjson.loads(head.removeprefix(codecs.BOM_UTF8), max_bytes=len(head))
    except boundedjson.JsonLimitError:
        return False
    return True


def _matches(content_type: str, pattern: str) -> bool:
    pattern = pattern.strip().lower()
    if pattern in ("*", "*/*"):
        return True
    if pattern.endswith("/*"):
        return content_type.split("/", 1)[0] == pattern[:-2]
    return content_type == pattern


def allowed(content_type: str, file_name: str, patterns: Sequence[str]) -> str | None:
    """None when a file of this (sniffed) type and name may travel, else the refusal reason:
    "type_not_allowed" (no pattern such as "image/*" matches, or an executable/active name) or
    "type_mismatch" (the name's extension claims another kind of file than the bytes are)."""
    content_type = content_type.split(";", 1)[0].strip().lower()
    ext = _extension(file_name)
    if ext in ACTIVE_EXTENSIONS:
        return "type_not_allowed"
    family = _FAMILIES.get(ext)
    if family is not None and content_type not in family:
        return "type_mismatch"
    if not any(_matches(content_type, p) for p in patterns):
        return "type_not_allowed"
    return None


def _clean_char(char: str) -> str:
    if char.isspace():  # tabs, newlines, U+2028 and friends become a plain space
        return " "
    if unicodedata.category(char) in ("Cc", "Cf", "Cs"):  # controls, bidi overrides, zero-width marks, surrogates
        return ""
    return char


def _cut(text: str, budget: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits `budget` bytes (never half a character)."""
    return text.encode()[:budget].decode("utf-8", errors="ignore")


def safe_file_name(name: str) -> str:
    """A file name fit to hand to a desk: its last path component, printable, one line, no bidi tricks,
    no trailing dots or spaces, at most MAX_NAME_BYTES of UTF-8 with its extension kept; never empty."""
    text = "".join(_clean_char(c) for c in unicodedata.normalize("NFC", name))
    text = re.split(r"[/\\]", text)[-1]
    text = _WHITESPACE.sub(" ", text).strip().rstrip(_TRAILING)
    if not text.strip("."):
        return FALLBACK_NAME
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXTENSION_CHARS or " " in ext:
        stem, ext = text, ""
    suffix = f".{ext}" if ext else ""
    if len(text.encode()) > MAX_NAME_BYTES:
        stem = _cut(stem, MAX_NAME_BYTES - len(suffix.encode())).rstrip(_TRAILING)
        text = f"{stem}{suffix}" if stem.strip(".") else f"{FALLBACK_NAME}{suffix}"
    return text


class Counted:
    """Passes an async byte stream through, counting and hashing it, and raises Refused("too_large")
    before yielding the piece that would pass `max_bytes`: a declared size is never what is enforced.

    `head` keeps the first SNIFF_BYTES for `sniff`; `size` and `sha256` are final once `complete` is True."""

    def __init__(self, source: AsyncIterator[bytes], max_bytes: int) -> None:
        self._source = source
        self.max_bytes = max_bytes
        self.size = 0
        self.complete = False
        self._hash = hashlib.sha256()
        self._head = bytearray()
        self._stream = self._pass()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    def __aiter__(self) -> Counted:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._stream)

    async def aclose(self) -> None:
        await self._stream.aclose()
        await _close(self._source)  # also when iteration never started, so the generator's finally never ran

    async def _pass(self) -> AsyncGenerator[bytes, None]:
        try:
            async for piece in self._source:
                if self.size + len(piece) > self.max_bytes:
                    raise Refused("too_large", f"over the limit of {self.max_bytes} bytes")
                self.size += len(piece)
                self._hash.update(piece)
                if len(self._head) < SNIFF_BYTES:
                    self._head += piece[: SNIFF_BYTES - len(self._head)]
                yield piece
            self.complete = True
        finally:
            await _close(self._source)  # stop a refused download at once rather than when it is collected

    def verify(self, size: int, sha256: str) -> None:
        """Check a complete stream against a declared size and sha256 (hex): Refused("size_mismatch" /
        "hash_mismatch") otherwise."""
        if not self.complete:
            raise Refused("incomplete", "the stream was not read to its end")
        if self.size != size:
            raise Refused("size_mismatch", f"{self.size} bytes, {size} declared")
        if self.sha256 != sha256.lower():
            raise Refused("hash_mismatch", f"{self.size} bytes hash otherwise than declared")


async def _close(source: AsyncIterator[bytes]) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()
