"""The ledger in Table Storage: window entities and their state machine (docs/reliability.md), the meta
marks that keep planning flat, and the day rollups status reads."""

from shared.ledger.claim import Claim, LeaseLost, free_takeovers
from shared.ledger.marks import Snapshot
from shared.ledger.rows import META_KEY
from shared.ledger.store import Ledger

__all__ = ["META_KEY", "Claim", "LeaseLost", "Ledger", "Snapshot", "free_takeovers"]
