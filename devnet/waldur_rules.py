# ruff: noqa: E501  (the rules table below is meant to be read as one row per rule)
"""The Waldur server rules the simulator holds, with their source, error and knob (read this first).

Sources are waldur-mastermind's `src/waldur_mastermind/support/` (serializers.py, views.py, filters.py,
backend/, management/commands/init_service_desk_defaults.py), `src/waldur_core/core/pagination.py` and
`src/waldur_core/logging/models.py`. Every rule is strict by default; each has a contract test in
tests/devnet/test_waldur_rules.py that sends the refused request straight to the simulator.

| id | request | refused when | status | body (exact) | source |
|----|---------|--------------|--------|--------------|--------|
| caller | POST /api/support-issues/ | `is_reported_manually` false/absent and no `caller` | 400 | {"caller": ["This field is required."]} | serializers.py IssueSerializer.validate |
| caller-link | same | `caller` not a /api/users/<uuid>/ hyperlink of a known user | 400 | {"caller": ["Invalid hyperlink - No URL match."]} / ["Invalid hyperlink - Object does not exist."] | DRF HyperlinkedRelatedField |
| manual-assignee | same | `is_reported_manually` true and `assignee` set | 400 | {"assignee": ["Assignee cannot be defined if issue is reported manually."]} | IssueSerializer.validate |
| user-email | same | the token's user has no email | 400 | ["Current user does not have email, therefore he is not allowed to create issues."] | views.py IssueViewSet.can_create_user |
| user-name | same | the token's user has no full name | 400 | ["Current user does not have full_name, therefore he is not allowed to create issues."] | IssueViewSet.can_create_user |
| type | same | `type` is not the name of an active request type (exact, case-sensitive) | 400 | {"type": ["\\"<value>\\" is not a valid choice."]} | IssueSerializer.get_fields (ChoiceField of active RequestType names; runs before validate_type) |
| type-default | same | `type` absent: the first active request type is used | - | - | IssueSerializer.get_fields default |
| priority-role | same | `priority` sent by a user who is neither staff nor support | 400 | {"priority": ["Only staff or support can specify issue priority."]} | IssueSerializer.validate_priority |
| priority | same | `priority` (any value sent, even "" or null) is not an existing Priority name (exact) | 400 | {"priority": ["Priority with requested name does not exist."]} | IssueSerializer.validate_priority |
| remote-id-unique | same | another issue has this `remote_id` | 400 | {"remote_id": ["issue with this remote id already exists."]} | models.py Issue.remote_id unique=True |
| remote-id-filter | GET /api/support-issues/?remote_id=x | (not a refusal) matches `icontains`, newest first (`-created`), paged | 200 | Link + X-Result-Count headers | filters.py IssueFilter.remote_id, models.py Issue.Meta.ordering |
| paging | any list | `page` past the last page or not a number | 404 | {"detail": "Invalid page."} | waldur_core pagination.py LinkHeaderPagination (DRF PageNumberPagination); page_size default 10, max 300 |
| throttle | any support endpoint | NEVER: no support view is throttled. The only throttle is DRF ScopedRateThrottle (DEFAULT_THROTTLE_CLASSES) with DEFAULT_THROTTLE_RATES {"oauth": "10/s"}, and it applies only to views that set `throttle_scope = "oauth"` (the social login views); a view without a scope is not throttled. Knob rate_per_second (None): a test's own limit, one bucket for every request, 429 with Retry-After and no RateLimit-Reason | - | - | waldur_core/server/base_settings.py REST_FRAMEWORK; waldur_auth_social/views.py throttle_scope; DRF ScopedRateThrottle.allow_request |
| patch-role | PATCH /api/support-issues/<uuid>/ | user is neither staff nor support | 403 | {"detail": "You do not have permission to perform this action."} | views.py partial_update_permissions |
| patch-backend | same | backend's `update_is_available` is False (atlassian, zammad, smax) | 400 | ["Updating is not available."] | views.py IssueViewSet._update_is_available_validator |
| patch-protected | same | `type`, `priority`, `caller`, `customer`, `project`, `remote_id` are read-only on PATCH (ignored, not refused) | 200 | - | serializers.py Meta.protected_fields |
| set-status-role | POST /api/support-issues/<uuid>/set_status/ | user is neither staff nor support | 403 | {"detail": "You do not have permission to perform this action."} | views.py set_status_permissions |
| set-status-backend | same | backend's `update_is_available` is False | 400 | ["Updating is not available."] | views.py validate_status_change_allowed |
| set-status-value | same | `status` not in the issue's `available_statuses` | 400 | {"status": ["Issue cannot be moved from '<old>' to '<new>'."]} | INFERRED: SetIssueStatusSerializer is not in the stored sources; wording follows views.py bulk_update |
| set-status-missing | same | no `status` | 400 | {"status": ["This field is required."]} | DRF required field |
| attachment-required | POST /api/support-attachments/ (multipart: `issue` URL, `file`) | `issue` or `file` part missing (every field's error at once) | 400 | {"issue": ["This field is required."], "file": ["No file was submitted."]} | serializers.py AttachmentSerializer (HyperlinkedModelSerializer; DRF FileField.required) |
| attachment-not-file | same | `file` sent as a plain form field (no filename) | 400 | {"file": ["The submitted data was not a file. Check the encoding type on the form."]} | DRF FileField.to_internal_value |
| attachment-empty | same | the file has 0 bytes | 400 | {"file": ["The submitted file is empty."]} | DRF FileField allow_empty_file=False |
| attachment-issue-link | same | `issue` is not a /api/support-issues/<uuid>/ URL / names no issue | 400 | {"issue": ["Invalid hyperlink - No URL match."]} / ["Invalid hyperlink - Object does not exist."] | DRF HyperlinkedRelatedField over Issue.objects.all() (not filtered by user) |
| attachment-extension | same | the name's extension is a substring of constance ATLASSIAN_EXCLUDED_ATTACHMENT_TYPES (default ""): a name WITHOUT an extension is refused by default | 400 | {"non_field_errors": ["Invalid file extension"]} | AttachmentSerializer.validate (`file_extension in config...`); knob excluded_attachment_types |
| attachment-available | same | smax backend and the issue is not active | 400 | {"non_field_errors": ["Adding attachments is not available."]} | AttachmentSerializer.validate; backend/smax.py attachment_create_is_available |
| attachment-caller | same | user is not staff and not the issue's caller (nor the customer's owner, not modelled): support attaching to an issue whose caller is someone else | 403 | {"detail": "You do not have permission to perform this action."} | AttachmentSerializer.validate (exceptions.PermissionDenied) |
| attachment-name | same (accepted) | the stored name is the basename made valid (spaces to "_", only [-\\w.] kept) and, when taken, suffixed "_<7 random>" before the extension; `file_name` is that name | 201 | - | Django FileField generate_filename, get_valid_filename, Storage.get_available_name; AttachmentSerializer.get_file_name |
| attachment-json | same / GET | url, uuid, issue, issue_key, created, file (= absolute /api/media/<File uuid hex>/), mime_type (sniffed from the bytes, not the part's Content-Type), file_size, file_name, backend_id, destroy_is_available: NO author and NO public/internal flag | 201/200 | - | AttachmentSerializer.Meta.fields; models.py Attachment.mime_type/file_size (media File); media/storage.py DatabaseStorage._save (libmagic) and url |
| attachment-visibility | GET /api/support-attachments/[<uuid>/] | user is not staff: only attachments of issues they are the caller of (support too) | 200 / 404 | {"detail": "No Attachment matches the given query."} | managers.py AttachmentQuerySet.filter_for_user; views.py AttachmentViewSet.get_queryset |
| attachment-filters | GET /api/support-attachments/ | filters `issue` (URL) and `issue_uuid` only; `issue_uuid` not a UUID | 400 | {"issue_uuid": ["Enter a valid UUID."]} | filters.py AttachmentFilter |
| attachment-media | GET /api/media/<uuid>/ | the token's user may not see the attachment, or no such file | 404 | {"detail": "Not found."} | waldur_core media/views.py MediaView.get, check_file_permissions |
| attachment-destroy | DELETE /api/support-attachments/<uuid>/ | backend basic or atlassian (always), smax when the issue is not active | 400 | ["Destroying is not available."] | views.py AttachmentViewSet.destroy_validators; backend/__init__.py attachment_destroy_is_available; zammad.py, smax.py |
| attachment-hooks | POST / DELETE attachment | `attachment_created` / `attachment_deleted` hooks, context with attachment_uuid | - | - | handlers.py log_attachment_save / log_attachment_delete |
| attachment-413 | POST /api/support-attachments/ | NOT Waldur's code (no size validator on Attachment.file): a fronting proxy's body limit, knob upload_limit (None) | 413 | nginx's HTML page | INFERRED: deployment nginx client_max_body_size |
| comment-author | GET comments | comment by a support user with no Waldur user: `author_uuid`, `author_email`, `author_image` are LEFT OUT, `author_user` is null | 200 | - | serializers.py CommentSerializer (dotted source over a null FK -> SkipField) |
| comment-visibility | GET /api/support-comments/ | user is not staff: only public comments and the user's own are listed (support too) | 200 | - | views.py CommentViewSet.get_queryset |
| comment-order | same | newest first unless `o` says otherwise | 200 | - | models.py Comment.Meta.ordering |
| comment-public | POST .../comment/ | `is_public` absent: the comment is public | 201 | - | models.py Comment.is_public default=True |
| issue-visibility | GET issues | user neither staff nor support sees only issues whose caller they are (404 on others) | 200 | - | filters.py IssueCallerOrRoleFilterBackend |
| issue-nonstaff | GET issues | user neither staff nor support: `link`, `processing_log`, `is_routed`, `provider_ticket_info`, `provider_helpdesk`, `parent_issue` are LEFT OUT | 200 | - | IssueSerializer.get_fields, IssueSerializer.to_representation |
| issue-null-links | GET issues | `reporter_*`, `assignee_*`, `customer_*`, `project_*` uuid/name are LEFT OUT when that link is null | 200 | - | waldur_core AugmentedSerializerMixin related_paths (ReadOnlyField over a null FK) |
| agent-token | any | `Authorization: Token waldur-agent-token` is a second user ("Agent Smith", `agent_role`, a linked support user); every HTTP change acts as the token's user (comment author, manual caller, hook `user_*`); `revoke_token()` revokes the sidecar's only | 401 for other tokens | {"detail": "Invalid token."} | DRF TokenAuthentication; serializers.py CommentSerializer.create (author = the user's support user) |
| modified-save | PATCH / set_status | `modified` moves on every save of the issue, a PATCH that changes nothing included; the update hook fires only when a field changed | 200 | - | model_utils TimeStampedModel (AutoLastModifiedField); views.py perform_update; handlers.py log_issue_save |
| modified-comment | POST .../comment/ | a comment does NOT move the issue's `modified` (only the comment is saved) | 201 | - | views.py IssueViewSet.comment; backend/basic.py create_comment does nothing |
| issue-ordering | GET /api/support-issues/?o= | `o` outside created, modified, type, status, priority, summary, customer_name, project_name, caller_first_name, caller_last_name, reporter_name, assignee_name, remote_id, key (each also with "-"; comma-separated) | 400 | {"o": ["Select a valid choice. <value> is not one of the available choices."]} | filters.py IssueFilter.o (KeyOrderingFilter); django-filter DjangoFilterBackend raises the form errors |
| issue-no-range | same | there is NO created/modified range filter (`modified_after` etc.); django-filter ignores unknown params (the whole list comes back; the contract check refuses them): page `o=-modified` and stop at older | - | - | filters.py IssueFilter; waldur-api-client support_issues_list |
| issue-filter-uuid | same | `customer_uuid` / `project_uuid` not a UUID | 400 | {"customer_uuid": ["Enter a valid UUID."]} | IssueFilter UUIDFilter (forms.UUIDField) |
| comment-ordering | GET /api/support-comments/?o= | `o` outside created, modified (and "-" forms) | 400 | {"o": ["Select a valid choice. <value> is not one of the available choices."]} | filters.py CommentFilter.o |
| comment-filters | same | filters: description, issue, issue_uuid, author_name, author_user, is_public, remote_id_is_set; NO created range, NO customer/project filter | - | - | filters.py CommentFilter; waldur-api-client support_comments_list |
| comment-filter-uuid | same | `issue_uuid` not a UUID | 400 | {"issue_uuid": ["Enter a valid UUID."]} | CommentFilter.issue_uuid (UUIDFilter) |
| comment-fields | GET comments | an answer has url, uuid, issue (hyperlink), issue_key, description, is_public, author_name, author_uuid (the author's Waldur USER uuid), author_user, author_email, backend_id, remote_id, created, update/destroy_is_available: no `modified`, no `issue_uuid` | 200 | - | serializers.py CommentSerializer.Meta.fields |
| hook-json | POST to hook | content_type json (the default when omitted): JSON {"created", "message", "context", "event_type"} | - | - | waldur_core/logging/models.py WebHook.process |
| hook-form | same | content_type form: form-encoded; `context` carries only the context's KEY NAMES (requests encodes a dict value by iterating it) | - | - | WebHook.process `requests.post(data=payload)` |

Statuses (backend/basic.py BasicBackend): a new issue opens in "Open"; `available_statuses` is every
registered status except the current one: "Open" plus the seeded terminal statuses "Resolved" and
"Canceled" (init_service_desk_defaults.py DEFAULT_STATUSES) unless a workflow (IssueStatusTransition)
is configured. Remote backends (atlassian, zammad, smax): `update_is_available` False,
`available_statuses` [] (backend/__init__.py SupportBackend), status set by the remote desk only.

Hook event context (waldur_core logging loggers.py compile_context over models.py Issue.get_log_fields):
issue_uuid (hex), issue_type, issue_key, issue_status, issue_link, issue_summary, caller_uuid,
caller_username, caller_full_name, customer_*/project_* (or issue_customer/issue_project = "None"),
the acting user's user_*, and for attachment events attachment_uuid. No remote_id and no URL: a
receiver fetches the issue by uuid. A hook created without content_type is JSON (models.py WebHook
content_type default); only an explicit "form" hook is form-encoded, and it loses the context values.

Knobs (WaldurSim(...) keyword arguments; all strict/stock by default):
- request_types=("Service Request",)  the active request types; stock basic deployment after
  `init_service_desk_defaults` (DEFAULT_REQUEST_TYPE). INCIDENT/SERVICE_REQUEST/... are refused.
- priorities=()  Priority names; a stock basic deployment has none (BasicBackend.pull_priorities
  does nothing; rows only come from a remote desk such as Jira: ("Highest", "High", "Medium", "Low", "Lowest")).
- backend="basic"  one of "basic", "atlassian", "zammad", "smax".
- role="support"  the token user's role: "staff", "support" or "user" (neither).
- user_email / user_full_name  the token user's email and full name ("" refuses every create).
- statuses=("Resolved", "Canceled")  the registered terminal statuses (basic backend).
- status_transitions=None  {from: {to, ...}} workflow; None lets any registered status follow any other.
- agent_linked=False  whether the in-process agent's (`agent_comment`...) support user has a Waldur user
  (False: author_* left out).
- agent_token="waldur-agent-token", agent_full_name="Agent Smith", agent_role="support" ("staff" or
  "support")  the HTTP agent (`sim.http_agent`, support user `sim.http_agent_support`); None: no second token.
- upload_limit=None  a fronting proxy's request body limit for attachment uploads (413); None: none.
- excluded_attachment_types=""  constance ATLASSIAN_EXCLUDED_ATTACHMENT_TYPES (see attachment-extension).
- rate_per_second=None, burst=100  no rate limit (see throttle); a number puts every request behind one bucket.
The token user's hyperlink for `caller` is `sim.user_url()` (`sim.url("users", sim.me.uuid)`).
"""

