"""One settings object, read from the environment (``STUDIO_*``) at start-up."""

from __future__ import annotations

__all__ = ["Settings"]

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from auth.oidc import OidcProvider
from graphs.outbox import SmtpSettings


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agent-studio"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Folder for the database and checkpoints."
    )
    http_allow: str = Field(
        default="",
        description="Comma-separated host or host:port list the HTTP tool and webhooks may "
        "reach even though they are private or loopback addresses.",
    )
    max_concurrency: int = Field(default=4, ge=1, le=256, description="Runs at once.")
    lease_ttl_s: float = Field(default=30.0, gt=0, description="Run lease time-to-live.")
    smtp_host: str = Field(default="", description="SMTP server for e-mail; empty: keep queued.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.")
    smtp_sender: str = Field(default="studio@localhost", description="From address.")
    smtp_starttls: bool = Field(default=False, description="Upgrade with STARTTLS.")
    public_url: str | None = Field(
        default=None,
        description="The studio's public origin (e.g. https://studio.example.com), used for "
        "OIDC callback URLs; default: derived from each request.",
    )
    secure_cookies: bool = Field(
        default=False, description="Send the session cookie over HTTPS only (set behind TLS)."
    )
    storage_secret: str = Field(
        default="",
        description="Secret that signs the browser's UI-state cookie; default: a key file "
        "created in the data folder with mode 0600.",
    )
    oidc_providers: list[OidcProvider] = Field(
        default_factory=list,
        description="OIDC identity providers, as a JSON list of objects (name, issuer, "
        "client_id, client_secret_name, ...); each gets a sign-in button.",
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.db"

    def smtp(self) -> SmtpSettings | None:
        if not self.smtp_host:
            return None
        return SmtpSettings(self.smtp_host, self.smtp_port, self.smtp_sender, self.smtp_starttls)

    def allow_hosts(self) -> frozenset[str]:
        return frozenset(h.strip() for h in self.http_allow.split(",") if h.strip())
