"""Timing: pure rules, no I/O.

``classify`` (what a failure may have done), ``deadline`` (when a wait ends),
``schedules`` (how long to pause: backoff's generators fed from the
policies), ``learned`` and ``planning`` (where checks go once task durations
are known), ``budget`` (the retry budget), ``limits`` with ``grants`` and
``uncapped`` (the client-wide rate caps).
"""
