"""The evidence dashboard: read-only pages of the evidence report behind a login, in English
and French (docs/evidence.md, "The dashboard"; docs/decisions/0023)."""

from .app import dashboard_app
from .config import DashboardConfig, DashboardSettings

__all__ = ["DashboardConfig", "DashboardSettings", "dashboard_app"]
