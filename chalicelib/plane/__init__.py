"""The control plane's rooms, each with only the collaborators it uses (Lambda code only).

``wake`` and ``sleep`` (the HTTP verbs that start and stop the backend), ``status`` (the shared
report, with what the launcher says of the task), ``accounting`` (task state changes: a stop is
proven or alarmed, once), ``reconciler`` (the schedule: the lease rules against what ECS runs,
and the stops whose events were lost) and ``reply`` (what HTTP answers). ``chalicelib.control``
builds them from one set of edges; none of them reads settings or builds a client.
"""
