"""What Duet's data looks like as files a person downloads.

conversation.py  a conversation as Markdown (to read) and JSON (everything, timings included)
run.py           a compare run as CSV (the numbers) and JSON (the raw arrivals to recompute them)
"""
