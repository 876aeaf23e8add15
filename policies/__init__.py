"""Shipped policy files; packaged as `proxy.policies` so the embedded default works from any install."""
