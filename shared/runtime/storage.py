"""Storage clients built from a ``StorageConfig`` (connection string or managed identity)."""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient, QueueServiceClient

from shared.errors import ConfigError
from shared.runtime.auth import credential_for
from shared.settings import StorageConfig

__all__ = ["blob_service", "queue_client", "queue_service", "table_service"]


_Client = TypeVar("_Client", BlobServiceClient, TableServiceClient, QueueServiceClient)


def _client(cls: type[_Client], config: StorageConfig, uri: str | None, service: str) -> _Client:
    """``cls`` from the connection string, else from the service URI with the managed identity."""
    if config.conn_string:
        return cls.from_connection_string(config.conn_string)
    if uri:
        return cls(uri, credential=credential_for(config.client_id))
    raise ConfigError(
        f"{config.setting}: no {service} endpoint (set a connection string or {config.setting}__{service}ServiceUri)"
    )


@lru_cache(maxsize=32)
def blob_service(config: StorageConfig) -> BlobServiceClient:
    """One shared, thread-safe client per account (connection pooling)."""
    return _client(BlobServiceClient, config, config.blob_uri, "blob")


@lru_cache(maxsize=32)
def table_service(config: StorageConfig) -> TableServiceClient:
    return _client(TableServiceClient, config, config.table_uri, "table")


@lru_cache(maxsize=32)
def queue_service(config: StorageConfig) -> QueueServiceClient:
    """Queue client per account (connection string or managed identity)."""
    return _client(QueueServiceClient, config, config.queue_uri, "queue")


def queue_client(config: StorageConfig, name: str) -> QueueClient:
    """One queue whose messages are base64 of bytes, as the Functions queue trigger expects by default."""
    return queue_service(config).get_queue_client(
        name, message_encode_policy=BinaryBase64EncodePolicy(), message_decode_policy=BinaryBase64DecodePolicy()
    )
