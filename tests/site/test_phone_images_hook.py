"""hooks/phone_images.py: an image with a ``.phone`` sibling file gets a <picture> that picks it on a phone."""
from __future__ import annotations

import importlib.util

from site_support import ROOT

spec = importlib.util.spec_from_file_location("phone_images_hook", ROOT / "hooks" / "phone_images.py")
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)

IMG = '<p><img alt="a chart" src="{}" /></p>'


def docs(tmp_path, *files):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("<svg/>")
    return tmp_path


def test_a_sibling_is_picked_below_600px_with_directory_urls_and_without(tmp_path):
    d = docs(tmp_path, "assets/c-light.svg", "assets/c-light.phone.svg")
    for page_url, src in (("evidence/", "../assets/c-light.svg#only-light"), ("evidence.html", "assets/c-light.svg#only-light"),
                          ("", "assets/c-light.svg")):
        out = hook.wrap_phone_images(IMG.format(src), page_url, d)
        phone = src.split("#")[0].replace(".svg", ".phone.svg")
        assert out == (f'<p><picture><source media="(max-width: 600px)" srcset="{phone}">'
                       f'<img alt="a chart" src="{src}" /></picture></p>'), (page_url, out)


def test_no_sibling_an_absolute_address_or_a_second_pass_leaves_the_page_alone(tmp_path):
    d = docs(tmp_path, "assets/c.svg", "assets/c.phone.svg", "assets/plain.svg")
    for html in (IMG.format("../assets/plain.svg"), IMG.format("https://example.org/assets/c.svg"),
                 IMG.format("/assets/c.svg")):
        assert hook.wrap_phone_images(html, "page/", d) == html
    once = hook.wrap_phone_images(IMG.format("../assets/c.svg"), "page/", d)
    assert "<picture>" in once and hook.wrap_phone_images(once, "page/", d) == once
