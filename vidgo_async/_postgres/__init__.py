"""The PostgreSQL integration's internals (extra ``postgres``); public in ``vidgo_async.postgres``.

The core never imports this package: ``VidgoClient`` only sees the
:class:`~vidgo_async._timing.limits.Quota` and ``Limiter`` protocols.
"""
