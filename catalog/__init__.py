"""The catalog: what exists — models, their versions and aliases, metadata and signatures, in
a SQL database with migrations — and where their files live (a directory or an S3-compatible
store). The heartbeat registry in Redis (`model_registry`) says only who is alive; the
catalog survives Redis being flushed."""
