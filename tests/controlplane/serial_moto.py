"""A moto server that answers one request at a time.

DynamoDB applies conditional writes to one item one after another; moto's threaded server does
not (two racing conditional updates of a missing item can both pass). Tests about racing
writers use this server so that moto behaves like DynamoDB there: the race is still real (many
threads, many connections), only the server's answers are serialised.
"""

from __future__ import annotations

import sys

from tests.moto_server import MotoServer

_SERVE = (
    "import sys\n"
    "from werkzeug.serving import run_simple\n"
    "from moto.moto_server.threaded_moto_server import DomainDispatcherApplication\n"
    "from moto.server import create_backend_app\n"
    "run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app),"
    " threaded=False, use_reloader=False)\n"
)


class SerialMotoServer(MotoServer):
    def command(self) -> list[str]:
        return [sys.executable, "-c", _SERVE, str(self.port)]
