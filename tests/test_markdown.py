"""Model output rendered as Markdown must never become live HTML or script."""

from __future__ import annotations

from pathlib import Path

import nh3
import pytest
from duet.markdown import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_CLASSES,
    ALLOWED_TAGS,
    code_css,
    render_markdown,
)


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "Hi <img src=x onerror=alert(1)> there",
        '<a href="javascript:alert(1)">click</a>',
        "<iframe src=https://example.com></iframe>",
        "<svg onload=alert(1)>",
        "<style>body{display:none}</style>",
    ],
)
def test_raw_html_in_model_output_is_shown_as_text(text: str) -> None:
    html = render_markdown(text)
    assert "<script" not in html
    assert "<img" not in html
    assert "<iframe" not in html
    assert "<svg" not in html
    assert "<style" not in html
    assert "<a " not in html
    # It is still there for the reader, escaped.
    assert "&lt;" in html


def test_javascript_links_lose_their_target() -> None:
    html = render_markdown("[click me](javascript:alert(1)) and [ok](https://example.com)")
    # markdown-it refuses the link (it stays literal text); nh3 would drop the href anyway.
    assert 'href="javascript' not in html
    assert html.count("<a ") == 1
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_markdown_image_with_event_handler_is_inert() -> None:
    html = render_markdown('![x" onerror="alert(1)](https://example.com/a.png)')
    # Images are not on the allow-list: no remote loads from answers, no handler to run.
    assert "<img" not in html
    assert "onerror" not in html


def test_code_blocks_are_escaped_and_get_a_copy_button() -> None:
    html = render_markdown('```python\nprint("<b>bold</b>")\n```')
    assert '<button type="button" class="copy-code">Copy</button>' in html
    assert '<code class="language-python">' in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<b>" not in html


def test_fence_info_string_cannot_inject_attributes() -> None:
    html = render_markdown('```x" onmouseover="alert(1)\ncode\n```')
    assert "onmouseover" not in html
    assert "<code>" in html  # an unsafe language name gives no class at all


def test_indented_code_also_gets_a_copy_button() -> None:
    assert "copy-code" in render_markdown("text\n\n    indented code\n")


def test_common_markdown_still_renders() -> None:
    html = render_markdown("# Title\n\n**bold** _it_ ~~gone~~\n\n| a | b |\n|:--|--:|\n| 1 | 2 |")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<em>it</em>" in html
    assert "<s>gone</s>" in html or "<del>gone</del>" in html
    assert '<th class="align-left">a</th>' in html
    assert "style=" not in html  # the page's Content-Security-Policy refuses inline styles


def test_code_in_a_known_language_is_coloured_and_labelled() -> None:
    html = render_markdown('```python\nprint("<b>x</b>")  # note\n```')
    assert '<span class="code-language">python</span>' in html
    assert '<span class="nb">print</span>' in html  # a builtin, in Pygments' token class
    assert '<span class="c1"># note</span>' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>" not in html


def test_code_in_an_unknown_language_is_escaped_plain_text() -> None:
    html = render_markdown("```notalanguage\nif x < 1: y\n```")
    assert '<span class="code-language">notalanguage</span>' in html
    assert "if x &lt; 1: y" in html
    assert '<span class="' not in html.split("<pre>")[1]


def test_model_text_cannot_put_classes_on_spans() -> None:
    # Raw HTML is escaped by markdown-it; the sanitizer alone would still keep only token
    # classes on a span that reached it.
    html = render_markdown('<span class="nav-menu k">x</span>')
    assert "<span" not in html
    cleaned = nh3.clean(
        '<span class="nav-menu k" onclick="x()">x</span>',
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
    )
    assert cleaned == '<span class="k">x</span>'


def test_the_committed_code_stylesheet_is_the_generated_one() -> None:
    committed = Path(__file__).parents[1] / "webui/duet/static/code.css"
    assert committed.read_text(encoding="utf-8") == code_css(), (
        "static/code.css is out of date: run `python -m duet.markdown`"
    )
