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

load.py             `duet bench load`: each engine route under a sweep of loads, straight and
                    through Duet, in one run (load_cli.py: its options)
load_workload.py    random prompts of exact token lengths (Qwen's tokenizer), bundled chats
load_send.py        one request on either path, as a record that says how it ended
load_run.py         one series at one load point: concurrency or rate, limits, the probe
load_metrics.py     a run's numbers as `vllm bench serve` defines them
load_cost.py        Duet's own CPU and memory, from its process's counters
load_config.py      what the engines say of themselves, and the settings they run with
load_report.py      the table, load.json and requests.jsonl
load_plots.py       the plots, every series overlaid
load_compare.py     its numbers against `vllm bench serve`'s on the same vLLM, alternating
"""
