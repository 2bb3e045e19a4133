"""Every reason code Writ gives, as a constant: what programs match on, a stable API.

A code names why something was denied, refused or failed; the message beside it says it to a
person. Codes the Rego policies give (``writ.authz``, ``writ.approval``) are here too, and a test
checks that every code a shipped policy can return, every code docs/policies.md documents and
every ``WritError`` code is a constant of this module (``tests/unit/test_reasons.py``).

    from writ.engine.core import reasons
    raise ClaimRefused("step 2 already ran", code=reasons.STEP_ALREADY_CLAIMED)
"""

from __future__ import annotations

from typing import Final

# -- errors (the default code of each WritError class) ------------------------------------------
WRIT_ERROR: Final = "writ_error"
CONFIG_INVALID: Final = "config_invalid"
INPUT_INVALID: Final = "input_invalid"
POLICY_INVALID: Final = "policy_invalid"
ENGINE_ERROR: Final = "engine_error"
STORE_UNAVAILABLE: Final = "store_unavailable"
STORE_MISSING: Final = "store_missing"
STORE_CORRUPT: Final = "store_corrupt"
AUDIT_UNAVAILABLE: Final = "audit_unavailable"
VERIFICATION_FAILED: Final = "verification_failed"
ENVELOPE_INVALID: Final = "envelope_invalid"
SIGNATURE_INVALID: Final = "signature_invalid"
NOT_FOUND: Final = "not_found"
CONFLICT: Final = "conflict"
NOT_PERMITTED: Final = "not_permitted"
CLAIM_REFUSED: Final = "claim_refused"
APPROVAL_REFUSED: Final = "approval_refused"
APPROVAL_POLICY_FAILED: Final = "approval_policy_failed"
PATH_REFUSED: Final = "path_refused"
INTERRUPTED: Final = "interrupted"

# -- input from outside ---------------------------------------------------------------------------
INPUT_NOT_JSON: Final = "input_not_json"
INPUT_TOO_LARGE: Final = "input_too_large"
INPUT_TOO_DEEP: Final = "input_too_deep"
INPUT_INCOMPLETE: Final = "input_incomplete"
JSON_INVALID: Final = "json_invalid"
JSON_DUPLICATE_KEY: Final = "json_duplicate_key"
JSON_INVALID_NUMBER: Final = "json_invalid_number"
JSON_INVALID_UNICODE: Final = "json_invalid_unicode"
NOT_CANONICALIZABLE: Final = "not_canonicalizable"
ARGUMENTS_INVALID: Final = "arguments_invalid"
FILE_EXISTS: Final = "file_exists"
SETTINGS_CONFLICT: Final = "settings_conflict"
PORT_IN_USE: Final = "port_in_use"

# -- the policy engine and the decision point (fail closed) ---------------------------------------
ENGINE_TIMEOUT: Final = "engine_timeout"
ENGINE_UNAVAILABLE: Final = "engine_unavailable"
POLICY_UNDEFINED: Final = "policy_undefined"
POLICY_RESULT_INVALID: Final = "policy_result_invalid"
DENIED_WITHOUT_REASON: Final = "denied_without_reason"

# -- writ.authz: may this principal make this call? -----------------------------------------------
SESSION_LOCKED: Final = "session_locked"
ROLE_NOT_PERMITTED: Final = "role_not_permitted"
PLANNER_CANNOT_WRITE: Final = "planner_cannot_write"
ROLE_CANNOT_WRITE: Final = "role_cannot_write"
PLAN_REQUIRED: Final = "plan_required"
SELF_EXECUTION: Final = "self_execution"
PLAN_EXPIRED: Final = "plan_expired"
PLAN_NOT_APPROVED: Final = "plan_not_approved"
STEP_NOT_IN_PLAN: Final = "step_not_in_plan"
LOCK_SESSION: Final = "lock_session"  # an obligation, not a deny reason

