"""The sidecar's exception tree. Library exceptions are translated at one edge each.

SidecarError
+-- ConfigError        a configuration key is wrong (names key path and source); exit 2
+-- StoreError         the database cannot be used (schema newer than the code, corrupt)
+-- ChainRpcError      the node's RPC failed; .retryable says whether to try again
+-- DeskError          a desk call failed; .retryable, .retry_after, .status
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class ConfigError(SidecarError):
    """A configuration value is invalid. The message names the key path and where it came from."""

    def __init__(self, path: str, problem: str, *, source: str) -> None:
        self.path = path
        self.problem = problem
        self.source = source
        super().__init__(f"{path} {problem} [{source}]")


class StoreError(SidecarError):
    """The SQLite store cannot be opened or migrated."""


class ChainRpcError(SidecarError):
    """A CometBFT RPC call failed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


class DeskError(SidecarError):
    """A Jira or Waldur call failed. Messages carry the desk and status, never ticket content."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        scope: str = "desk",
    ) -> None:
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        # "desk": slow every call to this desk (outage, desk-wide limit); "endpoint": one endpoint's limit (Jira's
        # burst limit; DeskHttp holds that endpoint back); "issue": space writes to this issue only.
        self.scope = scope
        # True when the desk refused a create request outright (a 4xx answer to it): nothing was made,
        # so a retry need not wait out the desk's search-index lag before creating.
        self.nothing_created = False
        # True when the desk refused a create because this chain ticket's issue exists there already (a desk
        # with `unique_creates`): an earlier attempt landed, and the caller adopts that issue.
        self.already_exists = False
        super().__init__(message)
