"""Model output to HTML that cannot run anything.

Two layers, because model text is untrusted: markdown-it-py with raw HTML switched off (tags in
the text come out escaped), then nh3 (ammonia) keeps only an allow-list of tags and attributes and
drops unsafe URL schemes such as `javascript:`. Fenced code gets a copy button, which the page's
script wires up; the button is plain markup and the sanitizer keeps only its class and type.

Code in a fence that names a language Pygments knows is coloured here, on the server: Pygments
escapes the code and wraps its tokens in `<span class="...">` with its short token class names
(`k` for a keyword, `s2` for a string); the sanitizer keeps exactly those classes on spans, and
the colours come from `code.css` (`code_css`), the page's own stylesheet.
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
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

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
# Pygments' token classes (all of them are in STANDARD_TYPES), and the language label.
TOKEN_CLASSES = {name for name in STANDARD_TYPES.values() if name}
ALLOWED_CLASSES = {
    "td": ALIGNMENT_CLASSES,
    "th": ALIGNMENT_CLASSES,
    "span": TOKEN_CLASSES | {"code-language"},
}
# Spans and their classes only, no wrapping <div>/<pre>: `render_fence` writes those.
CODE_FORMATTER = HtmlFormatter(nowrap=True)
# Pygments' styles for the page, light and dark (`code_css`).
LIGHT_STYLE, DARK_STYLE = "default", "monokai"


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
    """Fenced and indented code: escaped (and coloured, in a language Pygments knows), in a box
    with the language's name and a copy button."""
    token = tokens[index]
    # The info string is model text too: only a plain language name becomes a class.
    words = token.info.split(maxsplit=1)
    language = words[0] if words and LANGUAGE_NAME.fullmatch(words[0]) else ""
    css_class = f' class="language-{language}"' if language else ""
    label = f'<span class="code-language">{escape(language)}</span>' if language else ""
    lexer = lexer_for(language)
    code = (
        escape(token.content) if lexer is None else highlight(token.content, lexer, CODE_FORMATTER)
    )
    return (
        '<div class="code-block">'
        f"{label}"
        '<button type="button" class="copy-code">Copy</button>'
        f"<pre><code{css_class}>{code}</code></pre>"
        "</div>\n"
    )


def lexer_for(language: str) -> Lexer | None:
    """Pygments' lexer for a fence's language name, or None for no name or one it does not know."""
    if not language:
        return None
    try:
        # stripnl off: the code is shown as the model wrote it, blank first lines included.
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def code_css() -> str:
    """The colours of highlighted code: Pygments' light style, and its dark one when the
    browser asks for a dark page. Written to static/code.css (`duet.markdown` as a script)."""
    light = HtmlFormatter(style=LIGHT_STYLE).get_style_defs(".code-block")
    dark = HtmlFormatter(style=DARK_STYLE).get_style_defs(".code-block")
    # The code box keeps the page's own background; only the token colours come from the styles.
    light = strip_backgrounds(light)
    dark = strip_backgrounds(dark)
    dark_rules = "\n".join("  " + line for line in dark.splitlines())
    return (
        "/* Generated by `python -m duet.markdown` from Pygments' "
        f"{LIGHT_STYLE!r} and {DARK_STYLE!r} styles: do not edit. */\n"
        f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark_rules}\n}}\n"
    )


BLOCK_RULES = (".code-block {", ".code-block  {", ".code-block .hll", "pre {", "td.", "span.")


def strip_backgrounds(css: str) -> str:
    """Style rules without the whole-block and line-highlight backgrounds Pygments adds."""
    kept = []
    for line in css.splitlines():
        if line.startswith(BLOCK_RULES):
            continue
        kept.append(line)
    return "\n".join(kept)


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


# Tokens whose text a reader sees: inline text and code, and code blocks' content.
TEXT_TOKENS = {"text", "code_inline", "fence", "code_block"}
BREAK_TOKENS = {"softbreak", "hardbreak"}


def plain_text(text: str) -> str:
    """What a piece of Markdown reads as, without its syntax (no `**`, `#`, link targets or
    fences): the words of every block, one space between them. For search snippets."""
    parts: list[str] = []
    for token in PARSER.parse(text):
        for piece in token.children or [token]:
            if piece.type in TEXT_TOKENS:
                parts.append(piece.content)
            elif piece.type in BREAK_TOKENS:
                parts.append(" ")
        if token.type.endswith("_close") and token.block:
            parts.append(" ")
    return " ".join("".join(parts).split())


if __name__ == "__main__":
    from pathlib import Path

    (Path(__file__).parent / "static" / "code.css").write_text(code_css(), encoding="utf-8")
