"""The model registry: what workers publish about their models, and how a gateway reads it."""
