"""Routers, one module per page family: chat (a conversation and its streams), history (the
sidebar and exports), health (engine badges)."""
