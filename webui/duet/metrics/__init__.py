"""Measuring streams, from one answer to a server's lifetime.

stream.py      pure functions over arrival times: TTFT, TTFA, TPOT, ITL, bursts (docs/metrics.md)
answers.py     one stored answer's numbers at both hops (server and browser), from its arrivals
timeline.py    the geometry of the token-arrival timeline drawn on compare and runs pages
prometheus.py  per-engine counters and histograms for `/metrics`, over every stream served
"""
