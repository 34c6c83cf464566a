"""The gateway core: submitting predictions and reading tasks, with no HTTP in it.

`open_gateway(settings)` builds it (connections, registry, publisher, waiter); every front door
(the HTTP app today; the Open Inference Protocol and gRPC next) turns its requests into
`Gateway.predict` and `Gateway.task` calls, and their answers and errors (`inferq.errors`)
into its own. The rule for when a task's record is written is `records`.
"""
