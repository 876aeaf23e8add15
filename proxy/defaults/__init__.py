"""The embedded default configuration (sendwarden.toml), shipped inside the package."""
