"""Recipient state: suppressions, consent, frequency counters and the privacy-link ledger.

`open_store(url, normalize)` picks the backend from the URL (`sqlite:PATH` for one machine,
`postgresql://...` for a fleet); `from_config(config)` does so for the service configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from proxy.store.address import AddressNormalizer, DomainRule, InvalidAddress
from proxy.store.base import (
    FREQUENCY_SCOPES, GLOBAL, REASONS, SUPPRESSION_SCOPES, ConsentRecord, FrequencyOverride, PrivacyLink, Query,
    RecipientState, RecipientStore, Scope, StoreError, Suppression,
)


class StoreConfig(Protocol):
    """What `from_config` reads of the service configuration (proxy.config.Config): the store
    sits below the configuration and does not import it."""

    @property
    def store_url(self) -> str: ...

    @property
    def file(self) -> Any: ...


def open_store(url: str, normalize: AddressNormalizer) -> RecipientStore:
    """The store for `url`, not yet opened (call `await store.open()`)."""
    if url.startswith("sqlite:"):
        from proxy.store.sqlite import SqliteStore

        return SqliteStore(Path(url[len("sqlite:"):]), normalize)
    if url.startswith(("postgresql://", "postgres://")):
        from proxy.store.pg import PgStore

        return PgStore(url, normalize)
    raise StoreError(f"unsupported store URL {url!r} (expected sqlite:PATH or postgresql://...)")


def from_config(config: StoreConfig) -> RecipientStore:
    return open_store(config.store_url, AddressNormalizer.from_config(config.file.addresses))


__all__ = [
    "AddressNormalizer", "ConsentRecord", "DomainRule", "FREQUENCY_SCOPES", "FrequencyOverride", "GLOBAL",
    "InvalidAddress", "PrivacyLink", "Query", "REASONS", "RecipientState", "RecipientStore", "SUPPRESSION_SCOPES",
    "Scope", "StoreConfig", "StoreError", "Suppression", "from_config", "open_store",
]
