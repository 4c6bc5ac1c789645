"""Screenshots of every page of the built site at a phone width (390 px) and a desktop width (1280 px),
light and dark, for a person to look at (not a test).

    LC_SITE_DIR=/tmp/site .venv/bin/python tests/browser/shoot_pages.py OUT_DIR [PAGE ...]

Each page is loaded, Python is waited for (on widget pages), and the page is captured whole
(full_page); the file names are PAGE-WIDTH-SCHEME.png.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from site_support import CHROMIUM, CHROMIUM_ARGS, site_pages  # noqa: E402

# What a reader sees on arrival: the prerendered numbers, Python not started (it starts on a first touch).
SETTLED = "() => !document.querySelector('[data-widget], [data-runnable]') || (window.loracalcPython && " \
          "document.querySelector('.lc-py-status'))"


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    site = Path(os.environ.get("LC_SITE_DIR", "site"))
    pages = sys.argv[2:] or site_pages(site)
    from playwright.sync_api import sync_playwright
    from serve_site import start

    server = start(str(site))
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for width, height, mobile in ((390, 844, True), (1280, 900, False)):
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                              is_mobile=mobile, has_touch=mobile)
                page = context.new_page()
                for path in pages:
                    page.goto(base + path)
                    page.wait_for_function(SETTLED, timeout=120_000)
                    page.wait_for_timeout(300)
                    name = (path.strip("/").replace("/", "_") or "home")
                    page.screenshot(path=str(out / f"{name}-{width}-{scheme}.png"), full_page=True, timeout=180_000)
                context.close()
        browser.close()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