# -- writ.approval: what a plan needs, and why an approval is not counted ---------------------------
PLAN_TTL_TOO_LONG: Final = "plan_ttl_too_long"
PLAN_EMPTY: Final = "plan_empty"
SELF_APPROVAL: Final = "self_approval"
NOT_AN_APPROVER: Final = "not_an_approver"
WRONG_PLAN: Final = "wrong_plan"
KEY_INVALID: Final = "key_invalid"
NOT_IN_REQUIRED_GROUP: Final = "not_in_required_group"
DUPLICATE_APPROVER: Final = "duplicate_approver"
APPROVAL_MALFORMED: Final = "approval_malformed"
APPROVAL_POLICY_DENIED: Final = "approval_policy_denied"

# -- plans: submitting, reading, executing ------------------------------------------------------
PLAN_INVALID: Final = "plan_invalid"
PLAN_NOT_CANONICAL: Final = "plan_not_canonical"
PLAN_ID_INVALID: Final = "plan_id_invalid"
PLAN_INCOMPLETE: Final = "plan_incomplete"
PLAN_EXISTS: Final = "plan_exists"
PLAN_NOT_FOUND: Final = "plan_not_found"
PLAN_AMBIGUOUS: Final = "plan_ambiguous"
PLAN_NOT_PENDING: Final = "plan_not_pending"
PLAN_REJECTED: Final = "plan_rejected"
PLAN_STATE_CONFLICT: Final = "plan_state_conflict"
PLAN_TAMPERED: Final = "plan_tampered"
PLAN_NOT_EXECUTING: Final = "plan_not_executing"
PLAN_ALREADY_EXECUTING: Final = "plan_already_executing"
ILLEGAL_TRANSITION: Final = "illegal_transition"
EXECUTOR_MISMATCH: Final = "executor_mismatch"
SEPARATION_OF_DUTIES: Final = "separation_of_duties"
STEP_ALREADY_CLAIMED: Final = "step_already_claimed"
STEP_OUT_OF_ORDER: Final = "step_out_of_order"
STEP_MISMATCH: Final = "step_mismatch"
STEP_NOT_CLAIMED: Final = "step_not_claimed"
STEP_RESULT_RECORDED: Final = "step_result_recorded"
STEP_FAILED: Final = "step_failed"
PLAN_NOT_BACKED: Final = "plan_not_backed"
STATEMENT_INVALID: Final = "statement_invalid"
PAYLOAD_TYPE_MISMATCH: Final = "payload_type_mismatch"
THRESHOLD_INVALID: Final = "threshold_invalid"

# -- principals, keys and the trust store -------------------------------------------------------
PRINCIPAL_INVALID: Final = "principal_invalid"
PRINCIPAL_EXISTS: Final = "principal_exists"
PRINCIPAL_NOT_FOUND: Final = "principal_not_found"
ROLE_INVALID: Final = "role_invalid"
GROUP_INVALID: Final = "group_invalid"
GROUP_MEMBER_EXISTS: Final = "group_member_exists"
GROUP_MEMBER_NOT_FOUND: Final = "group_member_not_found"
TRUST_INVALID: Final = "trust_invalid"
KEY_EXISTS: Final = "key_exists"
KEY_NOT_FOUND: Final = "key_not_found"
KEY_AMBIGUOUS: Final = "key_ambiguous"
KEY_ALREADY_REVOKED: Final = "key_already_revoked"
KEY_ID_INVALID: Final = "key_id_invalid"
KEY_DIR_INSECURE: Final = "key_dir_insecure"
KEY_FILE_EXISTS: Final = "key_file_exists"
KEY_FILE_INSECURE: Final = "key_file_insecure"
KEY_FILE_UNREADABLE: Final = "key_file_unreadable"
KEY_FILE_UNWRITABLE: Final = "key_file_unwritable"
SIGNING_KEY_MISSING: Final = "signing_key_missing"
SIGNING_KEY_UNTRUSTED: Final = "signing_key_untrusted"
PRINCIPAL_LOCKED: Final = "principal_locked"
PRINCIPAL_NOT_LOCKED: Final = "principal_not_locked"
PRINCIPAL_DISABLED: Final = "principal_disabled"

