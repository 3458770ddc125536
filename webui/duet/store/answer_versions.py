"""Versions of an answer: every answer to a question is kept, and one of them is chosen.

Regenerate adds an answer to the conversation's last question instead of replacing the one it
had, and "answer again with another engine" adds one *beside* an answer. So the answers to a
question (the assistant messages after it and before the next user message, in id order) are
grouped into versions: a version is an answer and the answers asked beside it, which the chat
page shows side by side.

One answer of each question is *chosen*: the page shows the version holding it, and the
conversation goes on from it (later turns send it to the engine as this turn's answer). With
no choice recorded (a question answered once, or a conversation from before versions), the
chosen answer is the first answer of the newest version.

Two tables (migration m011): `answer_sides` (an answer, and the answer it was asked beside) and
`chosen_answers` (a question, and its chosen answer). Their rows go with their messages (ON
DELETE CASCADE), so deleting a conversation, or the answers an edit replaces, leaves none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from duet.store.messages import Message, list_messages


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an answer: the answer asked first, then those asked beside it."""

    answers: tuple[Message, ...]

    @property
    def first(self) -> Message:
        return self.answers[0]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(answer.id for answer in self.answers)

    @property
    def engines(self) -> tuple[str | None, ...]:
        return tuple(answer.engine for answer in self.answers)


@dataclass(frozen=True, slots=True)
class Turn:
    """A question and every answer to it; `chosen` is None while it has no answer."""

    question: Message
    versions: tuple[Version, ...]
    chosen: Message | None

    @property
    def shown_index(self) -> int:
        """The place of the version holding the chosen answer (0 while there is none)."""
        for index, version in enumerate(self.versions):
            if self.chosen is not None and self.chosen.id in version.ids:
                return index
        return 0

    @property
    def shown(self) -> Version | None:
        return self.versions[self.shown_index] if self.versions else None

    def version_of(self, answer_id: int) -> Version | None:
        for version in self.versions:
            if answer_id in version.ids:
                return version
        return None


