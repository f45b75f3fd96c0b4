"""The ``refex`` operator command line. Each group belongs to the service it operates."""

from __future__ import annotations

import typer

from services.evidence.cli import app as evidence_app
from services.intake.cli import app as intake_app
from services.notification.cli import app as notification_app
from services.referral.cli import app as referral_app

from . import demo, platform

app = typer.Typer(help="Referral Exchange operator commands.", no_args_is_help=True)
app.add_typer(platform.app, name="platform")
app.add_typer(intake_app, name="intake")
app.add_typer(referral_app, name="referral")
app.add_typer(notification_app, name="notification")
app.add_typer(evidence_app, name="evidence")
app.add_typer(demo.app, name="demo")

if __name__ == "__main__":
    app()
