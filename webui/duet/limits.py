"""Limits per user, the same for the web UI and /v1: answers at once, a minute, tokens a day.

So that one person cannot take the whole box. Which limits hold for whom is in the store
(`store/user_limits.py`: the admin's defaults, or the user's own row; None is no limit). What
is counted comes from the requests themselves (`store/api_usage.py`, one row per request):

- at once: requests admitted and not ended yet, chat answers (counted by their messages'
  `streaming` rows), compare answers and /v1 requests (their `streaming` request rows) together;
- a minute: requests admitted in the last 60 seconds, a sliding window, refusals not counted;
- a day: completion tokens of the requests admitted since 00:00 UTC. Prompt tokens are not
  counted: a chat sends its whole history again with every answer, most of which the engine's
  prefix cache serves, so counting them would charge a long conversation again and again for
  the same text; what occupies an engine is the decoding. A request counts once it has ended,
  so the answers running when the budget runs out can each still finish (up to `max_tokens`).

Admission is one synchronous step: the check and the request's `streaming` row (the answer's
message, for the web UI) in one transaction, with no await between, so two requests can never
both take the last place: with a limit of N, N+1 simultaneous requests give exactly one
refusal. A refusal is `OverLimit`, with a message for the person and `retry_after`, whole
seconds for a Retry-After header.

Interface
---------
The web UI (nothing to call from a view): `turns.store_answer_row` calls `admit_answer(db,
conversation_id)` inside the send's transaction, before it stores the answer's row, so an
`OverLimit` rolls the whole send back, nothing is stored, and views/errors.py answers 429 with
Retry-After into the page's flash region (what was typed stays in the composer). The answer's
`streaming` row counts it while it runs, so the send writes nothing more; once it has ended,
`generation.Generations.save` records its request (`api_usage.record_answer`). A compare answer
has no message: `duet.compare` admits it with `admit` (no key), as /v1 requests are, and gives
its request row the outcome when the answer ends.

/v1 uses the `Limits` on `app.state.limits`, whose clock tests can set::

    admitted = limits.admit(user_id, key_id=key.id, engine="vllm", model=model)  # OverLimit
    ...  # answer, streaming or not; then, once, however it ended:
    admitted.finish(Outcome("completed", prompt_tokens, completion_tokens, ttft_ms, duration_ms))

or, for a request answered within one block::

    with limits.hold(user_id, key_id=key.id, engine="vllm", model=model) as admitted:
        ...
        admitted.finish(Outcome("completed", ...))

where leaving the block without a `finish` records `stopped` if the task was cancelled (the
client left), `failed` on any other exception, `completed` otherwise. `finish` keeps the first
outcome it is given. Outcome statuses: completed, stopped, failed (see store/api_usage.py).
`Limits.admit` records a refusal as a `refused` row. A /v1 request that also keeps its answer
as a message (a key's `keep_history`) is counted twice if that message is `streaming` while
its request row is: store the message as it ends, or admit it only through its message.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from duet.store import api_usage, user_limits
from duet.store.api_usage import Outcome
from duet.store.db import transaction
from duet.store.user_limits import LimitValues

Clock = Callable[[], datetime]
LimitName = Literal["concurrent", "per_minute", "per_day"]

# When a running answer will end is not known; a client told to wait this long before trying
# again does not hammer the server, and is not kept waiting long after an answer ended.
CONCURRENT_RETRY_AFTER_SECONDS = 5
WINDOW = timedelta(seconds=60)


def utc_now() -> datetime:
    return datetime.now(UTC)


class OverLimit(Exception):
    """A request refused because its user is over one of their limits."""

    def __init__(self, limit: LimitName, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message
        self.retry_after = retry_after


def stamp(moment: datetime) -> str:
    """A moment as the store writes it (db.now_iso's form), so stamps compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def admit(
    db: sqlite3.Connection,
    user_id: int,
    *,
    key_id: int | None,
    engine: str,
    model: str,
    now: datetime,
) -> int:
    """Check the user's limits at `now` and record the request as streaming, in one
    transaction (the caller's, if one is open); returns the request's row id."""
    with transaction(db):
        refuse_if_over(db, user_id, user_limits.limits_for(db, user_id), now)
        return api_usage.start_request(
            db,
            user_id,
            key_id=key_id,
            engine=engine,
            model=model,
            created_at=stamp(now),
        )


