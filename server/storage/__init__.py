"""Persistence: the SQLAlchemy models, the Database, and repository functions per domain.

Repository functions take a ``Session``, raise ``server.errors`` exceptions and never touch
gRPC; the servicers call them through ``Database.run``.
"""

from server.storage.db import Database

__all__ = ["Database"]