from __future__ import annotations

from typing import Final

STOCK_REQUEST_TYPES: Final = ("Service Request",)
STOCK_PRIORITIES: Final[tuple[str, ...]] = ()
JIRA_DEFAULT_PRIORITIES: Final = ("Highest", "High", "Medium", "Low", "Lowest")
STOCK_TERMINAL_STATUSES: Final = ("Resolved", "Canceled")
BASIC_DEFAULT_STATUS: Final = "Open"
BACKENDS: Final = ("basic", "atlassian", "zammad", "smax")
ROLES: Final = ("staff", "support", "user")
UPDATABLE_BACKENDS: Final = frozenset({"basic"})

CALLER_REQUIRED: Final = "This field is required."
MANUAL_ASSIGNEE: Final = "Assignee cannot be defined if issue is reported manually."
NO_EMAIL: Final = "Current user does not have email, therefore he is not allowed to create issues."
NO_FULL_NAME: Final = "Current user does not have full_name, therefore he is not allowed to create issues."
PRIORITY_ROLE: Final = "Only staff or support can specify issue priority."
PRIORITY_MISSING: Final = "Priority with requested name does not exist."
UPDATE_NOT_AVAILABLE: Final = "Updating is not available."
PERMISSION_DENIED: Final = "You do not have permission to perform this action."
INVALID_PAGE: Final = "Invalid page."


def invalid_choice(value: object) -> str:
    """DRF ChoiceField's message for a value outside its choices."""
    return f'"{value}" is not a valid choice.'


def cannot_move(old: str, new: str) -> str:
    """Refusal of a status outside `available_statuses` (wording inferred, see the table)."""
    return f"Issue cannot be moved from '{old}' to '{new}'."


# Attachments (serializers.py AttachmentSerializer, DRF field messages; see the attachment rows).
FIELD_REQUIRED: Final = "This field is required."
NO_URL_MATCH: Final = "Invalid hyperlink - No URL match."
OBJECT_DOES_NOT_EXIST: Final = "Invalid hyperlink - Object does not exist."
NO_FILE: Final = "No file was submitted."
NOT_A_FILE: Final = "The submitted data was not a file. Check the encoding type on the form."
EMPTY_FILE: Final = "The submitted file is empty."
INVALID_EXTENSION: Final = "Invalid file extension"
ATTACH_NOT_AVAILABLE: Final = "Adding attachments is not available."
DESTROY_NOT_AVAILABLE: Final = "Destroying is not available."
NGINX_413: Final = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