def admit_answer(db: sqlite3.Connection, conversation_id: int, now: datetime | None = None) -> None:
    """Check the limits for a web UI answer about to be stored in `conversation_id`, in the
    send's transaction: the answer's own `streaming` row, stored next in it, is what counts the
    answer from then on (store/api_usage.py), and a refusal rolls back all the send wrote."""
    user_id, limits = user_limits.limits_for_conversation(db, conversation_id)
    refuse_if_over(db, user_id, limits, now or utc_now())


def refuse_if_over(
    db: sqlite3.Connection, user_id: int, limits: LimitValues, now: datetime
) -> None:
    """Raise OverLimit if one more request now would take the user past a limit. Each count is
    asked of the store only when its limit is set: this runs on the way to every answer."""
    limit = limits.max_concurrent
    if limit is not None:
        count = api_usage.running(db, user_id)
        if count >= limit:
            message = (
                refused_outright("at a time")
                if limit == 0
                else (
                    f"You have {answers(count)} running; the limit is {limit}. "
                    "Try again when one ends."
                )
            )
            raise OverLimit("concurrent", message, CONCURRENT_RETRY_AFTER_SECONDS)
    limit = limits.requests_per_minute
    if limit is not None:
        minute = stamp(now - WINDOW)
        count = api_usage.started_since(db, user_id, minute)
        if count >= limit:
            # A place frees when the oldest request that keeps the window full leaves it.
            first = api_usage.nth_recent_start(db, user_id, minute, count - limit)
            frees = now + WINDOW if first is None else datetime.fromisoformat(first) + WINDOW
            wait = seconds_until(frees, now)
            message = (
                refused_outright("a minute")
                if limit == 0
                else (
                    f"You have started {answers(count)} in the last minute; the limit is {limit} "
                    f"a minute. Try again in {wait} s."
                )
            )
            raise OverLimit("per_minute", message, wait)
    limit = limits.tokens_per_day
    if limit is not None:
        day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        used = api_usage.tokens_since(db, user_id, stamp(day_start))
        if used >= limit:
            wait = seconds_until(day_start + timedelta(days=1), now)
            message = (
                refused_outright("tokens a day")
                if limit == 0
                else (
                    f"You have used {used:,} tokens today (UTC); the limit is {limit:,} a day. "
                    f"It starts again at midnight UTC, in {duration(wait)}."
                )
            )
            raise OverLimit("per_day", message, wait)


def refused_outright(unit: str) -> str:
    return f"Your account may not start answers: its limit is 0 {unit}. An admin can change it."


def answers(count: int) -> str:
    return f"{count} answer" if count == 1 else f"{count} answers"


def seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes = math.ceil(rest / 60)
    if minutes == 60:
        hours, minutes = hours + 1, 0
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@dataclass(eq=False)
class Admitted:
    """A request admitted past the limits, running until `finish`."""

    db: sqlite3.Connection
    request_id: int
    finished: bool = False

    def finish(self, outcome: Outcome) -> None:
        """Record how the request ended; only the first call counts."""
        if self.finished:
            return
        self.finished = True
        api_usage.finish_request(self.db, self.request_id, outcome)


class Limits:
    """The limits as /v1 applies them, with the app's clock (tests set their own)."""

    def __init__(self, db: sqlite3.Connection, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock

    def admit(self, user_id: int, *, key_id: int | None, engine: str, model: str) -> Admitted:
        """Admit a request, or record its refusal and raise OverLimit."""
        now = self.clock()
        try:
            request_id = admit(self.db, user_id, key_id=key_id, engine=engine, model=model, now=now)
        except OverLimit:
            api_usage.record_refused(
                self.db, user_id, key_id=key_id, engine=engine, model=model, created_at=stamp(now)
            )
            raise
        return Admitted(self.db, request_id)

    @contextmanager
    def hold(
        self, user_id: int, *, key_id: int | None, engine: str, model: str
    ) -> Iterator[Admitted]:
        """`admit`, then `finish` on leaving the block if the block did not (see the module)."""
        admitted = self.admit(user_id, key_id=key_id, engine=engine, model=model)
        try:
            yield admitted
        except asyncio.CancelledError:
            admitted.finish(Outcome("stopped"))
            raise
        except BaseException:
            admitted.finish(Outcome("failed"))
            raise
        admitted.finish(Outcome("completed"))
