"""Replication of a live SQLite database as a chain of LTX segments in S3.

Used by the sync agent and the operator CLI, never by the control plane Lambda: it loads SQLite
(APSW) and compression libraries the Lambda zip does not carry.
"""
