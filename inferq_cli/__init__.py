"""The ``inferq`` command and what only it needs: the entry points sit above the roles they
start (the gateway in `api_service`, the workers in `workers`), which never import them.

- `inferq_cli.main`: the command line and its dispatch (``inferq``, ``python -m inferq_cli``).
- `inferq_cli.roles`: ``up``, ``gateway``, ``worker`` (and its ``--check`` probe).
- `inferq_cli.client`: ``models``, ``predict``, over a gateway's HTTP API.
- `inferq_cli.supervisor`: several child processes run as one.
- `inferq_cli.logs`: the logging set-up every entry point calls.
- `inferq_cli.admin`: removing a whole namespace (test runs, tearing down a deployment).
"""
