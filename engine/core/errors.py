"""Every error Writ raises on purpose, in one place.

Each error carries a stable ``code`` (what a program matches on) and a message
(what a person reads): a short fact with what was got and what was expected.
No raw ``ValueError``, ``KeyError`` or library exception should reach a user;
the CLI prints ``error[code]: message`` for any ``WritError`` and exits non-zero.

    try:
        engine = EmbeddedEngine.from_dir("policies/")
    except PolicyLoadError as e:
        print(e.code, e)      # policy_invalid  policies/authz.rego:12: ...
"""

from __future__ import annotations

from typing import Any

from writ.engine.core import reasons


class WritError(Exception):
    """Base of every error Writ raises on purpose."""

    code: str = reasons.WRIT_ERROR

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def as_json(self) -> dict[str, Any]:
        """The error for a program (``--json`` output): ``{code, message}``."""
        return {"code": self.code, "message": self.message}


class ConfigError(WritError):
    """A setting, a file path or an environment variable is wrong."""

    code = reasons.CONFIG_INVALID


class InputError(WritError):
    """Input from outside (a file, a request, an agent) is malformed or too big."""

    code = reasons.INPUT_INVALID


class PolicyLoadError(WritError):
    """A policy set could not be loaded: parse error, unsupported builtin, bad data file."""

    code = reasons.POLICY_INVALID


class PolicyEvaluationError(WritError):
    """A policy engine failed to produce a decision. The caller denies."""

    code = reasons.ENGINE_ERROR


class StoreError(WritError):
    """The database refused or failed an operation."""

    code = reasons.STORE_UNAVAILABLE


class AuditError(WritError):
    """The audit log could not be appended to or read."""

    code = reasons.AUDIT_UNAVAILABLE


class VerificationError(WritError):
    """A verification step failed: a hash chain, a signature, a bundle."""

    code = reasons.VERIFICATION_FAILED


class EnvelopeError(InputError):
    """A signed envelope (DSSE) is malformed: bad JSON, bad base64, a missing or unknown field."""

    code = reasons.ENVELOPE_INVALID


class SignatureError(VerificationError):
    """No signature by an acceptable key verifies: missing, malformed, forged, or by the wrong principal or role."""

    code = reasons.SIGNATURE_INVALID


class ApprovalError(VerificationError):
    """A plan is not approved: quorum or a required group missing, rejected, or expired."""

    code = reasons.PLAN_NOT_APPROVED


class PlanExpired(ApprovalError):
    """A plan's ``expires_at`` has passed: it can no longer be submitted, approved, begun or run."""

    code = reasons.PLAN_EXPIRED


class NotFoundError(WritError):
    """A principal, key or plan that was named does not exist (or a prefix names none)."""

    code = reasons.NOT_FOUND


class ConflictError(WritError):
    """The operation clashes with what is stored: a duplicate, or a state another process changed first."""

    code = reasons.CONFLICT


class StepAlreadyClaimed(ConflictError):
    """A plan step was claimed before: each step of a plan runs at most once."""

    code = reasons.STEP_ALREADY_CLAIMED


class PermissionDenied(WritError):
    """A principal's role, or the separation of duties, forbids what it asked for."""

    code = reasons.NOT_PERMITTED


class ClaimRefused(VerificationError):
    """A tool call is not the next approved step of an executing, unexpired plan."""

    code = reasons.CLAIM_REFUSED


class ApprovalRefused(VerificationError):
    """A signed approval or rejection was not accepted: malformed, badly signed, ineligible, or a second decision."""

    code = reasons.APPROVAL_REFUSED


class ApprovalPolicyError(PolicyEvaluationError):
    """The approval policy gave no usable answer. No requirement, no approval (fail closed)."""

    code = reasons.APPROVAL_POLICY_FAILED


class WorkflowUnavailable(WritError):
    """Temporal cannot be reached, or the plan's approval workflow cannot take the request: nothing counted."""

    code = reasons.WORKFLOW_UNAVAILABLE


class NotificationError(WritError):
    """A notice could not be delivered (webhook or email): the approval goes on, the failure is audited.

    ``retryable`` is False when trying again cannot help (a receiver answering 4xx, a channel not configured).
    """

    code = reasons.NOTIFICATION_FAILED

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class BundleError(VerificationError):
    """An attestation bundle failed one offline check; ``check`` names which, in an auditor's words."""

    def __init__(self, check: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{check}: {message}", code=code)
        self.check = check

    def as_json(self) -> dict[str, Any]:
        """``{check, code, message}``."""
        return {"check": self.check, **super().as_json()}
