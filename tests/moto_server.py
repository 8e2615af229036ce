"""The tests' moto server is the local stack's: one implementation of starting and resetting it."""

from wakeful_local.moto import MotoServer, free_port

__all__ = ["MotoServer", "free_port"]
