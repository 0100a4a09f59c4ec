"""Benchmarks, one module per area; ``python -m benchmarks [AREA ...]`` runs them."""
