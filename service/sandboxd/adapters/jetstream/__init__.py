"""The NATS JetStream adapter: connection, topology, KV stores, event deliveries and publishing.

nats-py errors are translated here, and only here, into ``sandboxd.errors``.
"""
