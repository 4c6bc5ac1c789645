"""A model's ``config.json`` from the Hugging Face Hub, by the model's id (``Qwen/Qwen3-8B``, ``owner/name@rev``).

Only on request: ``loracalc --config Qwen/Qwen3-8B`` (or ``--model Qwen/Qwen3-8B``) in a terminal, and the
"Load from the Hub" button beside the calculators' config box on the site. Everything but the request itself
lives here, so the terminal and the page check the same ids, build the same URL and say the same thing about
each answer:

* ``parse_id`` / ``config_url``: the Hub's repo id rules (huggingface_hub's ``validate_repo_id``) and
  ``{endpoint}/{owner}/{name}/resolve/{revision}/config.json``, the URL ``hf_hub_download`` reads;
* ``answer_error``: one line for an answer that is not the file (401/403 gated or private, 404, unreachable);
* ``config_from_body``: the answer's text as a config dict, named by its id as ``from_pretrained`` names it.

``fetch_config`` makes the request with urllib (standard library; ``HF_ENDPOINT``, ``HF_TOKEN`` and
``HUGGING_FACE_HUB_TOKEN`` as huggingface_hub reads them). It imports urllib only when called, so this module
imports in Pyodide, where the page makes the request with the browser's ``fetch()`` instead. Nothing is cached.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote

from .errors import LoraCalcError

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 10
# The longest config.json read, from the Hub or pasted into the page (published ones are a few kB).
MAX_CONFIG_CHARS = 1_000_000

# huggingface_hub.utils._validators.REPO_ID_REGEX, with the namespace required (a bare "gpt2" is also a file
# name someone mistyped) and ASCII only (the Hub's names are): letters, digits, "_", "-", "."; neither end
# "-" or "."; at most 96 characters per part. validate_repo_id also refuses "--", ".." and a ".git" ending.
_PART = r"\b[A-Za-z0-9_.\-]{1,96}\b"
_ID = re.compile(rf"({_PART})/({_PART})", re.ASCII)
# A revision is a branch, a tag or a commit (branches may hold "/": "refs/pr/1"); it goes into the URL quoted.
_REVISION = re.compile(r"[A-Za-z0-9_.\-/]{1,255}")
_FIX = {"cli": "download config.json and pass its path",
        "page": "download config.json from the model's page and paste it here or drop the file"}


def endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` when set (a mirror, or a test's local server), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """The reader's Hub token, from ``HF_TOKEN`` or ``HUGGING_FACE_HUB_TOKEN`` (huggingface_hub's order)."""
    return (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip() or None


def looks_like_id(text: Any) -> bool:
    """Whether TEXT reads as ``owner/name`` or ``owner/name@revision`` (not as a path to a .json file)."""
    if not isinstance(text, str):
        return False
    bare = _unprefixed(text).partition("@")[0]
    return bool(_ID.fullmatch(bare)) and not bare.lower().endswith(".json")


def _unprefixed(text: Any) -> str:
    """TEXT stripped, without a leading model-page address (``https://huggingface.co/``)."""
    raw = "" if text is None else str(text).strip()
    for prefix in (endpoint() + "/", DEFAULT_ENDPOINT + "/"):
        if raw.startswith(prefix):
            return raw[len(prefix):].rstrip("/")
    return raw


def parse_id(text: Any, field: str = "config") -> tuple[str, str]:
    """``"owner/name@rev"`` (or the model page's address) -> ``("owner/name", "rev")``; the revision defaults to main."""
    raw = _unprefixed(text)
    example = "e.g. Qwen/Qwen3-8B or Qwen/Qwen3-8B@main"
    if not raw:
        raise LoraCalcError(field, f"give a model's Hub id as owner/name, {example}")
    repo_id, at, revision = raw.partition("@")
    if at and (not _REVISION.fullmatch(revision) or ".." in revision or revision.startswith("/")):
        raise LoraCalcError(field, f"{revision!r} is not a revision: give a branch, a tag or a commit after @, {example}")
    m = _ID.fullmatch(repo_id)
    if not m:
        raise LoraCalcError(field, f"{repo_id!r} is not a Hub model id: owner/name, each letters, digits, '-', '_' "
                                   f"or '.', not starting or ending with '-' or '.', at most 96 characters; {example}")
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise LoraCalcError(field, f"{repo_id!r} is not a Hub model id: the Hub refuses '--', '..' and a '.git' ending")
    return repo_id, revision or "main"


def config_url(text: Any, field: str = "config") -> str:
    """The URL of the model's config.json on the Hub (what ``hf_hub_download(id, "config.json")`` reads)."""
    repo_id, revision = parse_id(text, field)
    return f"{endpoint()}/{repo_id}/resolve/{quote(revision, safe='')}/config.json"


def answer_error(repo_id: str, status: int, error_code: str = "", reason: str = "", where: str = "cli",
                 field: str = "config") -> LoraCalcError:
    """The one line for an answer that is not the file: status 0 means no answer (offline, refused, timed out).

    ``error_code`` is the Hub's ``X-Error-Code`` header when the answer carries one (RepoNotFound, GatedRepo,
    EntryNotFound, RevisionNotFound); without it a 401 may be a gated model, a private one or a misspelt id,
    because the Hub answers an unauthenticated request for any of the three with 401."""
    fix = _FIX.get(where, _FIX["cli"])
    host = endpoint().partition("://")[2] or endpoint()
    gated_fix = ("accept its licence on the Hub, set HF_TOKEN, or pass the downloaded config.json" if where == "cli"
                 else "accept its licence on the model's page, then download config.json and paste it here "
                      "(the page sends no token)")
    if not status:
        return LoraCalcError(field, f"could not reach {host}: {reason or 'no answer'} (offline?); {fix}")
    if error_code == "GatedRepo":
        refused = " (HF_TOKEN is set: accept the licence with that account)" if where == "cli" and token() else ""
        return LoraCalcError(field, f"gated model {repo_id}: {gated_fix}{refused}")
    if error_code == "RepoNotFound":
        private = "it is private: set HF_TOKEN" if where == "cli" else "it is private"
        return LoraCalcError(field, f"no model {repo_id} on the Hub (or {private}): check the id, or {fix}")
    if error_code == "RevisionNotFound":
        return LoraCalcError(field, f"{repo_id} has no such revision: check the part after @")
    if error_code == "EntryNotFound" or status == 404:
        return LoraCalcError(field, f"no such model or no config.json: {host} has no config.json for {repo_id} "
                                    f"(check the id; a GGUF or adapter-only repo has none, use its base model's)")
    if status in (401, 403):
        refused = " (HF_TOKEN is set: can it read this model?)" if where == "cli" and token() else ""
        why = ("or a private one, or a misspelt id: the Hub answers 401 to all three" if status == 401 else
               "or one your token may not read")
        return LoraCalcError(field, f"gated model {repo_id} ({why}): {gated_fix}{refused}")
    return LoraCalcError(field, f"{host} answered HTTP {status} for {repo_id}'s config.json: try again later, or {fix}")


def config_from_body(repo_id: str, body: Any, field: str = "config") -> dict:
    """The answer's text as a config dict, with ``_name_or_path`` set to the id, as ``from_pretrained(id)`` sets it."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    if len(text) > MAX_CONFIG_CHARS:
        raise LoraCalcError(field, f"{repo_id}'s config.json is over {MAX_CONFIG_CHARS:,} characters: not a model's config")
    try:
        cfg = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LoraCalcError(field, f"{repo_id}'s config.json from the Hub is not valid JSON "
                                   f"({getattr(exc, 'msg', None) or str(exc)[:80]})") from None
    if not isinstance(cfg, dict):
        raise LoraCalcError(field, f"{repo_id}'s config.json from the Hub is not a JSON object")
    cfg["_name_or_path"] = repo_id
    return cfg


def fetch_config(text: Any, timeout: float = TIMEOUT_S, field: str = "config") -> tuple[dict, str]:
    """The model's config.json from the Hub (urllib, ``timeout`` seconds) -> (config dict, its URL)."""
    import urllib.error
    import urllib.request

    repo_id, _ = parse_id(text, field)
    url = config_url(text, field)
    request = urllib.request.Request(url, headers={"User-Agent": "loracalc", "Accept": "application/json"})
    auth = token()
    if auth:   # kept only on redirects within the same host (a renamed repo), as huggingface_hub does
        request.add_unredirected_header("Authorization", f"Bearer {auth}")
    opener = urllib.request.build_opener(_same_host_auth(auth))
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_CONFIG_CHARS + 1)
    except urllib.error.HTTPError as exc:
        code = exc.headers.get("X-Error-Code", "") if exc.headers else ""
        raise answer_error(repo_id, exc.code, code, field=field) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:   # refused, no DNS, timed out, bad endpoint
        reason = getattr(exc, "reason", None) or exc
        raise answer_error(repo_id, 0, reason=str(reason)[:120], field=field) from None
    return config_from_body(repo_id, body, field), url


def _same_host_auth(auth: str | None):
    """A redirect handler that carries the token to the same host only (never to a CDN or another site)."""
    import urllib.request
    from urllib.parse import urlsplit

    class Handler(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and auth and urlsplit(newurl).netloc == urlsplit(req.full_url).netloc:
                new.add_unredirected_header("Authorization", f"Bearer {auth}")
            return new

    return Handler()
