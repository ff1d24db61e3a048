"""The tamper-evident audit trail: content-addressed inputs, hash-chained records, signed
checkpoints, retention, and the queries that read it back.

A low-level package like ``app.db``: it depends on the database, the settings' key-encryption
key and the error catalogue only, so every domain package may record into it. Import the
module you need (``app.audit.chain``, ``app.audit.inputs``...); this package imports nothing.
"""
