"""Who is asking, and what they may do: team mode's accounts, sessions and permissions.

mode.py         local or accounts, and when local is allowed at all
passwords.py    Argon2id hashes, computed off the event loop
sessions.py     server-side sessions behind an HttpOnly cookie
throttle.py     how many wrong passwords an account and an address may try
actors.py       the actor of a request, and `may`: the one answer to "may they do this"
accounts.py     making accounts and what admins do to them; the signup policy; invites
users_command.py  `duet users`: accounts from the shell
"""
