"""A queue listener that behaves like the Functions host's queue trigger, for local workers.

In Azure the host receives messages, keeps them invisible while the function runs,
deletes them when it returns, makes them visible again after ``visibilityTimeout`` when it
raises, and moves a message that failed ``maxDequeueCount`` times to ``<queue>-poison``.
The CLI's worker processes and the local function host (``devtools.funchost``) use this
loop to get the same semantics from Azurite's queue service.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

__all__ = ["QueueLoop"]

log = logging.getLogger(__name__)


@dataclass
class QueueLoop:
    """Pulls ``batch`` messages at a time from ``queue`` and hands each to ``handle(body, dequeue_count)``
    (``serve``: concurrently, as host.json's ``batchSize`` and ``newBatchThreshold`` say).

    ``poison`` (the ``<queue>-poison`` queue) receives a message whose ``handle`` raised on
    its ``max_dequeue``-th delivery. ``retry_after`` is the visibility timeout after a failure.
    """

    queue: QueueClient
    handle: Callable[[bytes, int], object]
    poison: QueueClient | None = None
    max_dequeue: int = 5
    batch: int = 1
    new_batch_threshold: int = 0
    invisible_for: int = 600  # seconds a message stays hidden while it is processed
    retry_after: int = 30

    def __post_init__(self) -> None:
        for client in (self.queue, self.poison):
            if client is not None:
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()

    def _receive(self) -> list[QueueMessage]:
        try:
            return list(self.queue.receive_messages(max_messages=self.batch, visibility_timeout=self.invisible_for))
        except AzureError as exc:
            log.warning("queue %s: receive failed: %s", self.queue.queue_name, exc)
            return []

    def _process(self, message: QueueMessage) -> None:
        body = message.content if isinstance(message.content, bytes) else str(message.content).encode()
        count = int(message.dequeue_count or 1)
        try:
            self.handle(body, count)
        except Exception as exc:
            self._failed(message, body, count, exc)
            return
        self._delete(message)

    def run_once(self) -> int:
        """Receive up to ``batch`` messages and process them one after another; returns how many."""
        messages = self._receive()
        for message in messages:
            self._process(message)
        return len(messages)

    def _failed(self, message: QueueMessage, body: bytes, count: int, exc: Exception) -> None:
        if count >= self.max_dequeue and self.poison is not None:
            log.error(
                "queue %s: message failed %d times (%s); moved to %s",
                self.queue.queue_name,
                count,
                exc,
                self.poison.queue_name,
            )
            try:
                self.poison.send_message(body)
            except AzureError as send_exc:
                log.warning("queue %s: cannot move to poison: %s", self.queue.queue_name, send_exc)
                return
            self._delete(message)
            return
        log.warning(
            "queue %s: delivery %d failed (%s); retried in %ds", self.queue.queue_name, count, exc, self.retry_after
        )
        with contextlib.suppress(AzureError):  # else it becomes visible when its current timeout ends
            self.queue.update_message(message, visibility_timeout=self.retry_after)

    def _delete(self, message: QueueMessage) -> None:
        try:
            self.queue.delete_message(message)
        except ResourceNotFoundError:
            pass  # its visibility ran out and someone else got it: the ledger makes that harmless
        except AzureError as exc:
            log.warning("queue %s: delete failed: %s", self.queue.queue_name, exc)

    def serve(self, stop: threading.Event, *, idle_wait: float = 0.5) -> None:
        """Process messages until ``stop`` is set, like the host: up to ``batch`` fetched at a time
        and a new batch fetched once only ``new_batch_threshold`` are still running (so at most
        ``batch + new_batch_threshold`` at once), waiting ``idle_wait`` s when the queue is empty."""
        with ThreadPoolExecutor(self.batch + self.new_batch_threshold, thread_name_prefix="message") as pool:
            running: set[Future[None]] = set()
            while not stop.is_set():
                running = {f for f in running if not f.done()}
                if len(running) <= self.new_batch_threshold:
                    messages = self._receive()
                    running |= {pool.submit(self._process, m) for m in messages}
                    if not messages and not running:
                        stop.wait(idle_wait)
                        continue
                wait(running, timeout=idle_wait, return_when=FIRST_COMPLETED)
            wait(running)  # let the windows in hand finish (their messages are deleted or retried)
