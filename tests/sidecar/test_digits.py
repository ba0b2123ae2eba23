"""ASCII decimal text: what every check before int() on outside text asks."""

from __future__ import annotations

import pytest

from sidecar.digits import is_decimal
from sidecar.listen import parse_listen


def test_only_ascii_digits_are_decimal() -> None:
    assert all(is_decimal(text) for text in ("0", "42", "0007", "9" * 30))
    # Each of these is str.isdigit(); int() refuses the first and reads the others as 2, 12 and 80.
    for text in ("\u00b2", "\u0661\u0662", "\uff18\uff10", "", "1a", "-1", "+1", " 1", "1_000"):
        assert not is_decimal(text), repr(text)


def test_a_listen_port_in_other_digits_is_refused() -> None:
    assert parse_listen("127.0.0.1:8480") == ("127.0.0.1", 8480)
    with pytest.raises(ValueError, match="a port 0..65535"):
        parse_listen("127.0.0.1:\uff18\uff14\uff18\uff10")  # fullwidth 8480
