"""A conversation as a file: Markdown to read, JSON to keep everything (timings included)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from duet.store.conversations import Conversation
from duet.store.messages import Message

EXPORT_FORMAT_VERSION = 1


def conversation_json(conversation: Conversation, history: Sequence[Message]) -> str:
    document: dict[str, Any] = {
        "format": "duet-conversation",
        "version": EXPORT_FORMAT_VERSION,
        "conversation": asdict(conversation),
        "messages": [asdict(message) for message in history],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def conversation_markdown(
    conversation: Conversation, history: Sequence[Message], engine_labels: Mapping[str, str]
) -> str:
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    lines += [f"Started {conversation.created_at}.", ""]
    if conversation.system_prompt.strip():
        lines += ["## System prompt", "", conversation.system_prompt.strip(), ""]
    for message in history:
        if message.role == "user":
            lines += ["## You", "", message.content, ""]
            continue
        lines += [f"## {answer_heading(message, engine_labels)}", ""]
        if message.reasoning.strip():
            lines += ["<details><summary>Thinking</summary>", ""]
            lines += [quote(message.reasoning), "", "</details>", ""]
        if message.content:
            lines += [message.content, ""]
        if message.status != "complete":
            reason = f": {message.error}" if message.error else ""
            lines += [f"_Answer {message.status}{reason}_", ""]
    return "\n".join(lines).rstrip() + "\n"


def answer_heading(message: Message, engine_labels: Mapping[str, str]) -> str:
    parts = [engine_labels.get(message.engine or "", message.engine or "assistant")]
    if message.model:
        parts.append(message.model)
    parts.append("thinking" if message.thinking else "no thinking")
    return " · ".join(parts)


def quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.strip().splitlines())


def export_filename(conversation: Conversation, extension: str) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in conversation.title.lower()).strip("-")
    safe = "-".join(part for part in safe.split("-") if part)[:50] or "conversation"
    return f"duet-{conversation.id}-{safe}.{extension}"
