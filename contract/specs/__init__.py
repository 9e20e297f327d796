"""The spec language: Pydantic models by concern, YAML loading, sweeps, hashing, JSON Schema."""
