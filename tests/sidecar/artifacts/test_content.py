"""Content checks (issue 15, item 5): types by magic bytes and name, hostile file names, and a size limit
enforced while the bytes stream, whatever size was declared."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import AsyncIterator

import pytest

from sidecar.artifacts.content import (
    MAX_NAME_BYTES,
    SNIFF_BYTES,
    Counted,
    Refused,
    allowed,
    safe_file_name,
    sniff,
)
from sidecar.config_schema import SyncConfig

DEFAULT = SyncConfig().allowed_content_types
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(50)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(50)
GIF = b"GIF89a\x01\x00\x01\x00" + bytes(50)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(50)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(50)
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(50)
PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(50)


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (PNG, "x", "image/png"),
        (JPEG, "x", "image/jpeg"),
        (GIF, "x", "image/gif"),
        (b"GIF87a" + bytes(10), "x", "image/gif"),
        (WEBP, "x", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20), "x.webp", "application/octet-stream"),  # RIFF, not WEBP
        (PDF, "x", "application/pdf"),
        (ZIP, "x", "application/zip"),
        (EMPTY_ZIP, "x", "application/zip"),
        (ELF, "x", "application/octet-stream"),
        (PE, "x", "application/octet-stream"),
        (b"", "empty", "text/plain"),
        (b"2026-11-29 20:00:01 ERROR disk full\n", "server.log", "text/plain"),
        ("Grüße, ✓ done\n".encode(), "x", "text/plain"),
        (b"caf\xc3", "x", "text/plain"),  # a head cut inside a two-byte character is still text
        (b"\xff\xfe\x00a", "x", "application/octet-stream"),  # not UTF-8
        (b"text\x00with a NUL", "x", "application/octet-stream"),
        (b'{"level": "error", "n": [1, 2]}', "noext", "application/json"),  # parses whole
        (b"\xef\xbb\xbf  [1, 2, 3]\n", "x.txt", "application/json"),  # BOM and space before
        (b'{"cut": "in the mid', "dump.json", "application/json"),  # a cut head: the name decides
        (b'{"cut": "in the mid', "dump.txt", "text/plain"),
        (b"{ this is not json }", "notes", "text/plain"),
        (b'"just a string"', "x.json", "text/plain"),
        (b"[" * 200 + b"]" * 200, "x", "text/plain"),  # too deep to accept as JSON
    ],
)
def test_sniff(head: bytes, name: str, expected: str) -> None:
    assert sniff(head, name) == expected


def test_sniff_json_from_a_large_cut_head() -> None:
    doc = json.dumps({"rows": [{"id": i, "text": "é" * 10} for i in range(10_000)]}).encode()
    head = doc[:SNIFF_BYTES]
    assert sniff(head, "export.JSON") == "application/json"
    assert sniff(head, "export") == "text/plain"  # honest: a prefix of JSON is not known to be JSON
    assert sniff(doc[:1000], "x") == "text/plain"


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (PNG, "screenshot.png"),
        (PNG, "SCREENSHOT.PNG"),
        (PNG, "screenshot"),
        (JPEG, "photo.jpeg"),
        (JPEG, "photo.JPG"),
        (GIF, "anim.gif"),
        (WEBP, "pic.webp"),
        (PDF, "invoice.pdf"),
        (ZIP, "logs.zip"),
        (ZIP, "report.docx"),
        (EMPTY_ZIP, "nothing.zip"),
        (b"plain words", "notes.txt"),
        (b"plain words", "trace.log"),
        (b"plain words", "readme"),
        (b'{"a": 1}', "config.json"),
        (b'{"a": 1}', "events.log"),
        (b"42", "answer.json"),
        (b"a,b\n1,2\n", "table.csv"),
    ],
)
def test_allowed_files(head: bytes, name: str) -> None:
    assert allowed(sniff(head, name), name, DEFAULT) is None


@pytest.mark.parametrize(
    ("head", "name", "reason"),
    [
        (ZIP, "report.pdf", "type_mismatch"),  # a zip dressed as a PDF
        (ELF, "photo.png", "type_mismatch"),  # an executable dressed as a picture
        (PE, "photo.png", "type_mismatch"),
        (PDF, "image.jpg", "type_mismatch"),
        (PNG, "notes.txt", "type_mismatch"),
        (b"plain words", "photo.png", "type_mismatch"),
        (PDF, "archive.zip", "type_mismatch"),
        (PNG, "doc.docx", "type_mismatch"),
        (ELF, "tool", "type_not_allowed"),
        (PE, "setup.bin", "type_not_allowed"),
        (b"echo pwned", "run.sh", "type_not_allowed"),  # text, but a name a machine would run
        (b"@echo off", "install.BAT", "type_not_allowed"),
        (ZIP, "app.jar", "type_not_allowed"),
        (b"<html><script>", "page.html", "type_not_allowed"),
        (b"<svg onload=alert(1)>", "logo.svg", "type_not_allowed"),
        (PE, "invoice.pdf.exe", "type_not_allowed"),
        (PE, "evil.exe. . .", "type_not_allowed"),  # Windows opens this as evil.exe
        # Judged by the name the desk will show: hidden characters and paths do not hide an extension.
        (b"echo pwned", "run.sh\u200b", "type_not_allowed"),
        (b"echo pwned", "notes.txt/run.sh", "type_not_allowed"),
        (PE, "photo.png\u202e", "type_mismatch"),
        (PE, "photo.png\n", "type_mismatch"),
    ],
)
def test_refused_files(head: bytes, name: str, reason: str) -> None:
    assert allowed(sniff(head, name), name, DEFAULT) == reason


def test_patterns() -> None:
    assert allowed("image/webp", "x.webp", ["image/*"]) is None
    assert allowed("image/png", "x.png", [" Image/* "]) is None
    assert allowed("application/pdf", "x.pdf", ["image/*"]) == "type_not_allowed"
    assert allowed("application/pdf", "x.pdf", ["application/pdf"]) is None
    assert allowed("text/plain; charset=utf-8", "x.txt", ["text/plain"]) is None
    assert allowed("application/octet-stream", "blob.bin", ["*/*"]) is None
    assert allowed("application/octet-stream", "blob.bin", ["*"]) is None
    assert allowed("image/png", "x.png", []) == "type_not_allowed"
    assert allowed("application/zip", "x.zip", ["application/*"]) is None
    assert allowed("application/zip", "x.zip", ["application/zi"]) == "type_not_allowed"
    # Allowing everything does not make a misnamed or executable file acceptable.
    assert allowed("application/zip", "report.pdf", ["*/*"]) == "type_mismatch"
    assert allowed("application/octet-stream", "setup.exe", ["*/*"]) == "type_not_allowed"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\System32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\me\\Desktop\\crash log.txt", "crash log.txt"),
        ("dir/sub/", "attachment"),
        ("..", "attachment"),
        ("...", "attachment"),
        ("a/..", "attachment"),
        ("", "attachment"),
        ("   ", "attachment"),
        ("\n\r\t", "attachment"),
        ("\u202e\u200b", "attachment"),
        ("line one\nline two.txt", "line one line two.txt"),
        ("evil\r\nX-Injected: 1.txt", "evil X-Injected: 1.txt"),
        ("tab\tand  many   spaces .txt", "tab and many spaces .txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("bell\x07and\x1bescape.txt", "bellandescape.txt"),
        ("c1\x85next\x9b.txt", "c1 next.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # shown as "invoiceexe.pdf" with the override
        ("\u2066isolate\u2069d.png", "isolated.png"),
        ("zero\u200bwidth\ufeff.txt", "zerowidth.txt"),
        ("para\u2029graph.txt", "para graph.txt"),
        ("lone\ud800surrogate.txt", "lonesurrogate.txt"),
        ("cafe\u0301.txt", "café.txt"),  # NFC
        ("  padded.txt  ", "padded.txt"),
        ("evil.exe. . .", "evil.exe"),
        (".bashrc", ".bashrc"),
        ("日本語のファイル.pdf", "日本語のファイル.pdf"),
    ],
)
def test_safe_file_name(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected
    assert safe_file_name(expected) == expected  # stable: normalising twice changes nothing


def _checked(result: str) -> str:
    assert result
    assert len(result.encode()) <= MAX_NAME_BYTES
    assert not any(c in result for c in "/\\")
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in result)
    return result


@pytest.mark.parametrize(
    ("name", "ending"),
    [
        ("a" * 1000 + ".pdf", ".pdf"),
        ("é" * 1000 + ".txt", ".txt"),  # two bytes a character: never cut inside one
        ("😀" * 300 + ".png", ".png"),
        ("x" * 1000, "x"),
        ("name." + "e" * 1000, "e"),  # an "extension" that long is not one
        ("a" * 253 + " . .pdf", ".pdf"),
        ("dir/" * 300 + "b" * 300 + ".json", ".json"),
    ],
)
def test_long_names_are_cut_keeping_the_extension(name: str, ending: str) -> None:
    result = _checked(safe_file_name(name))
    assert result.endswith(ending)
    assert len(result.encode()) > MAX_NAME_BYTES - 4  # cut near the limit, not emptied
    assert safe_file_name(result) == result


def test_a_name_cut_to_nothing_keeps_its_extension() -> None:
    assert _checked(safe_file_name("." * 300 + "pdf")) == "attachment.pdf"
    assert _checked(safe_file_name("\u202e" * 10 + "." * 400 + ".pdf")) == "attachment.pdf"


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def test_counted_passes_a_stream_through_and_hashes_it() -> None:
    data = bytes(range(256)) * 1000
    counted = Counted(pieces(data, 1000), len(data))
    assert b"".join([p async for p in counted]) == data
    assert (counted.complete, counted.size, counted.sha256) == (True, len(data), hashlib.sha256(data).hexdigest())
    assert counted.head == data[:SNIFF_BYTES]
    counted.verify(len(data), hashlib.sha256(data).hexdigest().upper())


async def test_counted_refuses_past_the_limit_mid_stream() -> None:
    """An endless download (its declared size a lie) stops as soon as it passes the limit, and is closed."""
    closed: list[bool] = []
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                sent.append(1000)
                yield b"SECRET-BYTES" * 83 + b"...."
        finally:
            closed.append(True)

    counted = Counted(endless(), 10_500)
    got: list[bytes] = []
    with pytest.raises(Refused) as info:
        async for piece in counted:
            got.append(piece)
    assert info.value.reason == "too_large"
    assert "SECRET" not in str(info.value)
    assert sum(map(len, got)) == counted.size == 10_000  # the piece that passed the limit was not passed on
    assert len(sent) == 11  # nothing read after it
    assert closed == [True] and not counted.complete


async def test_counted_limit_is_inclusive() -> None:
    counted = Counted(pieces(b"x" * 4096, 1024), 4096)
    assert len(b"".join([p async for p in counted])) == 4096
    with pytest.raises(Refused, match="too_large"):
        async for _ in Counted(pieces(b"x" * 4097, 4097), 4096):
            pass


async def test_counted_verify_names_each_mismatch() -> None:
    data = b"attachment body"
    digest = hashlib.sha256(data).hexdigest()
    partial = Counted(pieces(data, 4), 100)
    await anext(partial)
    with pytest.raises(Refused) as info:
        partial.verify(len(data), digest)
    assert info.value.reason == "incomplete"
    await partial.aclose()
    counted = Counted(pieces(data, 4), 100)
    async for _ in counted:
        pass
    with pytest.raises(Refused) as info:
        counted.verify(len(data) + 1, digest)
    assert info.value.reason == "size_mismatch"
    with pytest.raises(Refused) as info:
        counted.verify(len(data), hashlib.sha256(b"other").hexdigest())
    assert info.value.reason == "hash_mismatch"
    assert "attachment body" not in str(info.value)


async def test_closing_counted_before_reading_closes_its_source() -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[bytes]:
        try:
            yield b"x"
        finally:
            closed.append(True)

    inner = source()
    await anext(inner)  # a source already started (an open HTTP stream)
    counted = Counted(inner, 10)
    await counted.aclose()
    assert closed == [True]
