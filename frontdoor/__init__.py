"""The front door: the app's one stable public URL, which wakes the backend and reaches it.

``frontdoor.handler.handler`` is the Lambda behind a function URL; ``frontdoor.local`` serves
the same handler on loopback for the local stack (``python -m frontdoor``).
"""
