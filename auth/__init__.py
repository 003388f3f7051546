"""Identity, workspaces, RBAC, secrets vault and audit log (see the identity issue)."""
