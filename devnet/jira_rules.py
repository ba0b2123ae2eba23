"""The Jira Cloud / JSM validation rules the simulator holds, their error texts and the knobs.

Each rule is something the real Jira Cloud refuses; the simulator refuses it the same way so a client
that only passes a lenient fake fails its tests. The contract tests are tests/devnet/test_jira_rules.py.

Rules (refused request -> status and body). Jira platform bodies are {"errorMessages": [...], "errors": {...}};
JSM (/rest/servicedeskapi/...) bodies are {"errorMessage": "...", "i18nErrorMessage": {...}}.

 1. A summary has no line break (create and edit): `fields.summary` with "\n" or "\r" ->
    400 {"errorMessages": [], "errors": {"summary": SUMMARY_NEWLINE}}
    (JSM create: 400 errorMessage "summary: " + SUMMARY_NEWLINE).
 2. Transitions follow the workflow: a transition id not available from the current status ->
    400 {"errorMessages": ["Transition id '<id>' is not valid for this issue."], "errors": {}}.
 3. A transition screen's required field is given: Resolve this issue / Cancel request without
    `fields.resolution` -> 400 {"errorMessages": ["Field Resolution is required."], "errors": {}}.
 4. A transition sets only its screen's fields: `fields.resolution` (or any field) on a transition without
    it on its screen, e.g. Start progress -> 400 {"errorMessages": [], "errors": {"resolution":
    "Field 'resolution' cannot be set. It is not on the appropriate screen, or unknown."}}.
 5. A resolution names one of the site's resolutions: `{"name": "Fixed"}` -> 400 {"errorMessages": [],
    "errors": {"resolution": BAD_RESOLUTION}}. `{"name": ...}` and `{"id": ...}` are accepted.
 6. Create/edit sets only fields on the issue's screen: `fields.priority` (or `update.priority`) in an
    edit of an issue created through a JSM request type, or any unknown field -> 400 {"errorMessages": [],
    "errors": {"priority": "Field 'priority' cannot be set. It is not on the appropriate screen, or
    unknown."}}. NOTHING of that edit is applied: a label change in the same request is lost too.
 7. JSM `requestFieldValues` holds only the request type's form fields: `labels` (or `priority`, ...)
    -> 400 errorMessage JSM_CREATE_FAILED + " Field 'labels' cannot be set. It is not on the appropriate
    screen, or unknown." A missing summary -> JSM_CREATE_FAILED + " Please provide a valid value for
    field 'Summary'".
 8. Search is eventually consistent: a write is missing (or stale) in JQL search for `search_delay`
    seconds (default DEFAULT_SEARCH_DELAY = 3 s); `reconcileIssues` sees it at once.
 9. A wrong, revoked or expired API token is refused on every endpoint, JSM included ->
    401 {"errorMessages": [UNAUTHENTICATED], "errors": {}}.
10. The burst rate limit is per endpoint and HTTP method (with `rate_per_second=`, `burst=`: each endpoint's
    numbers, which Atlassian does not publish; the project uses 100/s, burst 100): a request past its
    endpoint's bucket -> 429 with `Retry-After` (whole seconds), `RateLimit-Reason: jira-burst-based` and
    X-RateLimit-Limit/-Remaining/-Reset; other endpoints, and the same path with another method, are not
    slowed. The endpoint is the route template ("GET /rest/api/3/issue/{key}"), not the raw path: every issue
    shares one bucket. Source: developer.atlassian.com/cloud/jira/platform/rate-limiting/ ("Request rate
    limits (per-second): Restricts how many requests you can make per second to each API endpoint") and
    .../build-an-app-that-respects-rate-limits/ (jira-burst-based: "One tenant, one endpoint, one HTTP
    method. Slow down requests to that endpoint only"); Atlassian's announcement: "enforced on a
    per-tenant per-API basis ... token bucket algorithms". The knob lives in devnet/sim_core.py
    (SimCore.per_endpoint_limit). API-token traffic is not under the points-based quota: not modelled.
11. Writes to one issue are limited (with `per_issue_writes=`, `per_issue_window=`): past them -> 429 with
    `RateLimit-Reason: jira-per-issue-on-write` (same page: "Per issue write rate limits").

Match on status, the `errors` key and the field name; the full sentences are given so a test can pin them.
Rule 7's tail after the JSM prefix is this simulator's wording (the prefix is JSM's; see the comment in
jira_sim.py): a client must not depend on more than "400 and the field id appears in errorMessage".

Knobs (keyword arguments of `JiraSim`, and methods):

- `workflow=`: `Workflow.service_request()` is the DEFAULT (JSM service-request-like, not fully connected):
    statuses Open (new), In Progress, Waiting for Customer, Waiting for Support (indeterminate),
    Resolved, Closed (done); transitions (id name: from -> to, screen):
      11 Start progress:        Open, Waiting for Support, Waiting for Customer -> In Progress
      21 Wait for customer:     In Progress, Waiting for Support -> Waiting for Customer
      31 Respond to support:    Waiting for Customer -> Waiting for Support
      41 Resolve this issue:    In Progress, Waiting for Support, Waiting for Customer -> Resolved
                                (screen: resolution, REQUIRED)
      51 Close:                 Resolved -> Closed (no screen; keeps the resolution)
      61 Cancel request:        Open, Waiting for Support -> Closed (screen: resolution, REQUIRED)
      71 Reopen:                Resolved, Closed -> Open (clears the resolution)
    So Open -> Resolved and Open -> Waiting for Customer need two transitions; `workflow.path(a, b)`
    gives the simulator's own shortest path (what a client has to find from GET .../transitions).
  `Workflow.connected()` is the old lenient flow (every status one step away, no screens) for tests
  that are not about workflows. `Workflow.from_config(...)` builds others; a transition dict may carry
  `"screen": ["resolution"]` and `"required": ["resolution"]`.
- `resolutions=`: names, default `DEFAULT_RESOLUTIONS` ("Done", "Won't Do", "Duplicate",
  "Cannot Reproduce"), ids 10000, 10001, ...; sent as `allowedValues` of the `resolution` field in
  `GET .../transitions?expand=transitions.fields` (`fields` is present only with that expand).
  A transition accepts `{"name": ...}` or `{"id": ...}`.
- `screen=`: fields on the create/edit screen of plain issues; default `ISSUE_SCREEN` (summary,
  description, labels, priority, assignee, issuetype, project).
- `request_screen=`: fields on the edit screen of issues created through a JSM request type; default
  `REQUEST_SCREEN` = ISSUE_SCREEN without priority. Pass `request_screen=ISSUE_SCREEN` to allow it.
- `add_request_type(desk_id, type_id, issue_type="Service Request", fields=REQUEST_TYPE_FIELDS)`:
  the request type's form; default fields summary, description (no labels, no priority).
- `search_delay=`: seconds before search sees a write; default `DEFAULT_SEARCH_DELAY` (3.0). Pass
  `search_delay=0` for instant search, or a `clock=ManualClock()` and `sim.flush_index()`.
- `revoke_token()` / `set_token(t)`: every later request is 401 / accepted again.
- Agent-side helpers (`agent_update`, `agent_transition`) act as a human in the UI: they skip screens
  and `agent_transition(key, status, resolution="Done")` fills a required resolution itself.

Attachment knobs (devnet/jira_files.py holds the rules, each cited in `add_attachments`; contract tests in
tests/devnet/test_jira_attachments.py):
- `max_attachment_bytes=`: the site's uploadLimit (GET /rest/api/3/attachment/meta); default 1,000,000 (the
  pinned spec's example); a bigger file is 413. `make devnet` passes 10 MiB, the sidecar's default limit.
- `attachments_enabled=`: False is a site with attachments off: uploads are 403, reads 404.
- `attach_denied`: account ids without the "Create attachments" permission: their uploads are 403.
- `max_issue_attachments`: files one issue may hold (default 2000): an upload past it is 413.
- `declared_sizes`: attachment id -> the `size` the metadata claims, the bytes served without a
  Content-Length (a desk whose declared size lies).
- `media_ttl`: seconds a signed media URL (the 303 of getAttachmentContent) works; default 60.
- `media_requests`: one entry per media GET, True when it carried an Authorization header (a test checks
  the credential does not travel to the media host).
- `agent_attach(key, filename, content, mime)`: a file attached by the agent, as a drag-and-drop in the UI.
"""

