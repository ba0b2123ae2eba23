"""Bounded JSON: hostile nesting and size are refused with a ValueError, never a RecursionError."""

from __future__ import annotations

import json

import pytest

from sidecar.boundedjson import JsonLimitError, loads, nesting_depth


def test_deep_nesting_is_refused_not_recursed() -> None:
    # Past Python's recursion limit (the parser's RecursionError), and below it (parsed, then measured).
    for depth in (1200, 100):
        with pytest.raises(JsonLimitError, match="over 64 levels deep"):
            loads("[" * depth + "]" * depth, max_bytes=10_000)
        with pytest.raises(JsonLimitError, match="over 64 levels deep"):
            loads('{"a":' * depth + "1" + "}" * depth, max_bytes=10_000)


def test_depth_is_measured_on_the_value_level_by_level() -> None:
    assert [nesting_depth(v, 64) for v in (1, "x", [], {}, [1, [2]], {"a": [{"b": {}}], "c": 1})] == [0, 0, 1, 1, 2, 4]
    deep: list[object] = []
    for _ in range(500):
        deep = [deep, [1]]
    assert nesting_depth(deep, 64) == 65  # stops past the limit, whatever lies below


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"note": "' + "[{" * 70 + '"}'
    assert loads(text, max_bytes=1_000) == {"note": "[{" * 70}


def test_depth_at_the_limit_parses() -> None:
    assert loads("[" * 64 + "]" * 64, max_bytes=1_000, max_depth=64) == eval("[" * 64 + "]" * 64)


def test_size_is_checked_in_bytes_and_the_error_does_not_quote_the_input() -> None:
    secret_looking = '{"token": "' + "é" * 60 + '"}'
    with pytest.raises(JsonLimitError) as caught:
        loads(secret_looking, max_bytes=100)
    assert "é" not in str(caught.value) and "token" not in str(caught.value)


def test_not_json_and_not_utf8_are_limit_errors() -> None:
    with pytest.raises(JsonLimitError, match="not JSON"):
        loads(b'{"a": ', max_bytes=100)
    with pytest.raises(JsonLimitError, match="UTF-8"):
        loads(b"\xff\xfe", max_bytes=100)
    assert isinstance(JsonLimitError("x"), ValueError)


def test_a_number_past_pythons_digit_cap_is_a_limit_error_not_a_crash() -> None:
    with pytest.raises(JsonLimitError, match="too long"):
        loads(b'{"n": ' + b"9" * 5000 + b"}", max_bytes=1 << 20)


def test_interned_keys_are_shared_between_documents_and_the_limits_still_hold() -> None:
    # Built at run time, so neither document's keys can be the compiler's interned constants.
    name = "".join(["ticket", "_id"])
    first = loads(json.dumps({name: 1, "payload": {name: [{name: 2}]}}), max_bytes=1_000, intern_keys=True)
    second = loads(json.dumps({name: 3}), max_bytes=1_000, intern_keys=True)
    (key_one,), (key_two,) = first["payload"][name][0].keys(), second.keys()
    assert key_one is key_two, "equal keys of two documents are one string"
    plain_one, plain_two = (loads(json.dumps({name: 1}), max_bytes=100) for _ in range(2))
    assert next(iter(plain_one)) is not next(iter(plain_two)), "without intern_keys, each document has its own"
    with pytest.raises(JsonLimitError, match="nests over"):
        loads("[" * 70 + "]" * 70, max_bytes=1_000, intern_keys=True)


@pytest.mark.parametrize("text", ['{"a": NaN}', '[Infinity]', '{"a": [-Infinity]}', '{"a": 1e400}', "-1e999"])
def test_numbers_json_has_not_are_refused(text: str) -> None:
    """Python's parser takes them (and makes 1e400 inf, written back as Infinity); SQLite's JSON functions and
    every desk call such text malformed, so it must never get as far as being stored or sent."""
    for intern_keys in (False, True):
        with pytest.raises(JsonLimitError, match="not JSON") as caught:
            loads(text, max_bytes=1_000, intern_keys=intern_keys)
        assert "1e" not in str(caught.value)


def test_ordinary_floats_still_parse() -> None:
    assert loads('{"a": 1.5, "b": -2e10, "c": 1e-400}', max_bytes=1_000) == {"a": 1.5, "b": -2e10, "c": 0.0}
