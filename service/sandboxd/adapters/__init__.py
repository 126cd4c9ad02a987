"""Adapters: the only code that imports nats, kubernetes_asyncio, aiohttp or runs git.

Each adapter implements a protocol from ``sandboxd.reconcile.ports`` (or the runtime's broker protocol) and
translates its library's errors into ``sandboxd.errors`` at that one boundary.
"""
