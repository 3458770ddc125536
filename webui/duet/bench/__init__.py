"""Benchmarks: tools that measure Duet against the engines it serves, not parts of the app.

relay.py            `duet bench relay`: the same requests straight to each engine, through Duet
                    and through the reference relay; what Duet's relaying adds, and the verdicts
reference_relay.py  the least a Python relay on Duet's server stack can do: the floor Duet's
                    added time is measured against (run as its own process)
stall_watch.py      a witness process that notes when the machine stopped running it, so a
                    request caught in such a stall is not blamed on Duet
"""
