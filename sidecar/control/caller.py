"""Who is making the current control call, as the auth layer identified them.

A leaf module: the interceptor sets the name for the length of one call; audit entries read it.
"""

from __future__ import annotations

from contextvars import ContextVar

_CALLER: ContextVar[str] = ContextVar("control_caller", default="operator")


def caller() -> str:
    return _CALLER.get()


def set_caller(name: str) -> object:
    """Set the caller for the current call; returns the token reset_caller takes."""
    return _CALLER.set(name)


def reset_caller(token: object) -> None:
    _CALLER.reset(token)  # type: ignore[arg-type]
