"""The calculators' "Load from the Hub" box: a model's config.json from huggingface.co, by its id.

The page calls this twice around the one request it makes to another host, and only on the reader's click:

1. ``hub_config(repo_id=ID)``: the engine checks the id and builds the URL (``loracalc.hub``, the same rules and
   URL as ``loracalc --config ID``); outputs ``url`` and a ``note`` to show while the request is out.
2. the page fetches that URL with the browser's ``fetch()`` (no cookies, no token, not cached) and sends back
   what came: ``hub_config(repo_id=ID, status=HTTP status or "0" when nothing answered, body=the text,
   error_code=the X-Error-Code header if the browser may read it, reason=the browser's error)``. Outputs
   ``config``, the file's text with the model named by its id, which the page puts into the config box as if
   pasted, so it is read exactly as a pasted file is; or the engine's one line (field ``repo_id``) for any other answer.
"""
from __future__ import annotations

import json
from typing import Any

from loracalc import hub

from . import _common as c
from .registry import widget


@widget("hub_config")
def hub_config(repo_id: str = "", status: str = "", body: str = "", error_code: str = "", reason: str = "",
               **_: Any) -> dict[str, Any]:
    name, _rev = hub.parse_id(repo_id, "repo_id")
    url = hub.config_url(repo_id, "repo_id")
    host = hub.endpoint().partition("://")[2]
    if not c.text(status):
        return {"url": url, "note": f"Asking {host} for {name}'s config.json\u2026"}
    code = c.integer(status, "status", 0, 999, "HTTP status")
    if code != 200:
        raise hub.answer_error(name, code, c.text(error_code), c.text(reason)[:120], where="page", field="repo_id")
    cfg = hub.config_from_body(name, body, "repo_id")
    return {"config": json.dumps(cfg, indent=2, ensure_ascii=False),
            "note": f"Loaded {name}'s config.json from {host} (the model's numbers below are for it)."}
