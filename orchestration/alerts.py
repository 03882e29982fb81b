"""Alert delivery: a Slack-compatible JSON message to a webhook, always logged too."""

from __future__ import annotations

import json
import logging
import urllib.request

from platform_core.database import redact_url

logger = logging.getLogger("attribution.alerts")


def slack_message(title: str, lines: list[str]) -> dict[str, object]:
    """Slack's incoming-webhook format: `text` is shown everywhere, blocks where supported."""
    text = f"*{title}*\n" + "\n".join(f"• {line}" for line in lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def send_alert(webhook_url: str, title: str, lines: list[str], timeout: float = 10.0) -> bool:
    """Log the alert; post it when a webhook is configured. Returns whether it was posted."""
    message = slack_message(title, [redact_url(line) for line in lines])
    logger.warning("ALERT %s", message["text"])
    if not webhook_url:
        return False
    request = urllib.request.Request(
        webhook_url,
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - operator-configured URL
            return 200 <= response.status < 300
    except OSError as exc:
        logger.error("alert webhook failed: %s", exc)
        return False
