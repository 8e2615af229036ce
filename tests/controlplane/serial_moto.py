"""A moto server that answers one request at a time (``wakeful_local.moto``'s serial mode).

DynamoDB applies conditional writes to one item one after another; moto's threaded server does
not (two racing conditional updates of a missing item can both pass). Tests about racing
writers use this server so that moto behaves like DynamoDB there: the race is still real (many
threads, many connections), only the server's answers are serialised.
"""

from __future__ import annotations

from tests.moto_server import MotoServer


class SerialMotoServer(MotoServer):
    def __init__(self, port: int | None = None) -> None:
        super().__init__(port, serial=True)
