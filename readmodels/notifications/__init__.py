"""Notifications that a projection reached a position, the basis of read-your-writes: in one
process (``inprocess``) and across processes through PostgreSQL LISTEN/NOTIFY (``postgres``)."""
