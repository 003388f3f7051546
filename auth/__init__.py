"""Identity, workspaces, sessions, OIDC, API tokens, Casbin RBAC, secrets vault and audit log.

Each piece takes what it needs (an engine or session factory, a clock) as parameters; the
studio wires them together in `studio.context`.
"""

from auth.accounts import Accounts, UserView, WorkspaceView
from auth.actions import ACTIONS, markdown_table
from auth.audit import AuditLog, VerifyResult
from auth.rbac import Decision, Rbac, RbacApprovalAuthority, Resource
from auth.redact import Redactor, install_log_redaction, redact_payload
from auth.sessions import SessionView, WebSessions
from auth.tokens import ApiTokens, TokenPrincipal
from auth.vault import Vault, load_keyring

__all__ = [
    "ACTIONS",
    "Accounts",
    "ApiTokens",
    "AuditLog",
    "Decision",
    "Rbac",
    "RbacApprovalAuthority",
    "Redactor",
    "Resource",
    "SessionView",
    "TokenPrincipal",
    "UserView",
    "Vault",
    "VerifyResult",
    "WebSessions",
    "WorkspaceView",
    "install_log_redaction",
    "load_keyring",
    "markdown_table",
    "redact_payload",
]
