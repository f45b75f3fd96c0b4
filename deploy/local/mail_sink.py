"""The local SMTP sink `make run` points notification's e-mail channels at: it accepts every
message and saves it as one ``.eml`` file (open it in any mail client, or read it as text), so
e-mail can be tried without a real relay and nothing leaves the machine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope


class SaveAsEml:
    """aiosmtpd handler: each message's bytes, as received, into ``folder/<time>-<id>.eml``."""

    def __init__(self, folder: Path, on_saved: Callable[[Path], None]) -> None:
        self.folder = folder
        self.on_saved = on_saved

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}.eml"
        partial = self.folder / f".{name}.part"
        # Written aside, then renamed: whoever watches the folder never sees half a message.
        partial.write_bytes(envelope.original_content or b"")
        path = partial.rename(self.folder / name)
        self.on_saved(path)
        return "250 Message accepted for delivery"


async def start_mail_sink(
    host: str, port: int, folder: Path, on_saved: Callable[[Path], None]
) -> asyncio.Server:
    """Listen on ``host:port`` in the running event loop; close the returned server to stop."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    handler = SaveAsEml(folder, on_saved)
    return await loop.create_server(
        lambda: SMTP(handler, hostname="refex-mail-sink", loop=loop), host, port
    )
