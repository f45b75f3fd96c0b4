from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATION_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    http_port: int = 8003
