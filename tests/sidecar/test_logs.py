"""Log hygiene: secrets and Authorization values never reach a log line, whatever carries them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sidecar.observe.logs import Redactor, setup_logging

SECRET = "s3cr3t-api-token-value"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging("debug", "json", [SECRET], stream=stream)
    yield stream
    setup_logging("warning", "text", [], stream=io.StringIO())


def test_secret_is_redacted_from_message_extras_and_tracebacks(captured: io.StringIO) -> None:
    log = logging.getLogger("test.redaction")
    log.info("calling desk with %s", SECRET, extra={"header": f"Basic {SECRET}"})
    try:
        raise RuntimeError(f"desk answered 401 for token {SECRET}")
    except RuntimeError:
        log.exception("desk call failed")
    log.warning("raw header", extra={"h": "Authorization: Bearer abc.def-ghi"})
    text = captured.getvalue()
    assert SECRET not in text
    assert "abc.def-ghi" not in text
    lines = [json.loads(line) for line in text.strip().splitlines()]
    assert lines[0]["msg"] == "calling desk with <redacted>"
    assert lines[0]["header"] == "Basic <redacted>"
    assert "RuntimeError" in lines[1]["error"]
    assert lines[2]["h"] == "Authorization: <redacted>"


@pytest.mark.parametrize(
    "text",
    ["Authorization: Basic dXNlcjpwYXNz", "'authorization': 'Token 0123456789abcdef'", "authorization=Bearer xyz.123"],
)
def test_authorization_shapes_are_masked(text: str) -> None:
    out = Redactor()(text)
    assert "<redacted>" in out
    assert not any(part in out for part in ("dXNlcjpwYXNz", "0123456789abcdef", "xyz.123"))


def test_text_format_is_one_line_per_event() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", [], stream=stream)
    logging.getLogger("t").info("hello", extra={"height": 5})
    setup_logging("warning", "text", [], stream=io.StringIO())
    line = stream.getvalue().strip()
    assert line.endswith("INFO    t: hello height=5")
