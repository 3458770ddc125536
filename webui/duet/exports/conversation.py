"""A conversation as a file: Markdown to read, JSON to keep everything (timings included)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from duet.store.answer_versions import VersionMark
from duet.store.conversations import Conversation
from duet.store.messages import Message

# 2: every answer to a question is kept (regenerate, another engine's answer beside one), each
# with its `answer_version`; a question can be followed by several answers.
EXPORT_FORMAT_VERSION = 2

Marks = Mapping[int, VersionMark]


def conversation_json(conversation: Conversation, history: Sequence[Message], marks: Marks) -> str:
    document: dict[str, Any] = {
        "format": "duet-conversation",
        "version": EXPORT_FORMAT_VERSION,
        "conversation": asdict(conversation),
        "messages": [message_json(message, marks.get(message.id)) for message in history],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def message_json(message: Message, mark: VersionMark | None) -> dict[str, Any]:
    """A message with, for an answer, where it stands among its question's answers: its
    version (from 1) of how many, the answer it was asked beside (the same version), and
    whether the conversation goes on from it."""
    document = asdict(message)
    if message.role == "assistant":
        document["answer_version"] = None if mark is None else asdict(mark)
    return document


def conversation_markdown(
    conversation: Conversation,
    history: Sequence[Message],
    engine_labels: Mapping[str, str],
    marks: Marks,
) -> str:
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    lines += [f"Started {conversation.created_at}.", ""]
    if conversation.system_prompt.strip():
        lines += ["## System prompt", "", conversation.system_prompt.strip(), ""]
    for message in history:
        if message.role == "user":
            lines += ["## You", "", message.content, ""]
            continue
        heading = answer_heading(message, engine_labels)
        lines += [f"## {heading}{version_note(marks.get(message.id), history, engine_labels)}", ""]
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


def version_note(
    mark: VersionMark | None, history: Sequence[Message], engine_labels: Mapping[str, str]
) -> str:
    """For a question with more than one answer: which version this answer is, what it was
    asked beside, and whether the conversation goes on from it."""
    if mark is None or (mark.versions == 1 and mark.beside_id is None and mark.chosen):
        return ""
    parts = [f"version {mark.version} of {mark.versions}"]
    beside = next((m for m in history if m.id == mark.beside_id), None)
    if beside is not None:
        parts.append(f"beside {engine_labels.get(beside.engine or '', beside.engine)}'s answer")
    if mark.chosen:
        parts.append("the conversation goes on from this one")
    return " (" + ", ".join(parts) + ")"


def quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.strip().splitlines())


def export_filename(conversation: Conversation, extension: str) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in conversation.title.lower()).strip("-")
    safe = "-".join(part for part in safe.split("-") if part)[:50] or "conversation"
    return f"duet-{conversation.id}-{safe}.{extension}"
