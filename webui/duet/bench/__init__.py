"""Benchmarks: tools that measure Duet against the engines it serves, not parts of the app.

relay.py            `duet bench relay`: the same requests straight to each engine, through Duet
                    and through the reference relay (with --accounts, through Duet signed in
                    too), in one run
measured.py         what the run measures of each request, and what a relay added to it
summary.py          every number of a run, declared once (table row, summary key), and the
                    verdicts against the targets
report.py           what a run prints, its small summary document and its raw per-request data
reference_relay.py  the least a Python relay on Duet's server stack can do: the floor Duet's
                    added time is held against (run as its own process)
stall_watch.py      a witness process that notes when the machine stopped running it, so a
                    request caught in such a stall is not blamed on Duet
sse_client.py       reading a server-sent event stream as a client (shared with the tests)
"""
