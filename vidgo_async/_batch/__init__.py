"""The batch: ``convert_many`` (``run``), its input (``intake``) and its SQLite journal."""
