"""Forensics: how and why a run ended, from its log alone, citing the events.

:func:`explain` reads a run's events (``store.read_run(run_id)``) and returns an
:class:`Explanation`: a headline and :class:`Statement` s grouped in sections (outcome,
failure, what was in flight, idle time, critic decisions, deadline, recoveries, post-run),
each citing the seq numbers of the events it rests on. ``executus why RUN`` prints it::

    from executus.forensics import explain

    explanation = explain(store.read_run("8cc14576..."))
    print(explanation.headline)
    for statement in explanation.section("critic"):
        print(statement.text, statement.seqs)

Everything a log says is untrusted (model output, tool results fetched from the web): the
statements quote it through :func:`terminal_text`, which makes control characters, escape
sequences and bidi overrides visible instead of letting them drive a terminal. Use it for any
log text you print yourself.
"""

from executus._forensics import SECTION_TITLES, Explanation, Section, Statement, explain
from executus._text import terminal_text

__all__ = ["SECTION_TITLES", "Explanation", "Section", "Statement", "explain", "terminal_text"]
