"""executus benchmarks against the physical limit and the peers (issue 7), measured in one run.

Run ``python -m bench`` (the full bench, what ``bench/RESULTS.md`` reports) or
``python -m bench --quick`` (every case at a small size, under a minute: what CI runs). Both
print one table of figures and ratios (medians over interleaved repetitions, same process) and
``--json PATH`` writes it as JSON too. The peers (LangGraph, eventsourcing) come from the
optional ``bench`` extra; a peer that is not installed is reported as such, not measured.

Cases, one module each: ``case_append`` (1), ``case_steps`` (2), ``case_rebuild`` (3),
``case_replay`` (4), ``case_concurrency`` (5), ``case_memory`` (6), ``case_loop_lag`` (7).
"""
