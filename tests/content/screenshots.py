"""Screenshots of every module page, light and dark, wide and narrow (not a test; run by hand).

    .venv/bin/mkdocs build -d /tmp/content-site
    .venv/bin/python tests/content/screenshots.py /tmp/content-site /tmp/content-shots

Serves the built site on localhost, opens each page in headless Chromium and writes
PAGE-{light,dark}-{1280,390}.png. The site's palette follows the system setting until the reader picks
one, so the browser context's emulated colour scheme selects light or dark (Material's "slate").
"""
from __future__ import annotations

import functools
import http.server
import sys
import threading
from pathlib import Path

PAGES = ["", "when-to-fine-tune/", "rank-trick/", "gpu-memory/", "qlora/", "training-recipe/",
         "lora-in-the-wild/", "knowledge-check/", "complete/", "references/"]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main(site: str, out: str, only: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    Path(out).mkdir(parents=True, exist_ok=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site)
    http.server.SimpleHTTPRequestHandler.extensions_map[".wasm"] = "application/wasm"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for scheme in ("light", "dark"):
            for width in (1280, 390):
                ctx = browser.new_context(viewport={"width": width, "height": 900},
                                          color_scheme=scheme, device_scale_factor=1)
                ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                          else route.abort())
                page = ctx.new_page()
                for p in PAGES:
                    name = (p.strip("/") or "index")
                    if only and only not in name:
                        continue
                    page.goto(base + p, wait_until="load")
                    page.wait_for_timeout(800)
                    page.screenshot(path=f"{out}/{name}-{scheme}-{width}.png", full_page=True)
                ctx.close()
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
