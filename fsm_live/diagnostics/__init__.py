"""Reading traces back, for a person and for a check: ``fsm-live report`` and ``fsm-live verify``.

Pure functions of a :class:`~fsm_live.spec.Spec` and trace text: this room
imports neither the runtime nor the CLI (tests/test_layers.py).  The record
kinds it reads are documented in docs/diagnostics.md.

* :mod:`~fsm_live.diagnostics.records`: a trace's lines parsed into records;
* :mod:`~fsm_live.diagnostics.verify`: does a trace conform to its spec?
* :mod:`~fsm_live.diagnostics.report`: the figures (time in state, availability, ...);
* :mod:`~fsm_live.diagnostics.summary`: the figures as JSON-ready data;
* :mod:`~fsm_live.diagnostics.html`: one self-contained HTML page (the ``report`` extra);
* :mod:`~fsm_live.diagnostics.files`: which files to read, and which connection each is;
* :mod:`~fsm_live.diagnostics.units`: durations and shares as a person reads them.
"""

__all__ = ()