# -- the MCP gateway ------------------------------------------------------------------------------
GATEWAY_ERROR: Final = "gateway_error"
OBLIGATION_UNFULFILLED: Final = "obligation_unfulfilled"
UPSTREAM_UNAVAILABLE: Final = "upstream_unavailable"
UPSTREAM_TIMEOUT: Final = "upstream_timeout"
TOOL_UNKNOWN: Final = "tool_unknown"
NO_PLAN_BOUND: Final = "no_plan_bound"
PLAN_ALREADY_BOUND: Final = "plan_already_bound"
STEP_NOT_A_WRITE: Final = "step_not_a_write"
SECRETS_EXPOSED: Final = "secrets_exposed"
SERVER_NAME_AMBIGUOUS: Final = "server_name_ambiguous"
TOOL_NAME_AMBIGUOUS: Final = "tool_name_ambiguous"
SESSION_AMBIGUOUS: Final = "session_ambiguous"
NO_SESSION: Final = "no_session"
CLIENT_UNSUPPORTED: Final = "client_unsupported"
PATH_ROOT_CHANGED: Final = "path_root_changed"
RESULT_TOO_LARGE: Final = "result_too_large"
MESSAGE_NOT_JSON: Final = "message_not_json"
MESSAGE_INVALID: Final = "message_invalid"

# -- HTTP: tokens, origins, sessions ----------------------------------------------------------------
TOKEN_MISSING: Final = "token_missing"
TOKEN_INVALID: Final = "token_invalid"
TOKEN_NOT_FOUND: Final = "token_not_found"
TOKEN_REVOKED: Final = "token_revoked"
ORIGIN_FORBIDDEN: Final = "origin_forbidden"
SESSION_FORBIDDEN: Final = "session_forbidden"
NO_BUNDLE: Final = "no_bundle"
CONTENT_TYPE_UNSUPPORTED: Final = "content_type_unsupported"
API_ROLE_FORBIDDEN: Final = "api_role_forbidden"
RATE_LIMITED: Final = "rate_limited"
NOT_READY: Final = "not_ready"

# -- the web approval form (writ serve): invites, browser keys, logins, sessions ------------------
INVITE_NOT_FOUND: Final = "invite_not_found"
INVITE_USED: Final = "invite_used"
INVITE_EXPIRED: Final = "invite_expired"
INVITE_ROLE_FORBIDDEN: Final = "invite_role_forbidden"
ENROL_INVALID: Final = "enrol_invalid"
CHALLENGE_INVALID: Final = "challenge_invalid"
LOGIN_FAILED: Final = "login_failed"
WEB_ROLE_FORBIDDEN: Final = "web_role_forbidden"
LOGIN_REQUIRED: Final = "login_required"
CSRF_TOKEN_MISSING: Final = "csrf_token_missing"
CSRF_TOKEN_INVALID: Final = "csrf_token_invalid"
ORIGIN_MISSING: Final = "origin_missing"
PLAN_FORBIDDEN: Final = "plan_forbidden"
APPROVER_MISMATCH: Final = "approver_mismatch"
DECISION_NOT_SIGNED: Final = "decision_not_signed"

# -- the approval workflow (Temporal) and notifications --------------------------------------------
WORKFLOW_UNAVAILABLE: Final = "workflow_unavailable"
WORKFLOW_MISSING: Final = "workflow_missing"
WORKFLOW_FAILED: Final = "workflow_failed"
TEMPORAL_START_FAILED: Final = "temporal_start_failed"
INSTANCE_KEY_MISSING: Final = "instance_key_missing"
NOTIFICATION_FAILED: Final = "notification_failed"

# -- the audit log's Merkle tree and signed checkpoints ---------------------------------------------
PROOF_INVALID: Final = "proof_invalid"
CHECKPOINT_INVALID: Final = "checkpoint_invalid"
CHECKPOINT_FAILED: Final = "checkpoint_failed"

# -- the demo -----------------------------------------------------------------------------------------
DEMO_PREREQUISITES: Final = "demo_prerequisites"
DEMO_DATA_DIR_NOT_EMPTY: Final = "demo_data_dir_not_empty"
DEMO_FAILED: Final = "demo_failed"

ALL: Final[frozenset[str]] = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
