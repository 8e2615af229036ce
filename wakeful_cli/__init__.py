"""``wakeful``: the operator's command line for a wakeful backend.

It reads the same lease, bucket and control plane API as the deployed parts, against real AWS
(``--profile``, ``--region``) or a local stand-in (``--endpoint-url``) alike.
"""
