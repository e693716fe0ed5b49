"""The wire: everything that knows aiohttp, HTTP or JSON.

``transport`` (one API request), ``envelope`` (the answer's JSON envelope),
``convert`` (the one cattrs converter), ``download`` with ``peers`` (which
hosts may serve a file) and ``wavfile`` (the file on disk).
"""
