"""Duet's OpenAI-compatible `/v1`, for the tools of the people with accounts here.

routes.py     the /v1 router: models and chat completions
keys.py       API keys: making one, and who a /v1 request comes from (Bearer only)
schema.py     the request body, checked with pydantic
translate.py  requests into `ChatRequest`, typed engine events into OpenAI's chunks
models.py     `<engine>/<model>` names, and every engine's models
errors.py     refusals in OpenAI's error shape
pages.py      the key pages: one's own keys (/account/keys), every key for admins
history.py    a key's conversations in its owner's history, when they chose that
"""
