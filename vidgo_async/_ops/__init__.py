"""Operations: one module each - reads, submit, wait, and the callback registry.

They compose the wire (``_wire``) and the rules (``_timing``); the client
and the batch compose them.
"""
