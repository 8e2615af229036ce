"""Process exit codes of the manual verbs (``wakeful-agent``) and the operator CLI (``wakeful``).

A script can tell "refused, nothing was changed" from "failed" and from "called wrongly". The
agent's ``run`` has codes of its own for each way its lifecycle can end (``container.agent``).
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad arguments or configuration: nothing was tried
EXIT_REFUSED = 3  # doing it would break an invariant (one writer, nothing lost): nothing changed
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
