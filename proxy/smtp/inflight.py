"""A budget for message bytes in flight in one process: DATA being received, judged and relayed.

Nothing capped the total: three 20 MB messages at once took a relay from 137 to 438 MB, and
more would have taken more until the kernel stepped in. Each DATA section reserves its bytes
as they arrive; when the budget is full, the rest of that DATA is read and thrown away and the
client is answered `452 4.3.1` (insufficient system storage: it retries later, nothing is
lost). The reservation is given back once the transaction is answered.
"""

from __future__ import annotations

__all__ = ["InFlight"]


class InFlight:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.refused = 0  # DATA sections answered 452 for want of room

    def take(self, n: int) -> bool:
        if self.used + n > self.budget:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)