@dataclass(frozen=True, slots=True)
class Arranged:
    """A conversation's messages as turns, and its `path`: the messages the conversation is
    made of (each question and its chosen answer), what its later turns are answered from."""

    turns: tuple[Turn, ...]
    path: tuple[Message, ...]

    @property
    def last_turn(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def turn_of(self, answer_id: int) -> Turn | None:
        for turn in self.turns:
            if turn.version_of(answer_id) is not None:
                return turn
        return None

    def asked_from(self, turn: Turn) -> list[Message]:
        """What an answer to the turn's question is asked from: the path before it, and it."""
        return [m for m in self.path if m.id < turn.question.id] + [turn.question]

    def by_chosen(self) -> dict[int, Turn]:
        """Each answered turn by its chosen answer's id: the page shows a turn where the path
        has its chosen answer."""
        return {turn.chosen.id: turn for turn in self.turns if turn.chosen is not None}


@dataclass(frozen=True, slots=True)
class VersionMark:
    """Where an answer stands among the answers to its question, as exports write it."""

    question_id: int
    version: int  # from 1, in the order the versions were asked
    versions: int
    beside_id: int | None  # the answer this one was asked beside (the same version)
    chosen: bool  # the conversation goes on from this answer


def arrange(
    history: Sequence[Message], sides: Mapping[int, int], chosen: Mapping[int, int]
) -> Arranged:
    """Group `history` (a conversation's messages in id order) into turns. `sides` maps an
    answer to the answer it was asked beside, `chosen` a question to its chosen answer."""
    turns: list[Turn] = []
    path: list[Message] = []
    question: Message | None = None
    answers: list[Message] = []

    def close() -> None:
        if question is None:
            return
        turn = make_turn(question, answers, sides, chosen.get(question.id))
        turns.append(turn)
        path.append(question)
        if turn.chosen is not None:
            path.append(turn.chosen)

    for message in history:
        if message.role == "user":
            close()
            question, answers = message, []
        elif question is None:
            path.append(message)  # an answer to no stored question: kept as it is
        else:
            answers.append(message)
    close()
    return Arranged(turns=tuple(turns), path=tuple(path))


def make_turn(
    question: Message, answers: Sequence[Message], sides: Mapping[int, int], chosen_id: int | None
) -> Turn:
    groups: list[list[Message]] = []
    for answer in answers:
        beside = sides.get(answer.id)
        group = next((g for g in groups if g[0].id == beside), None)
        if group is None:
            groups.append([answer])
        else:
            group.append(answer)
    versions = tuple(Version(tuple(group)) for group in groups)
    chosen = next((a for a in answers if a.id == chosen_id), None)
    if chosen is None and versions:
        chosen = versions[-1].first
    return Turn(question=question, versions=versions, chosen=chosen)


def load(
    db: sqlite3.Connection, conversation_id: int, history: Sequence[Message] | None = None
) -> Arranged:
    """The conversation's messages arranged with its stored sides and choices: `history` if
    given (its messages as Duet holds them, in id order), else as stored."""
    if history is None:
        history = list_messages(db, conversation_id)
    return arrange(history, stored_sides(db, conversation_id), stored_choices(db, conversation_id))


def shown_path(db: sqlite3.Connection, conversation_id: int) -> list[Message]:
    """What the conversation's next turn is answered from (`Arranged.path`)."""
    return list(load(db, conversation_id).path)


def stored_sides(db: sqlite3.Connection, conversation_id: int) -> dict[int, int]:
    """Each answer of the conversation asked beside another, and that other answer's id."""
    rows = db.execute(
        "SELECT answer_sides.answer_id, answer_sides.beside_id FROM answer_sides"
        " JOIN messages ON messages.id = answer_sides.answer_id"
        " WHERE messages.conversation_id = ?",
        (conversation_id,),
    )
    return dict(rows.fetchall())


def stored_choices(db: sqlite3.Connection, conversation_id: int) -> dict[int, int]:
    """Each question of the conversation with a recorded choice, and its chosen answer's id."""
    rows = db.execute(
        "SELECT chosen_answers.question_id, chosen_answers.answer_id FROM chosen_answers"
        " JOIN messages ON messages.id = chosen_answers.question_id"
        " WHERE messages.conversation_id = ?",
        (conversation_id,),
    )
    return dict(rows.fetchall())


def choose(db: sqlite3.Connection, question_id: int, answer_id: int) -> None:
    """Go on from this answer to the question (the page then shows its version)."""
    db.execute(
        "INSERT INTO chosen_answers (question_id, answer_id) VALUES (?, ?)"
        " ON CONFLICT (question_id) DO UPDATE SET answer_id = excluded.answer_id",
        (question_id, answer_id),
    )


def add_beside(db: sqlite3.Connection, answer_id: int, beside_id: int) -> None:
    """Record that `answer_id` was asked beside `beside_id` (the first answer of a version)."""
    db.execute(
        "INSERT INTO answer_sides (answer_id, beside_id) VALUES (?, ?)", (answer_id, beside_id)
    )


def copy_to_fork(
    db: sqlite3.Connection, source_id: int, fork_id: int, before_message_id: int
) -> None:
    """Give a fork just made by `conversations.fork_conversation` (and nothing added to it
    yet) the sides and choices of the messages it copied. The fork holds the copies in the
    order of the originals, so the n-th message of each is the same message."""
    originals = db.execute(
        "SELECT id FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id",
        (source_id, before_message_id),
    ).fetchall()
    copies = db.execute(
        "SELECT id FROM messages WHERE conversation_id = ? ORDER BY id", (fork_id,)
    ).fetchall()
    copy_of = {original[0]: copy[0] for original, copy in zip(originals, copies, strict=True)}
    for answer_id, beside_id in stored_sides(db, source_id).items():
        if answer_id in copy_of and beside_id in copy_of:
            add_beside(db, copy_of[answer_id], copy_of[beside_id])
    for question_id, answer_id in stored_choices(db, source_id).items():
        if question_id in copy_of and answer_id in copy_of:
            choose(db, copy_of[question_id], copy_of[answer_id])


def version_marks(
    db: sqlite3.Connection, conversation_id: int, history: Sequence[Message]
) -> dict[int, VersionMark]:
    """Each answer's place among its question's answers, by its id (`history`: the
    conversation's messages as stored)."""
    arranged = load(db, conversation_id, history)
    found: dict[int, VersionMark] = {}
    for turn in arranged.turns:
        for number, version in enumerate(turn.versions, start=1):
            for answer in version.answers:
                found[answer.id] = VersionMark(
                    question_id=turn.question.id,
                    version=number,
                    versions=len(turn.versions),
                    beside_id=None if answer.id == version.first.id else version.first.id,
                    chosen=turn.chosen is not None and answer.id == turn.chosen.id,
                )
    return found
