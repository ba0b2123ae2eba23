"""A fuzz of the webhook port against its own OpenAPI document (docs/webhooks.openapi.yaml).

The real app runs in-process on loopback (no node: the chain URL is unreachable, as in
test_webhooks.py); Hypothesis, in a worker thread, writes raw HTTP/1.1 to it over sockets, so the
framing itself can be hostile (chunked, lying Content-Length, Content-Encoding, Expect) as well as
the methods, paths, headers and bodies: documented deliveries drawn from the document's schemas,
signed with the real secrets (so they reach the parser), then one aspect (or all) mangled; a
burst of signed deliveries then meets the writer's back-pressure. Every answer must be one the
document declares for that operation (validated with openapi-core); no 5xx but the documented
503s; no 200 without a valid signature, or for a timestamp outside the rules, or for a replay; the
server logs no error; and what the fuzz leaves behind (delivery and audit rows, database pages,
RSS) is bounded by what it was told had been accepted. Budget: fixed and derandomized.

What the fuzz found (non-finite timestamps, tracebacks after uvicorn's own 400) is held by the
explicit tests below as well as by the draws.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import gzip
import hashlib
import hmac
import itertools
import json
import logging
import math
import re
import socket
import sqlite3
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from starlette.routing import Route

from devnet.node_config import free_port
from sidecar.config import KEYS_BY_PATH
from sidecar.config_schema import WebhookConfig
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics, Service, WebhookOutcome
from sidecar.secrets import SECRET_SPECS
from sidecar.store.db import Store
from sidecar.web.deadlines import TIMEOUT_BODY
from sidecar.web.rejections import SUMMARY_INTERVAL
from sidecar.web.server import build_web_app
from sidecar.web.webhooks import STATUS, WebhookReceiver
from tests.sidecar.harness import app_flags, running_app

ROOT = Path(__file__).resolve().parents[3]
DOC = yaml.safe_load((ROOT / "docs" / "webhooks.openapi.yaml").read_text())
API = OpenAPI.from_dict(DOC)  # validates the document as OpenAPI 3.0 on load
PREFIX = "/webhooks"  # the document's server path; the app runs with the default webhook.path_prefix
SECRETS: dict[str, str] = {"jira": "fuzz-jira-hook-secret", "waldur": "fuzz-waldur-hook-secret"}
ENV = {
    "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": SECRETS["jira"],
    "VIRTENGINE_SERVICEDESK_WALDUR_WEBHOOK_SECRET": SECRETS["waldur"],
}
OWN_ACCOUNT = "sidecar-own-account"
MAX_BODY = 16_384
MAX_AGE = 3600
FRESH = ("accepted", "stale", "echo")  # a 200 that recorded a delivery (a duplicate records nothing)
REJECTED: tuple[WebhookOutcome, ...] = (
    "malformed", "bad_signature", "forbidden_source", "too_large", "rate_limited", "overloaded"
)
EXAMPLES = 360  # per desk, shared out over MANGLE; the module stays well under a minute on a loaded 2-core machine
TIMEOUT = 20.0  # seconds a single answer may take before the fuzz calls the server hung


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, served path) -> the document's operation."""
    return {
        (method.upper(), PREFIX + path): op
        for path, item in DOC["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    }


OPERATIONS = operations()
DECLARED = {key: {int(code) for code in op["responses"]} for key, op in OPERATIONS.items()}
SERVED_METHODS = {path: {m for m, p in OPERATIONS if p == path} for _, path in OPERATIONS}


# -- the document's schemas as Hypothesis strategies -------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """A timestamp relative to the moment of sending (derandomized draws cannot hold a wall-clock time)."""

    offset: float  # seconds; negative is in the past
    style: str  # "ms" (Jira's epoch milliseconds) or "iso" (Waldur's created)

    def render(self, now: float) -> Any:
        at = now + self.offset
        if self.style == "ms":
            return int(at * 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at))


STAMPS = st.sampled_from([-5.0, -60.0, -(MAX_AGE + 120.0), 30.0, 3 * 3600.0, -400 * 86400.0, -5.0, -1.0])
# Numbers Python's JSON reads and writes (NaN and Infinity too) that no clock reading is.
# JSON numbers (to Python's parser) that are no time at all (test_a_signed_body_stamped_with_no_time_is_refused).
NO_TIME: list[float] = [math.nan, math.inf, -math.inf]
ODD_NUMBERS = st.sampled_from([*NO_TIME, -0.0, 2**64, -(2**63), 1e308, 0, 1e300])
ODD_TIMES = st.sampled_from(["", "nan", "0001-01-01T00:00:00", "9999-12-31T23:59:59", "+275760-09-13T00:00:00Z",
                             "2026-13-45T99:99:99", "1970-01-01T00:00:00-23:59", "2026-01-01T00:00:00+99:00"])
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=24)
)
ANY_JSON = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)


