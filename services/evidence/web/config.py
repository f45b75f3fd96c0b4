"""The dashboard's settings: the fields the evidence service's settings inherit
(``EVIDENCE_DASHBOARD_*``), and what the web app is given of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings
from shared.web.throttle import ThrottlePolicy


class DashboardSettings(ServiceSettings):
    """A service's settings with the dashboard's (the evidence service's settings are these)."""

    dashboard_session_key: SecretStr = Field(
        description="Signs the dashboard's session cookies (32 random bytes, base64). "
        "Changing it logs everyone out."
    )
    dashboard_session_idle_s: float = Field(
        default=8 * 3600, gt=0, description="A session not used for this long ends."
    )
    dashboard_session_max_s: float = Field(
        default=12 * 3600, gt=0, description="A session ends this long after its login anyway."
    )
    dashboard_login_free_failures: int = Field(
        default=5, ge=1, description="Failed logins of one account name before it is throttled."
    )
    dashboard_login_lockout_s: float = Field(
        default=30, gt=0, description="The first wait after those; doubles with each failure."
    )
    dashboard_login_lockout_max_s: float = Field(
        default=900, gt=0, description="The longest wait between two login attempts."
    )

    def secrets_to_check(self) -> dict[str, tuple[str | None, bool]]:
        checked = super().secrets_to_check()
        checked["dashboard_session_key"] = (self.dashboard_session_key.get_secret_value(), False)
        return checked

    def dashboard_config(self) -> DashboardConfig:
        return DashboardConfig(
            session_key=self.dashboard_session_key,
            # Outside development the dashboard is reached over HTTPS (a proxy in front).
            secure_cookies=self.environment == "production",
            session_idle_s=self.dashboard_session_idle_s,
            session_max_s=self.dashboard_session_max_s,
            throttle=ThrottlePolicy(
                free_failures=self.dashboard_login_free_failures,
                first_wait_s=self.dashboard_login_lockout_s,
                longest_wait_s=self.dashboard_login_lockout_max_s,
            ),
        )


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    session_key: SecretStr
    secure_cookies: bool  # the Secure cookie flag: outside development the dashboard is on HTTPS
    session_idle_s: float = 8 * 3600
    session_max_s: float = 12 * 3600
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
