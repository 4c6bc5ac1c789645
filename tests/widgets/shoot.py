"""Use every widget as a reader would and save screenshots (light, dark, and a 390 px phone width).

    LC_SITE_DIR=site .venv/bin/python tests/widgets/shoot.py OUT_DIR

Not a test: the pictures are for a person to look at. Each widget is changed the way a reader would
(typing, choosing, clicking), then the widget element is captured; one shot per widget also shows an
error message under a field, and one the formula of a memory term on keyboard focus; the model view and the
memory calculator also with a pasted config.json (and the model view with a refused one).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
READY = "() => window.loracalcPython && (window.loracalcPython.start(), window.loracalcPython.state === 'ready')"
# GPT-2 small's config.json keys, and a multimodal wrapper the engine refuses in one line
GPT2_CONFIG = '{"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}'
WRAPPER_CONFIG = '{"model_type": "llava", "text_config": {"model_type": "llama"}, "vision_config": {}}'


def settle(page, name, before):
    page.wait_for_function(
        "([n, b]) => { const w = document.querySelector(`[data-widget=\"${n}\"]`); "
        "return (w.dataset.updated && w.dataset.updated !== b && !w.hasAttribute('aria-busy') && !w.hasAttribute('data-computing')) || "
        "Array.from(w.querySelectorAll('[data-error-for]')).some(e => e.textContent.trim()); }",
        arg=[name, before], timeout=20_000)
    page.wait_for_timeout(150)


def act(page, name, field=None, value=None, click=None):
    w = page.locator(f'[data-widget="{name}"]').first
    before = w.get_attribute("data-updated") or ""
    if click:
        page.locator(click).first.click()
    else:
        el = w.locator(f'[name="{field}"]:not([type="range"])').first  # the typed field, not its slider
        if el.evaluate("e => e.tagName") == "SELECT":
            el.select_option(value)
        else:
            el.fill(value)
    settle(page, name, before)


def shot(page, name, out: Path, tag: str):
    # Material's sticky header would cover the top of a tall widget in an element screenshot.
    page.add_style_tag(content=".md-header, .md-tabs { visibility: hidden !important; }")
    w = page.locator(f'[data-widget="{name}"]').first
    w.scroll_into_view_if_needed()
    w.screenshot(path=str(out / f"{name}-{tag}.png"))


def run(page, base, out: Path, mode: str):
    page.goto(base + "rank-trick/")
    page.wait_for_function(READY, timeout=120_000)
    act(page, "rank_trick", "d", "16384")
    act(page, "rank_trick", "r", "1")
    shot(page, "rank_trick", out, f"{mode}-r1")
    act(page, "rank_trick", "r", "20000")
    shot(page, "rank_trick", out, f"{mode}-error")
    act(page, "model_lora", "model", "llama-3.1-70b")
    act(page, "model_lora", "rank", "64")
    shot(page, "model_lora", out, mode)
    act(page, "model_lora", "model", "config")          # the reader's own config.json, and a refused one
    act(page, "model_lora", "config", GPT2_CONFIG)
    shot(page, "model_lora", out, f"{mode}-config")
    act(page, "model_lora", "config", WRAPPER_CONFIG)
    shot(page, "model_lora", out, f"{mode}-config-error")

    page.goto(base + "gpu-memory/")
    page.wait_for_function(READY, timeout=120_000)
    shot(page, "memory_calculator", out, f"{mode}-default")
    act(page, "memory_calculator", "model", "llama-3.1-70b")
    act(page, "memory_calculator", "method", "lora")
    act(page, "memory_calculator", "gpu", "rtx-4090")
    page.locator(".lc-seg").first.focus()
    shot(page, "memory_calculator", out, f"{mode}-70b-lora-focus")
    act(page, "memory_calculator", "batch_size", "0")
    shot(page, "memory_calculator", out, f"{mode}-error")
    act(page, "memory_calculator", "batch_size", "1")
    act(page, "memory_calculator", "model", "config")
    act(page, "memory_calculator", "config", GPT2_CONFIG)
    shot(page, "memory_calculator", out, f"{mode}-config")

    page.goto(base + "qlora/")
    page.wait_for_function(READY, timeout=120_000)
    act(page, "nf4_explorer", click='[data-widget="nf4_explorer"] button[data-action="reroll"]')
    shot(page, "nf4_explorer", out, mode)
    act(page, "nf4_bits", "block_size", "128")
    act(page, "nf4_bits", "double_quant", "off")
    shot(page, "nf4_bits", out, mode)

    page.goto(base + "knowledge-check/")
    page.wait_for_function(READY, timeout=120_000)
    page.evaluate("localStorage.clear()")
    act(page, "quiz", click="#quiz-q1a")
    act(page, "quiz", click="#quiz-q2c")
    shot(page, "quiz", out, mode)


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright
    from serve_site import start

    server = start(os.environ.get("LC_SITE_DIR", "site"))
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        for mode, opts in [("light", {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"}),
                           ("dark", {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"}),
                           ("phone", {"viewport": {"width": 390, "height": 844}, "color_scheme": "light",
                                      "device_scale_factor": 2, "is_mobile": True, "has_touch": True})]:
            context = browser.new_context(**opts)
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            run(page, base, out, mode)
            context.close()
            print(f"{mode}: done, page errors: {errors or 'none'}")
        browser.close()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
