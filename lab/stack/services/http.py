"""Small blocking HTTP helpers for readiness probes and checks (not for load: see lab.loadgen)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET `url` and decode its JSON body; raises on a non-2xx status or a network error."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def post_json(url: str, document: Any, timeout_s: float = 5.0) -> Any:
    """POST a JSON document to `url` and decode the JSON answer."""
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())
