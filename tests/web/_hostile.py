"""Hostile text for the security tests: markup that runs script wherever it is not escaped."""

from __future__ import annotations


def hostile(field: str) -> str:
    """Markup that runs ``alert('<field>')`` wherever it is not escaped (text, attribute or script)."""
    return (
        f"</script><script>alert('{field}')</script>\"'><svg onload=alert('{field}')>"
        f"<img src=x onerror=alert('{field}')>"
    )