from __future__ import annotations

# Rule 1: Jira Cloud's answer to a summary with a line break, as filed in ryanhoskin/pd2jira#19
# (https://github.com/ryanhoskin/pd2jira/pull/19): {"errorMessages":[],"errors":{"summary":"The summary is
# invalid because it contains newline characters."}}
SUMMARY_NEWLINE = "The summary is invalid because it contains newline characters."

# Rules 4 and 6: Jira's text for a field that is not on the screen of the operation, e.g. priority on
# create (activepieces/activepieces#3476, full body quoted there), priority on a clone
# (ankitpokhrel/jira-cli#495), resolution on a transition (mozilla/jira-bugzilla-integration#1258).
NOT_ON_SCREEN = "Field '{field}' cannot be set. It is not on the appropriate screen, or unknown."

# Rule 3: a required transition-screen field left out: "Field Resolution is required." in errorMessages
# (checkmarx-ts/checkmarx-cxflow-github-action#46, mozilla/jira-bugzilla-integration#1055).
FIELD_REQUIRED = "Field {name} is required."

# Rule 5: a resolution object that names no resolution of the site.
BAD_RESOLUTION = "Could not find valid 'id' or 'name' in resolution object."

# Rule 7: JSM's prefix for a refused customer request, as a JSM integration checks it verbatim
# ("Your request could not be created. Please check the fields have been correctly filled in. Please
# provide a valid value for field 'Summary'"); the simulator appends the field-screen sentence.
JSM_CREATE_FAILED = "Your request could not be created. Please check the fields have been correctly filled in."

# Rule 9: Jira Cloud's 401 text (jira-node/node-jira-client#255, atlassian/gajira-login#39 and #59).
UNAUTHENTICATED = "Client must be authenticated to access this resource."

# Stock Jira Cloud resolutions, as listed under "Resolutions" in Atlassian's "What are work item statuses,
# priorities, and resolutions?" (https://support.atlassian.com/jira-cloud-administration/docs/
# what-are-issue-statuses-priorities-and-resolutions/); a site may add or rename them, hence the knob.
DEFAULT_RESOLUTIONS: tuple[str, ...] = ("Done", "Won't Do", "Duplicate", "Cannot Reproduce")

ISSUE_SCREEN: frozenset[str] = frozenset(
    {"project", "issuetype", "summary", "description", "labels", "priority", "assignee"}
)
# A JSM request type's issue type commonly has no Priority on its screen (DefectDojo/django-DefectDojo#2702:
# "The project lead took away the priority field off the jira screen"); the simulator's default for
# request-type issues, so a client must cope with it.
REQUEST_SCREEN: frozenset[str] = ISSUE_SCREEN - {"priority"}
# A default JSM request type's form: Summary and Description (labels and priority are not on it).
REQUEST_TYPE_FIELDS: tuple[str, ...] = ("summary", "description")

# Seconds before a write shows in JQL search; see SearchLag in devnet/jira_search.py for the source.
DEFAULT_SEARCH_DELAY = 3.0


def not_on_screen(field: str) -> str:
    return NOT_ON_SCREEN.format(field=field)
