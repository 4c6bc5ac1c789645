"""Images drawn twice: an image whose file has a ``.phone`` sibling (``x-light.svg`` → ``x-light.phone.svg``)
is wrapped in ``<picture>`` so that screens 600 px wide or less load the phone drawing (narrow, larger text).

The wide drawings of the evidence page shrink to about half size on a 390 px phone, their labels to about
6 px; gpu_labs/evidence/plots.py draws each one again for a phone. Any page can use the same convention.
"""
from __future__ import annotations

import html
import posixpath
import re
from pathlib import Path

PHONE_MEDIA = "(max-width: 600px)"
IMG = re.compile(r'<img\b[^>]*\bsrc="(?P<src>[^"#?]+)(?P<tail>[#?][^"]*)?"[^>]*>')


def phone_sibling(src: str) -> str:
    stem, dot, ext = src.rpartition(".")
    return f"{stem}.phone.{ext}" if dot else ""


def wrap_phone_images(page_html: str, page_url: str, docs_dir: Path) -> str:
    def wrap(m: re.Match) -> str:
        src = m.group("src")
        inside_picture = page_html.rfind("<picture", 0, m.start()) > page_html.rfind("</picture>", 0, m.start())
        if "://" in src or src.startswith("/") or inside_picture:
            return m.group(0)
        phone = phone_sibling(src)
        # the src is relative to the page's own address (a folder with directory URLs, a file without)
        base = page_url if page_url.endswith("/") or not page_url else posixpath.dirname(page_url)
        if not phone or not (docs_dir / posixpath.normpath(posixpath.join(base, phone))).is_file():
            return m.group(0)
        return (f'<picture><source media="{PHONE_MEDIA}" srcset="{html.escape(phone)}">'
                f"{m.group(0)}</picture>")

    return IMG.sub(wrap, page_html)


def on_page_content(page_html: str, page, config, files) -> str:
    return wrap_phone_images(page_html, page.url, Path(config["docs_dir"]))
