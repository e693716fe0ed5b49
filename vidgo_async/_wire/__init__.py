"""The wire: everything that knows aiohttp, HTTP or JSON.

``transport`` (one API request), ``envelope`` (the answer's JSON envelope),
``convert`` (the vendor's shapes, on the one cattrs converter of ``_converter``),
``download`` with ``peers`` (which hosts may serve a file) and ``wavfile`` (the
file on disk).
"""
