"""The actor of a request, and `may`: the one place that answers "may this actor do this".

Every object a person makes belongs to a user, and every query for one names its owner
(`owned_conversation` and the like give another user's object as not found). `may` decides the
rest: who may use the app at all, and who may administer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from duet.store.users import LOCAL_USER_ID, Role

Action = Literal["use", "administer", "read metrics"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: a signed-in user (with their session), the local user of a private
    instance, or no one (`ANONYMOUS`)."""

    user_id: int | None
    name: str
    role: Role | None
    session_id: int | None = None
    must_change_password: bool = False

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Actor(user_id=None, name="", role=None)
# Local mode: one private user, who owns everything and administers the instance.
LOCAL = Actor(user_id=LOCAL_USER_ID, name="local", role="admin")


def may(actor: Actor, action: Action) -> bool:
    if not actor.signed_in or actor.role == "pending" or actor.must_change_password:
        return False
    if action == "use":
        return True
    return actor.role == "admin"