def schema_strategy(schema: dict[str, Any], name: str = "", *, wild: bool = True) -> st.SearchStrategy[Any]:
    """Values of the document's schema (the subset it uses). `wild`: sometimes off-schema at any level and
    optional properties sometimes left out; otherwise on-schema with every property present."""
    if "$ref" in schema:
        target: Any = DOC
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_strategy(target, name, wild=wild)
    kind = schema.get("type")
    on: st.SearchStrategy[Any]
    if name == "timestamp" and kind == "integer":
        on = STAMPS.map(lambda offset: Stamp(offset, "ms"))
        if wild:
            on = on | ODD_NUMBERS
    elif schema.get("format") == "date-time":
        on = STAMPS.map(lambda offset: Stamp(offset, "iso"))
        if wild:
            on = on | ODD_TIMES | ODD_NUMBERS
    elif name == "accountId":
        on = st.sampled_from(["5b10ac8d82e05b22cc7d4ef5", OWN_ACCOUNT]) | st.text(max_size=30)
    elif kind == "object":
        props = {key: schema_strategy(sub, key, wild=wild) for key, sub in schema.get("properties", {}).items()}
        required = set(schema.get("required", ())) if wild else set(props)
        on = st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                   optional={k: v for k, v in props.items() if k not in required})
    elif kind == "string" and "example" in schema:
        on = st.just(schema["example"]) | st.text(min_size=schema.get("minLength", 0), max_size=40)
    elif kind == "string":
        on = st.uuids().map(lambda u: u.hex) | st.text(min_size=schema.get("minLength", 0), max_size=40)
    elif kind == "integer":
        on = st.integers(min_value=schema.get("minimum", -(2**63)), max_value=2**63)
    else:
        on = ANY_JSON
    return st.one_of(on, on, on, on, ANY_JSON) if wild else on


def render(value: Any, now: float) -> Any:
    if isinstance(value, Stamp):
        return value.render(now)
    if isinstance(value, dict):
        return {k: render(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, now) for v in value]
    return value


def body_schema(path: str, media: str) -> dict[str, Any]:
    return dict(DOC["paths"][path]["post"]["requestBody"]["content"][media]["schema"])


# -- a request, drawn -------------------------------------------------------------------------------


@dataclass
class Case:
    """One raw request. `body` is built at send time from `doc` (timestamps relative to now)."""

    method: str
    target: str
    desk: str | None  # the receiver the path names, when it names one
    doc: Any  # a JSON-able document, or None for a raw body
    raw: bytes  # the body when `doc` is None; appended garbage otherwise
    encode: str  # how `doc` becomes bytes
    sign: str  # how the request authenticates
    framing: str  # how the body is framed on the wire
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "application/json"
    source: int = 1  # the last octet of the 127.0.0.x address the request comes from
    chunks: int = 3
    repeat: bool = False  # sent again at once (under a new delivery id when it has one): a replay
    mangle: str = "nothing"  # what of a documented delivery the case mangled (MANGLE)
    # One extra field that sets each drawn document apart from every other (Jira's carry dozens), so a
    # body is a duplicate only where the case says so (`repeat`), and every draw reaches the parser.
    nonce: int | None = None


ENCODINGS = ["deep", "deep_ok", "nan", "bigint", "utf8_broken", "gzip",
             "truncated", "padded", "huge", "dupkeys", "bom"]
METHODS = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "post", "FOO"]
JIRA_SIGNS = ["none", "wrong_secret", "truncated", "upper", "padded", "sha1", "garbage",
              "empty", "other_body", "non_ascii"]
WALDUR_SIGNS = [*JIRA_SIGNS, "shared_wrong", "shared_empty", "both_real_shared_wrong",
                "both_wrong_shared_real"]
UNPARSABLE = b"Invalid HTTP request received."
FRAMINGS = ["chunked_ext", "short_length", "long_length", "both",
            "bad_length", "negative_length", "none"]
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.!#$%&'*+^`|~",
                min_size=1, max_size=20)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       max_size=60)
NAMED_HEADERS = st.sampled_from([
    ("X-Atlassian-Webhook-Identifier", None), ("X-Atlassian-Webhook-Retry", None), ("Content-Encoding", "gzip"),
    ("Content-Encoding", "deflate"), ("Content-Encoding", "br"), ("X-Forwarded-For", "10.1.2.3"),
    ("X-Forwarded-For", "127.0.0.1, 203.0.113.9"), ("X-Real-IP", "10.0.0.1"), ("Forwarded", "for=10.0.0.1"),
    ("Expect", "100-continue"), ("Connection", "keep-alive"), ("Upgrade", "websocket"), ("Host", "evil.example"),
    ("X-Hub-Signature", None), ("X-Waldur-Signature", None), ("X-Webhook-Secret", None), ("Accept-Encoding", "gzip"),
])
CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1", "text/plain", "multipart/form-data; boundary=x", "",
    "application/json; charset=utf-16", "APPLICATION/X-WWW-FORM-URLENCODED",
])


@st.composite
def headers_strategy(draw: st.DrawFn) -> list[tuple[str, str]]:
    named = draw(st.lists(st.tuples(NAMED_HEADERS, HEADER_VALUE), max_size=4))
    random = draw(st.lists(st.tuples(TOKEN, HEADER_VALUE), max_size=3))
    return [(name, fixed if fixed is not None else value) for (name, fixed), value in named] + random


# What a case mangles: nothing (a delivery as the desk sends it), one aspect, or all of them at once.
MANGLE = ["nothing", "time", "doc", "encoding", "signature", "framing", "method", "path", "headers", "content_type",
          "all", "elsewhere"]
TIME_FIELD = {"jira": "timestamp", "waldur": "created"}
GONE = object()  # a field left out


