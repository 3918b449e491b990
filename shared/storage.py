"""Storage clients built from a ``StorageConfig`` (connection string or managed identity)."""

from __future__ import annotations

from functools import lru_cache

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient, QueueServiceClient

from shared.auth import credential_for
from shared.errors import ConfigError
from shared.settings import StorageConfig

__all__ = ["blob_service", "queue_client", "queue_service", "table_service"]


@lru_cache(maxsize=32)
def blob_service(config: StorageConfig) -> BlobServiceClient:
    """One shared, thread-safe client per account (connection pooling)."""
    if config.conn_string:
        return BlobServiceClient.from_connection_string(config.conn_string)
    if config.blob_uri:
        return BlobServiceClient(config.blob_uri, credential=credential_for(config.client_id))
    raise ConfigError(
        f"{config.setting}: no blob endpoint (set a connection string or {config.setting}__blobServiceUri)"
    )


@lru_cache(maxsize=32)
def table_service(config: StorageConfig) -> TableServiceClient:
    if config.conn_string:
        return TableServiceClient.from_connection_string(config.conn_string)
    if config.table_uri:
        return TableServiceClient(config.table_uri, credential=credential_for(config.client_id))
    raise ConfigError(
        f"{config.setting}: no table endpoint (set a connection string or {config.setting}__tableServiceUri)"
    )


@lru_cache(maxsize=32)
def queue_service(config: StorageConfig) -> QueueServiceClient:
    """Queue client per account (connection string or managed identity)."""
    if config.conn_string:
        return QueueServiceClient.from_connection_string(config.conn_string)
    if config.queue_uri:
        return QueueServiceClient(config.queue_uri, credential=credential_for(config.client_id))
    raise ConfigError(
        f"{config.setting}: no queue endpoint (set a connection string or {config.setting}__queueServiceUri)"
    )


def queue_client(config: StorageConfig, name: str) -> QueueClient:
    """One queue whose messages are base64 of bytes, as the Functions queue trigger expects by default."""
    return queue_service(config).get_queue_client(
        name, message_encode_policy=BinaryBase64EncodePolicy(), message_decode_policy=BinaryBase64DecodePolicy()
    )
