"""Model output to HTML that cannot run anything.

Two layers, because model text is untrusted: markdown-it-py with raw HTML switched off (tags in
the text come out escaped), then nh3 (ammonia) keeps only an allow-list of tags and attributes and
drops unsafe URL schemes such as `javascript:`. Fenced code gets a copy button, which the page's
script wires up; the button is plain markup and the sanitizer keeps only its class and type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererProtocol
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

ALLOWED_TAGS = {
    "a", "blockquote", "br", "button", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th",
    "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "button": {"class", "type"},
    "code": {"class"},
    "div": {"class"},
    "ol": {"start"},
}
LANGUAGE_NAME = re.compile(r"[A-Za-z0-9_+#.-]{1,40}")
# Table cell alignment, the one inline style markdown-it writes, becomes a class: the page's
# Content-Security-Policy refuses inline styles.
ALIGNMENT_CLASSES = {"align-left", "align-center", "align-right"}
ALLOWED_CLASSES = {"td": ALIGNMENT_CLASSES, "th": ALIGNMENT_CLASSES}


def align_with_classes(state: StateCore) -> None:
    """`style="text-align:right"` on table cells as `class="align-right"`."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            style = str(token.attrs.pop("style"))
            token.attrSet("class", "align-" + style.removeprefix("text-align:"))


def render_fence(
    renderer: RendererProtocol,
    tokens: Sequence[Token],
    index: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    """Fenced and indented code: escaped, in a box with a copy button."""
    token = tokens[index]
    # The info string is model text too: only a plain language name becomes a class.
    words = token.info.split(maxsplit=1)
    language = words[0] if words and LANGUAGE_NAME.fullmatch(words[0]) else ""
    css_class = f' class="language-{language}"' if language else ""
    return (
        '<div class="code-block">'
        '<button type="button" class="copy-code">Copy</button>'
        f"<pre><code{css_class}>{escape(token.content)}</code></pre>"
        "</div>\n"
    )


def build_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    parser.add_render_rule("fence", render_fence)
    parser.add_render_rule("code_block", render_fence)
    parser.core.ruler.push("align_with_classes", align_with_classes)
    return parser


PARSER = build_parser()


def render_markdown(text: str) -> str:
    """Safe HTML for a piece of model (or user) text."""
    return nh3.clean(
        PARSER.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        link_rel="noopener noreferrer nofollow",
    )
