"""What a started service hands to the workloads: where it is and how to reach it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    """A running service of one variant, reachable from the host on 127.0.0.1."""

    service: str
    host: str
    port: int
    url: str
    container_id: str
    container_name: str
    image: str
    params: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    def public_url(self) -> str:
        """The URL with every secret masked, safe for logs and reports."""
        text = self.url
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text
