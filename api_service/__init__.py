"""The HTTP gateway: accepts predictions, publishes them as tasks, serves task results."""