def field_paths(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a document, objects and leaves."""
    paths = []
    for key, value in doc.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += field_paths(value, (*prefix, key))
    return paths


def with_field(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `doc` with the field at `path` set to `value` (or removed, for GONE)."""
    copy = dict(doc)
    head, *rest = path
    if rest:
        copy[head] = with_field(copy[head], tuple(rest), value)
    elif value is GONE:
        copy.pop(head, None)
    else:
        copy[head] = value
    return copy


@st.composite
def delivery_case(draw: st.DrawFn, desk: str, mangle: str) -> Case:
    """A request to a receiver: a documented delivery, signed with the real secret, with one aspect (or
    every aspect) mangled, so each stage of the receiver sees both what passes it and what does not."""
    if mangle == "elsewhere":
        return draw(other_case())

    def mangled(aspect: str) -> bool:
        return mangle in (aspect, "all")

    path = f"/{desk}"
    media = draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded"]))
    if desk == "jira":
        media = "application/json"
    wild = mangle == "all"
    doc = draw(schema_strategy(body_schema(path, media), wild=wild))
    if media == "application/x-www-form-urlencoded" and isinstance(doc, dict):
        event = schema_strategy({"$ref": "#/components/schemas/WaldurEvent"}, wild=wild)
        doc = {**doc, "context": draw(event.map(lambda d: d.get("context") if isinstance(d, dict) else d))}
    if mangle == "doc":  # one field off the document: left out, or any JSON at all
        where = draw(st.sampled_from(field_paths(doc)))
        doc = with_field(doc, where, draw(st.just(GONE) | ANY_JSON | ODD_NUMBERS))
    if mangle == "time":  # the timestamp rules: left out, no time at all, or times nobody's clock shows
        doc = with_field(doc, (TIME_FIELD[desk],), draw(ODD_NUMBERS | ODD_TIMES | st.just(GONE) | ANY_JSON))
    encode = "form" if media.endswith("urlencoded") else "compact"
    raw = b""
    if mangled("encoding"):
        if encode == "form" or draw(st.booleans()):
            raw = draw(st.sampled_from([b"", b"\xff\xfe\x00", b"{", b"a=%zz&b", b"\x80", b"context=%7B"])
                       | st.binary(max_size=64))
        encode = draw(st.sampled_from(["raw", *ENCODINGS])) if encode != "form" else encode
        if encode == "raw":
            doc = None
    elif encode == "compact":
        encode = draw(st.sampled_from(["compact", "pretty", "ascii"]))
    headers = [("X-Atlassian-Webhook-Identifier", draw(st.uuids()).hex)] if desk == "jira" else []
    if mangled("headers"):
        headers = draw(st.sampled_from([[], headers])) + draw(headers_strategy())
    suffix = draw(st.sampled_from(["/", "?x=1", "?verbose=1", "%00", "/..", "?" + "a" * 3000])) if mangled(
        "path") else draw(st.sampled_from(["", "?x=1"]))
    return Case(
        method=draw(st.sampled_from(METHODS)) if mangled("method") else "POST",
        target=PREFIX + path + suffix,
        desk=desk,
        doc=doc,
        raw=raw,
        encode=encode,
        sign=draw(st.sampled_from(JIRA_SIGNS if desk == "jira" else WALDUR_SIGNS)) if mangled("signature") else
        draw(st.sampled_from(["real", "shared_real", "padded"] if desk == "waldur" else ["real", "padded"])),
        framing=draw(st.sampled_from(FRAMINGS)) if mangled("framing") else draw(st.sampled_from(["length", "chunked"])),
        headers=headers,
        content_type=draw(CONTENT_TYPES) if mangled("content_type") else media,
        source=draw(st.integers(1, 250)),
        chunks=draw(st.integers(1, 7)),
        repeat=draw(st.booleans()),
        mangle=mangle,
    )


@st.composite
def other_case(draw: st.DrawFn) -> Case:
    """Health, unknown paths and odd methods: the rest of the port."""
    target = draw(st.sampled_from([
        f"{PREFIX}/health", f"{PREFIX}/health?verbose=1", f"{PREFIX}/health?verbose=true", f"{PREFIX}/",
        f"{PREFIX}/nope", "/", "/webhooks/../webhooks/health", "*", "//", f"{PREFIX}/health/",
        f"{PREFIX}/JIRA", f"{PREFIX}/health?" + "v=1&" * 500,
    ]))
    method = draw(st.sampled_from(["GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW"]))
    return Case(method=method, target=target, desk=None, doc=None, raw=draw(st.binary(max_size=32)), encode="raw",
                sign="none", framing=draw(st.sampled_from(["length", "none", "chunked"])),
                headers=draw(headers_strategy()), content_type=None, source=draw(st.integers(1, 250)),
                mangle="elsewhere")


# -- a request, built and sent ----------------------------------------------------------------------


def deep(levels: int) -> str:
    return '{"webhookEvent":"x","type":"x","a":' + "[" * levels + "]" * levels + "}"


NONCES = itertools.count()


def encode_body(case: Case, now: float) -> bytes:
    if case.doc is None:
        return case.raw
    doc = render(case.doc, now)
    if isinstance(doc, dict) and case.nonce is not None:
        doc = {**doc, "fuzz_nonce": case.nonce}
    text = json.dumps(doc, separators=(",", ":"))
    match case.encode:
        case "pretty":
            return json.dumps(doc, indent=2, ensure_ascii=False).encode()
        case "ascii":
            return json.dumps(doc, ensure_ascii=True).encode()
        case "form":
            if not isinstance(doc, dict):
                return urlencode({"context": json.dumps(doc)}).encode()
            fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
            return urlencode(fields, quote_via=quote).encode() + (b"&" + case.raw if case.raw else b"")
        case "deep":
            return deep(2000).encode()
        case "deep_ok":
            return deep(60).encode()
        case "nan":
            return text.replace("}", ',"n":NaN,"i":-Infinity}', 1).encode()
        case "bigint":
            return text.replace("}", ',"big":' + "9" * 5000 + "}", 1).encode()
        case "utf8_broken":
            return text.encode()[: max(1, len(text) // 2)] + b"\xc3\x28\xff" + text.encode()[len(text) // 2:]
        case "gzip":
            return gzip.compress(text.encode()) if case.chunks % 2 else zlib.compress(text.encode())
        case "truncated":
            return text.encode()[: max(0, len(text) - 1 - case.chunks)]
        case "padded":
            return b" \t\r\n" + text.encode() + b"\n" + case.raw
        case "huge":
            size = MAX_BODY - 200 if case.chunks % 2 else MAX_BODY * 4
            return text.replace("{", '{"pad":"' + "x" * size + '",', 1).encode()
        case "dupkeys":
            return text.replace("{", '{"webhookEvent":1,"type":[],', 1).encode()
        case "bom":
            return b"\xef\xbb\xbf" + text.encode()
    return text.encode()


def hub(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def auth_headers(case: Case, signed: bytes) -> tuple[list[tuple[str, str]], bool | None]:
    """The authentication headers, and whether they authenticate `signed` (the bytes the server reads)."""
    if case.desk is None:
        return [], False
    secret = SECRETS[case.desk]
    name = "X-Hub-Signature" if case.desk == "jira" else "X-Waldur-Signature"
    good = hub(secret, signed)
    match case.sign:
        case "real":
            return [(name, good)], True
        case "wrong_secret":
            return [(name, hub(secret + "x", signed))], False
        case "truncated":
            return [(name, good[: 7 + case.chunks * 8])], False
        case "upper":
            return [(name, good.upper())], False
        case "padded":
            return [(name, "  " + good + "\t")], True  # surrounding whitespace is not part of a header value
        case "sha1":
            return [(name, "sha1=" + hmac.new(secret.encode(), signed, hashlib.sha1).hexdigest())], False
        case "garbage":
            return [(name, "sha256=" + "g" * 64)], False
        case "empty":
            return [(name, "")], False
        case "other_body":
            return [(name, hub(secret, signed + b" "))], False
        case "non_ascii":
            return [(name, good[:-1] + "\xe9")], False
        case "shared_real":
            return [("X-Webhook-Secret", secret)], True
        case "shared_wrong":
            return [("X-Webhook-Secret", secret[:-1])], False
        case "shared_empty":
            return [("X-Webhook-Secret", "")], False
        case "both_real_shared_wrong":
            return [(name, good), ("X-Webhook-Secret", "nope")], None
        case "both_wrong_shared_real":
            return [(name, "sha256=" + "0" * 64), ("X-Webhook-Secret", secret)], None
    return [], False


@dataclass
class Wire:
    request: bytes
    authentic: bool | None  # None: the receiver's choice between two credentials is not the fuzz's to guess
    complete: bool  # False when the request promises body bytes it never sends
    timing: str | None = None  # what the body's timestamp is, where the fuzz knows (see `timing`)


SKEW = 300.0  # how far ahead of the sidecar's clock a desk's timestamp may be (webhooks.MAX_FUTURE_SKEW)
SLACK = 60.0  # the drawn offsets keep this far from each bound, whatever the delay between build and check


def timing(case: Case) -> str | None:
    """`fresh`, `stale` or `future` for a timestamp the fuzz drew relative to now; `invalid` for a number
    that is no time at all (NaN, an infinity); None where the receiver's reading is its own business."""
    if case.doc is None or not isinstance(case.doc, dict) or case.encode == "raw":
        return None
    value = case.doc.get("timestamp" if case.desk == "jira" else "created")
    if isinstance(value, Stamp):
        if value.offset > SKEW:
            return "future"
        return "stale" if -value.offset > MAX_AGE else "fresh"
    if isinstance(value, float) and not math.isfinite(value):
        return "invalid"
    return None


def build(case: Case, now: float) -> Wire:
    body = encode_body(case, now)
    headers: list[tuple[str, str]] = [("Host", "127.0.0.1"), ("Connection", "close")]
    if case.content_type is not None:
        headers.append(("Content-Type", case.content_type))
    framed = body
    delivered = body  # what the server's request.stream() yields
    complete = True
    match case.framing:
        case "length":
            headers.append(("Content-Length", str(len(body))))
        case "chunked" | "chunked_ext":
            headers.append(("Transfer-Encoding", "chunked"))
            step = max(1, len(body) // case.chunks)
            ext = ";name=value" if case.framing == "chunked_ext" else ""
            parts = [body[i : i + step] for i in range(0, len(body), step)]
            framed = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext.encode(), p) for p in parts) + b"0\r\n\r\n"
        case "short_length":
            cut = max(0, len(body) - case.chunks)
            headers.append(("Content-Length", str(cut)))
            delivered = body[:cut]
        case "long_length":
            headers.append(("Content-Length", str(len(body) + case.chunks)))
            complete = False
        case "both":
            headers += [("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")]
            delivered = b""
        case "bad_length":
            headers.append(("Content-Length", f"{len(body)}x"))
        case "negative_length":
            headers.append(("Content-Length", "-1"))
        case "none":
            delivered = b""
    auth, authentic = auth_headers(case, delivered)
    extra = [(n, v) for n, v in case.headers if n.lower() not in ("content-length", "transfer-encoding")]
    lines = [f"{case.method} {case.target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers + auth + extra)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Wire(head + framed, authentic, complete, timing(case))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answer(data: bytes) -> Answer | None:
    """The first final response in what the server sent (interim 1xx skipped), or None for none."""
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"truncated response head: {data[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            data = rest
            continue
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, rest = b"", rest
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body, rest = body + rest[:size], rest[size + 2 :]
        elif "content-length" in headers:
            body = rest[: int(headers["content-length"])]
        else:
            body = rest
        return Answer(status, headers, body)
    return None


def exchange(port: int, wire: Wire, source: int) -> Answer | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((f"127.0.0.{source}", 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(wire.request)
            if not wire.complete:
                sock.shutdown(socket.SHUT_WR)  # the promised bytes never come: the server must let go
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413 on the declared length) and closed; read its answer
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"no answer within {TIMEOUT}s: the server hung") from None
    return parse_answer(bytes(received))


# -- checking an answer -----------------------------------------------------------------------------


@dataclass
class Tally:
    fresh: set[tuple[str, str]] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    silent: int = 0
    errors: list[logging.LogRecord] = field(default_factory=list)  # what the server logged at ERROR so far
    last: str = ""  # the request before this one (the server may log its error after the answer is out)


def operation_of(case: Case) -> tuple[str, str] | None:
    path = case.target.split("?", 1)[0].split("#", 1)[0]
    key = (case.method, path)
    if key in OPERATIONS:
        return key
    if case.method == "HEAD" and ("GET", path) in OPERATIONS:  # Starlette serves HEAD wherever GET is served
        return ("GET", path)
    return None


def check(case: Case, wire: Wire, answer: Answer | None, tally: Tally) -> str | None:
    """Assert the answer is one the document allows; the receiver's outcome, when it gave one."""
    shown = f"{wire.request[:300]!r}... ({len(wire.request)} bytes)"
    errors = unknown_errors(tally.errors)
    assert not errors, f"the server logged {described(errors)} after {tally.last} or {shown}"
    tally.last = shown
    if answer is None:
        # Only a request that promises bytes it never sends (its sender gone) may be dropped unanswered.
        assert not wire.complete, f"no answer: {shown}"
        tally.silent += 1
        return None
    tally.statuses[answer.status] = tally.statuses.get(answer.status, 0) + 1
    media = answer.headers.get("content-type", "").split(";")[0].strip()
    if (answer.status, media, answer.body) == (400, "text/plain", UNPARSABLE):
        # The HTTP server's own answer to a request it cannot parse, before any route: the document says
        # so for every path. Only a request with something wrong at the HTTP level gets it.
        assert case.mangle in ("framing", "headers", "method", "path", "all", "elsewhere"), shown
        tally.outcomes["unparsable"] = tally.outcomes.get("unparsable", 0) + 1
        return None
    key = operation_of(case)
    if key is None:
        path = case.target.split("?", 1)[0]
        allowed = {400, 404, 405}
        if path.endswith("/") and path.rstrip("/") in SERVED_METHODS:
            allowed.add(307)  # Starlette's trailing-slash redirect to a served path (whatever the method)
        assert answer.status in allowed, f"{answer.status} for a request that is no operation: {shown}"
        if answer.status == 405:
            served = {m for m, p in OPERATIONS if p == path}
            served |= {"HEAD"} if "GET" in served else set()
            assert set(answer.headers["allow"].replace(" ", "").split(",")) == served, shown
        return None
    assert answer.status in DECLARED[key], f"{answer.status} is not declared for {key}: {shown}"
    if case.method != "HEAD":
        request = MockRequest("http://127.0.0.1:8480", key[0], key[1])
        response = MockResponse(answer.body, answer.status, answer.headers, content_type=media)
        try:
            API.validate_response(request, response)
        except Exception as exc:
            why = getattr(exc.__cause__, "schema_errors", None) or getattr(exc, "schema_errors", None)
            raise AssertionError(f"{answer.status} {answer.body[:300]!r} breaks the document: {exc} {why}: "
                                 f"{shown}") from None
    if case.desk is None or case.method == "HEAD":
        return None
    outcome = json.loads(answer.body)["status"] if media == "application/json" else f"plain {answer.status}"
    tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
    if outcome in ("rate_limited", "overloaded"):
        assert answer.headers.get("retry-after", "").isdigit(), f"{outcome} without Retry-After: {shown}"
    if answer.status == 200:
        assert wire.authentic is not False, f"200 {outcome} without a valid signature: {shown}"
        # The timestamp rules: only a delivery stamped within [now - max_age, now + skew] is taken.
        allowed_timing = {"accepted": ("fresh", None), "echo": ("fresh", None), "stale": ("stale", None)}
        if outcome in allowed_timing:
            assert wire.timing in allowed_timing[outcome], f"{outcome} for a {wire.timing} timestamp: {shown}"
        if outcome in FRESH:
            tally.fresh.add((case.desk, json.loads(answer.body)["delivery_id"]))
    return str(outcome)


# -- the running app and what it leaves ---------------------------------------------------------


# The Waldur run also sits behind a trusted proxy with an allow-list, so hostile X-Forwarded-For
# headers reach the client resolution and the 403 path; the Jira run takes the TCP peer as it is.
BEHIND_PROXY = {"webhook.trusted_proxies": "127.0.0.0/8", "webhook.allowed_sources": "127.0.0.0/8,10.0.0.0/8"}
EXTRA_FLAGS: dict[str, dict[str, str]] = {"jira": {}, "waldur": BEHIND_PROXY}


def flags(tmp_path: Path, desk: str) -> dict[str, object]:
    return app_flags(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        **{
            "webhook.max_body_bytes": str(MAX_BODY),
            # Budgets wide enough that the fuzz reaches the parser (the limits have tests of their own).
            "webhook.rate_limit_per_second": "100000",
            "webhook.rate_limit_per_source": "100000",
            "webhook.auth_failures_per_source": "100000",
            "webhook.max_age": f"{MAX_AGE}s",
            "webhook.read_timeout": "1s",  # a body that never completes costs the fuzz a second, not ten
            "webhook.max_queued_writes": "2",  # so that a burst meets the writer's back-pressure
            "observe.listen": "127.0.0.1:0",  # /metrics and verbose health apart, as by default
            "jira.account_id": OWN_ACCOUNT,
            **EXTRA_FLAGS[desk],
        },
    )


def footprint(db: Path) -> dict[str, int]:
    """The database's logical size (pages in use, WAL included) and the rows the receivers may write."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        return {
            "bytes": pages,
            "deliveries": conn.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0],
            "audit": conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0],
        }
    finally:
        conn.close()


def delivered(db: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {(d, i) for d, i in conn.execute("SELECT desk, delivery_id FROM webhook_deliveries")}
    finally:
        conn.close()


LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


def rss_bytes() -> int:
    """Resident memory of live objects: garbage collected and malloc's free pages handed back first, so the
    figure does not count what earlier tests in this worker (or the fuzz's own threads) freed but glibc kept."""
    gc.collect()
    if (trim := getattr(LIBC, "malloc_trim", None)) is not None:
        trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def explicit(desk: str) -> list[Case]:
    """Cases every run includes, whatever Hypothesis draws: one per stage of the receiver."""
    stamp = Stamp(-5.0, "ms" if desk == "jira" else "iso")
    doc: dict[str, Any] = (
        {"webhookEvent": "jira:issue_updated", "timestamp": stamp, "issue": {"id": "10007"}}
        if desk == "jira"
        else {"type": "issue_update_succeeded", "created": stamp, "context": {"issue_uuid": "0f6b3c9a"}}
    )
    ident = [("X-Atlassian-Webhook-Identifier", "explicit-1")] if desk == "jira" else []
    post = Case("POST", f"{PREFIX}/{desk}", desk, doc, b"", "compact", "real", "length", headers=ident, repeat=True)
    return [
        post,  # accepted, then its replay under a new delivery id: a duplicate
        replace(post, sign="none", repeat=False),  # 401
        replace(post, sign="other_body", repeat=False),  # 401: signed, but not these bytes
        replace(post, encode="huge", chunks=2, repeat=False),  # 413 while streaming, signed
        replace(post, encode="huge", chunks=2, framing="chunked", repeat=False),  # 413 with no declared length
        replace(post, encode="deep", repeat=False),  # 400: nesting, signed
        replace(post, encode="utf8_broken", repeat=False),  # 400: not UTF-8, signed
        replace(post, framing="long_length", repeat=False),  # the sender goes away mid-body
        replace(post, doc={**doc, "timestamp" if desk == "jira" else "created": Stamp(3 * 3600.0, stamp.style)},
                repeat=False),  # 400: stamped in the future
        *([replace(post, headers=[("X-Forwarded-For", "10.9.9.9, 203.0.113.9")], repeat=False),  # 403
           replace(post, headers=[("X-Forwarded-For", "203.0.113.9, 10.9.9.9")], repeat=False)]  # 200
          if EXTRA_FLAGS[desk] else []),
    ]


def burst(port: int, desk: str, tally: Tally, size: int = 48) -> None:
    """Distinct signed deliveries all at once, so intake outruns the writer's slots: each is recorded, or
    answered 503 with nothing written (checked one by one afterwards: the tally is not thread-safe)."""
    base = explicit(desk)[0]
    cases = []
    for n in range(size):
        doc = dict(base.doc)
        if desk == "jira":
            doc["issue"] = {"id": str(20000 + n)}
        else:
            doc["context"] = {"issue_uuid": f"{n:032x}"}
        ident = [("X-Atlassian-Webhook-Identifier", f"burst-{n}")] if desk == "jira" else []
        cases.append(replace(base, doc=doc, headers=ident, repeat=False, source=100 + n))
    now = time.time()
    wires = [build(case, now) for case in cases]
    with ThreadPoolExecutor(max_workers=size) as pool:
        answers = list(pool.map(lambda pair: exchange(port, pair[1], pair[0].source), zip(cases, wires, strict=True)))
    for case, wire, answer in zip(cases, wires, answers, strict=True):
        check(case, wire, answer, tally)


def fuzz(port: int, desk: str, tally: Tally) -> None:
    """Hypothesis over each thing a case can mangle in turn, with an equal share of the budget each (one
    draw over all of them lets Hypothesis's search leave some nearly untried); the explicit cases first."""
    for mangle in MANGLE:
        fuzz_one(port, delivery_case(desk, mangle), tally, explicit(desk) if mangle == "nothing" else [])


def fuzz_one(port: int, strategy: st.SearchStrategy[Case], tally: Tally, cases: list[Case]) -> None:
    @settings(max_examples=EXAMPLES // len(MANGLE), deadline=None, derandomize=True, database=None, print_blob=False,
              phases=[Phase.explicit, Phase.generate],  # no shrinking: the budget is fixed, the input printed
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(case=strategy)
    def one(case: Case) -> None:
        # A fresh nonce in the body and the delivery id each call, so a failing example fails again when
        # Hypothesis replays it, instead of meeting its own first run as a duplicate.
        nonce = next(NONCES)
        case = replace(case, nonce=nonce, headers=[
            (n, f"{v}-{nonce}") if n == "X-Atlassian-Webhook-Identifier" else (n, v)
            for n, v in case.headers])
        now = time.time()
        wire = build(case, now)
        first = check(case, wire, exchange(port, wire, case.source), tally)
        if case.repeat:
            again = replace(case, headers=[(n, "replayed-" + v) if n == "X-Atlassian-Webhook-Identifier" else (n, v)
                                           for n, v in case.headers])
            wire = build(again, now)
            second = check(again, wire, exchange(port, wire, case.source), tally)
            assert not (first in FRESH and second in FRESH), f"a replayed body was {second}: {wire.request[:300]!r}"

    for case in cases:
        one = example(case=case)(one)
    with warnings.catch_warnings():
        # Hypothesis flags any use of the global `random` during a draw; the app, running meanwhile on
        # the event loop's thread, uses it (retry jitter), which is not the strategies' doing.
        warnings.filterwarnings("ignore", "Do not use the `random` module", HypothesisDeprecationWarning)
        one()


async def still_answers(port: int) -> None:
    """A signed delivery after the fuzz is accepted: the process kept answering and kept its state."""
    doc = {"webhookEvent": "jira:issue_updated", "timestamp": int(time.time() * 1000), "issue": {"id": "77"}}
    case = Case("POST", f"{PREFIX}/jira", "jira", doc, b"", "compact", "real", "length",
                headers=[("X-Atlassian-Webhook-Identifier", "after-the-fuzz")], source=251)
    wire = build(case, time.time())
    answer = await asyncio.to_thread(exchange, port, wire, case.source)
    assert answer is not None and answer.status == 200, answer
    assert json.loads(answer.body) == {"status": "accepted", "delivery_id": "after-the-fuzz"}


# Errors the server may log that are known and accepted (none: a logged traceback fails the fuzz).
KNOWN_ERRORS: tuple[str, ...] = ()


def unknown_errors(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if not (r.exc_info and str(r.exc_info[1]) in KNOWN_ERRORS)]


def described(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}" for r in records]


class ErrorLog(logging.Handler):
    """Collects what the server and the receivers log at ERROR: an unhandled exception shows here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def error_log() -> Any:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "sidecar.web", "starlette")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@dataclass
class Run:
    tally: Tally
    seconds: float  # from the first request to the app's stop (rejection summaries are flushed at stop)


async def run_fuzz(tmp_path: Path, desk: str) -> Run:
    """Fuzz a fresh app; assert what must hold while it runs; stop it (flushing its rejection summaries)."""
    db = tmp_path / "sidecar.db"
    tally = Tally()
    async with running_app(flags(tmp_path, desk), ENV) as app:
        assert app.web_port is not None
        before, rss_before = footprint(db), rss_bytes()
        started = time.monotonic()
        with error_log() as errors:
            tally.errors = errors
            await asyncio.to_thread(fuzz, app.web_port, desk, tally)
            await asyncio.to_thread(burst, app.web_port, desk, tally)
            await still_answers(app.web_port)
        assert not unknown_errors(errors), described(errors)
        after, rss_after = footprint(db), rss_bytes()
    tally.fresh.add(("jira", "after-the-fuzz"))
    # Every delivery the app said it recorded is there, once; nothing else was.
    assert delivered(db) == tally.fresh
    assert after["deliveries"] - before["deliveries"] == len(tally.fresh)
    # While it ran, rejections wrote nothing: the audit grew by the recorded deliveries and at most one
    # summary per desk and outcome per summary interval (the app flushes once as its loop starts).
    summaries_bound = 2 * len(REJECTED) * (int((time.monotonic() - started) / SUMMARY_INTERVAL) + 1)
    assert after["audit"] - before["audit"] - len(tally.fresh) <= summaries_bound, (before, after)
    assert after["bytes"] - before["bytes"] <= 64 * 1024 + 2048 * (len(tally.fresh) + summaries_bound), (before, after)
    assert rss_after - rss_before < 96 * 1024 * 1024, (rss_before, rss_after)
    return Run(tally, time.monotonic() - started)


def summaries(db: Path) -> list[tuple[str, str, int]]:
    """(desk, outcome, count) of each `webhook_rejections` audit row."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT desk, status, details_json FROM audit WHERE event_type = 'webhook_rejections'")
        return [(desk, status, int(json.loads(details)["count"])) for desk, status, details in rows]
    finally:
        conn.close()


# -- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("desk", ["jira", "waldur"])
async def test_fuzzed_requests_get_declared_answers_and_leave_bounded_state(tmp_path: Path, desk: str) -> None:
    run = await run_fuzz(tmp_path, desk)
    tally = run.tally
    # The fuzz reached every stage of the receiver, or it proves nothing about the parser.
    assert tally.fresh - {("jira", "after-the-fuzz")}, tally
    stages = {"accepted", "duplicate", "malformed", "bad_signature", "too_large"}  # 503 depends on timing
    assert stages | ({"forbidden_source"} if EXTRA_FLAGS[desk] else set()) <= set(tally.outcomes), tally
    # Each rejection was counted once, in one summary row per outcome and flush; a sender that went away
    # mid-body was refused too, though it could not hear the answer.
    rows = summaries(tmp_path / "sidecar.db")
    flushes = int(run.seconds / SUMMARY_INTERVAL) + 2
    for outcome in {status for _, status, _ in rows}:
        assert sum(1 for _, status, _ in rows if status == outcome) <= flushes, (outcome, rows)
    assert {d for d, _, _ in rows} == {desk}, rows
    answered = sum(n for outcome, n in tally.outcomes.items() if outcome in REJECTED)
    assert answered <= sum(count for _, _, count in rows) <= answered + tally.silent, (rows, tally)


@pytest.mark.parametrize(
    ("desk", "stamp"),
    [("jira", "NaN"), ("jira", "-Infinity"), ("jira", "Infinity"), ("jira", "-1e400"), ("waldur", "NaN")],
)
async def test_a_signed_body_stamped_with_no_time_is_refused(tmp_path: Path, desk: str, stamp: str) -> None:
    """What the fuzz found: a timestamp that is a JSON number but no time (NaN, an infinity) in a body
    signed with the real secret. It must be refused like a missing one (or, far in the past, be stale),
    never taken (NaN compares false with every bound, so it would never age) and never a 500."""
    field_name = TIME_FIELD[desk]
    event = '"webhookEvent":"jira:issue_updated"' if desk == "jira" else '"type":"issue_update_succeeded"'
    body = ("{" + event + f',"{field_name}":{stamp},"issue":{{"id":"1"}}}}').encode()
    case = Case("POST", f"{PREFIX}/{desk}", desk, None, body, "raw", "real", "length", source=9)
    async with running_app(flags(tmp_path, "jira"), ENV) as app:
        assert app.web_port is not None
        with error_log() as errors:
            wire = build(case, time.time())
            answer = await asyncio.to_thread(exchange, app.web_port, wire, case.source)
    assert answer is not None
    assert not errors, [r.getMessage() for r in errors]
    outcome = (answer.status, json.loads(answer.body)["status"]) if answer.status < 500 else (answer.status, None)
    assert outcome in ((400, "malformed"), (200, "stale")), (stamp, answer)


@pytest.mark.parametrize("target", [f"{PREFIX}/nope", f"{PREFIX}/jira"])  # a 404 and a 405: no body is read
async def test_an_unparsable_chunked_body_on_a_route_that_reads_none_logs_no_error(
    tmp_path: Path, target: str
) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    health = f"GET {PREFIX}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with running_app(flags(tmp_path, "jira"), ENV) as app:
        assert app.web_port is not None
        with error_log() as errors:
            answer = await asyncio.to_thread(exchange, app.web_port, Wire(request.encode(), None, True), 9)
            for _ in range(2):  # the failed request's task has run its course once later ones are answered
                assert await asyncio.to_thread(exchange, app.web_port, Wire(health.encode(), None, True), 9)
    assert answer is not None and (answer.status, answer.body) == (400, UNPARSABLE)
    assert not errors, described(errors)


async def test_document_paths_and_statuses_are_the_apps(tmp_path: Path) -> None:
    """The document cannot drift: its operations are the public app's routes, its statuses the receivers'."""
    store = await Store.open(str(tmp_path / "sidecar.db"))
    try:
        metrics = Metrics()
        secrets: dict[Service, str | None] = {"jira": SECRETS["jira"], "waldur": SECRETS["waldur"]}
        receiver = WebhookReceiver(WebhookConfig(), secrets, store, Auditor(store), metrics)
        public = build_web_app(PREFIX, store, HealthState(), metrics, receiver, observe=False)
        shared = build_web_app(PREFIX, store, HealthState(), metrics, receiver, observe=True)
    finally:
        await store.close()

    def served(app: Any) -> set[tuple[str, str]]:
        routes = [route for route in app.routes if isinstance(route, Route)]
        assert len(routes) == len(app.routes)
        return {(m, r.path) for r in routes for m in (r.methods or ()) if m != "HEAD"}

    assert served(public) == set(OPERATIONS)
    assert served(shared) == set(OPERATIONS) | {("GET", "/metrics")}  # observe.listen empty: said in the info
    receivers = [key for key in OPERATIONS if key[1] in (f"{PREFIX}/jira", f"{PREFIX}/waldur")]
    assert len(receivers) == 2
    for key in receivers:
        assert DECLARED[key] - {408} == set(STATUS.values()), key  # 408: the server's body deadline
    components = DOC["components"]
    acknowledged = components["responses"]["Acknowledged"]["content"]["application/json"]["schema"]
    assert set(acknowledged["properties"]["status"]["enum"]) == {o for o, status in STATUS.items() if status == 200}
    rejection = components["schemas"]["Rejection"]["properties"]["status"]["enum"]
    assert set(rejection) == {outcome for outcome, status in STATUS.items() if status != 200} == set(REJECTED)
    for path in ("/jira", "/waldur"):
        for outcome in REJECTED:  # each rejection's status names the response that narrows to that outcome
            ref = DOC["paths"][path]["post"]["responses"][str(STATUS[outcome])]["$ref"]
            schema = components["responses"][ref.rsplit("/", 1)[1]]["content"]["application/json"]["schema"]
            assert schema["allOf"][1]["properties"]["status"]["enum"] == [outcome], (path, outcome)
    timeout = components["responses"]["Timeout"]["content"]["application/json"]["schema"]
    assert timeout["properties"]["status"]["enum"] == [json.loads(TIMEOUT_BODY)["status"]]


def test_the_settings_and_secrets_the_document_names_exist() -> None:
    text = (ROOT / "docs" / "webhooks.openapi.yaml").read_text()
    keys = set(re.findall(r"`((?:webhook|observe|jira|waldur)\.[a-z_]+)`", text))
    assert keys and not keys - set(KEYS_BY_PATH), sorted(keys - set(KEYS_BY_PATH))
    secrets = set(re.findall(r"`([a-z]+_webhook_secret)`", text))
    assert secrets == {spec.name for spec in SECRET_SPECS if spec.name.endswith("_webhook_secret")}
