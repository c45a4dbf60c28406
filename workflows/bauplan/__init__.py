"""Bauplan behind one adapter: ``adapter`` wraps the SDK client and classifies its
errors; ``rehearsal`` is the stand-in client of rehearsal mode, with its job ledger;
``jobs`` shapes its answers like the SDK's and ``faults`` makes it fail like Bauplan."""
