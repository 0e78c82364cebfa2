"""The FIFO scheduler's wait queue: priority order, positions reported only on change.

The queue is a Python list kept in non-increasing priority order, with a
parallel list of sort keys (negated priorities) so that an insertion finds its
place by binary search. Appending at the tail (the common case: equal
priorities) reports one position; an insertion reports the new request and
those behind it; a removal reports those behind it; a sweep (one drain pass)
reports only the requests whose index actually changed. llama-swap re-sends
every position on every enqueue, which makes ingesting n requests O(n^2) in
position messages; this queue sends n for n appends.

When the scheduler has a ``max_wait`` the queue also keeps a min-heap of
``(arrived, seq, request)`` to find the oldest queued request in O(log n);
entries of requests that left the queue are dropped lazily (and the heap is
compacted when stale entries outnumber live ones).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterator

from swapcore.scheduling.requests import Request

__all__ = ["RequestQueue"]

_Age = tuple[float, int, Request]


class RequestQueue:
    """Queued requests in service order, telling each its 1-based position on change.

    ``report(request, position)`` is called whenever a queued request's
    position changes, including on its first enqueue, and at no other time:
    the last position reported to a queued request is always its current one.
    With ``track_age`` the queue also answers :meth:`oldest` in O(log n).
    Internal to :class:`~swapcore.scheduling.fifo.FIFOScheduler`; other
    schedulers may reuse it.
    """

    __slots__ = ("_ages", "_keys", "_members", "_report", "_requests", "_seq")

    def __init__(self, report: Callable[[Request, int], None], *, track_age: bool = False) -> None:
        self._requests: list[Request] = []
        self._keys: list[int] = []  # -priority; non-decreasing along the queue
        self._members: set[Request] = set()
        self._report = report
        self._ages: list[_Age] | None = [] if track_age else None
        self._seq = 0

    def __len__(self) -> int:
        return len(self._members)

    def __bool__(self) -> bool:
        return bool(self._members)

    def __contains__(self, request: object) -> bool:
        return request in self._members

    def __iter__(self) -> Iterator[Request]:
        members = self._members
        return (request for request in self._requests if request in members)

    def position(self, request: Request) -> int | None:
        """The request's 1-based position, or None when it is not queued (O(n))."""
        if request not in self._members:
            return None
        return [r for r in self._requests if r in self._members].index(request) + 1

    def push(self, request: Request, priority: int) -> None:
        """Queue ``request`` before the first request of strictly lower priority.

        Equal priorities keep arrival order. Reports the new request's
        position and the new positions of the requests behind it.
        """
        requests, keys = self._requests, self._keys
        key = -priority
        if not keys or keys[-1] <= key:
            index = len(keys)
            keys.append(key)
            requests.append(request)
        else:
            index = bisect_right(keys, key)
            keys.insert(index, key)
            requests.insert(index, request)
        self._members.add(request)
        ages = self._ages
        if ages is not None:
            heapq.heappush(ages, (request.arrived, self._seq, request))
            self._seq += 1
            if len(ages) > 2 * len(self._members) + 64:
                self._compact_ages()
        report = self._report
        for i in range(index, len(requests)):
            report(requests[i], i + 1)

    def remove(self, request: Request) -> bool:
        """Remove a queued request; report the new positions of those behind it.

        Returns False (and does nothing) when the request is not queued. O(n).
        """
        if request not in self._members:
            return False
        self._members.discard(request)
        requests = self._requests
        index = requests.index(request)  # Request equality is identity
        del requests[index]
        del self._keys[index]
        report = self._report
        for i in range(index, len(requests)):
            report(requests[i], i + 1)
        return True

    def detach(self, request: Request) -> None:
        """Take a request out of the queue without reporting anyone yet.

        The next :meth:`sweep` drops it and reports the positions that changed,
        so a request served ahead of order inside one drain pass costs those
        behind it one position message, not two.
        """
        self._members.discard(request)

    def sweep(self, visit: Callable[[Request], bool]) -> None:
        """Walk the queue in order and drop each request for which ``visit`` is True.

        Detached requests are dropped without a visit. Requests that stay keep
        their order; afterwards each one whose position changed is told its
        new position (once). ``visit`` must not push to or remove from this
        queue.
        """
        old_requests, old_keys = self._requests, self._keys
        members = self._members
        kept: list[Request] = []
        kept_keys: list[int] = []
        moved: list[int] = []
        for i, request in enumerate(old_requests):
            if request not in members:
                continue
            if visit(request):
                members.discard(request)
                continue
            if i != len(kept):
                moved.append(len(kept))
            kept.append(request)
            kept_keys.append(old_keys[i])
        self._requests, self._keys = kept, kept_keys
        report = self._report
        for index in moved:
            report(kept[index], index + 1)

    def clear(self) -> list[Request]:
        """Empty the queue without reporting; return the requests it held, in order."""
        members = self._members
        out = [request for request in self._requests if request in members]
        self._requests, self._keys = [], []
        members.clear()
        if self._ages is not None:
            self._ages.clear()
        return out

    def oldest(self) -> Request | None:
        """The queued request with the smallest ``arrived`` (ties: enqueue order).

        Needs ``track_age``; returns None when the queue is empty.
        """
        ages = self._ages
        if ages is None:
            raise RuntimeError("RequestQueue.oldest() needs track_age=True")
        members = self._members
        while ages:
            request = ages[0][2]
            if request in members:
                return request
            heapq.heappop(ages)
        return None

    def track_age(self) -> None:
        """Start answering :meth:`oldest` (for a queue built without ``track_age``)."""
        if self._ages is not None:
            return
        ages: list[_Age] = []
        for request in self:
            ages.append((request.arrived, self._seq, request))
            self._seq += 1
        heapq.heapify(ages)
        self._ages = ages

    def _compact_ages(self) -> None:
        ages = self._ages
        assert ages is not None
        members = self._members
        ages[:] = [entry for entry in ages if entry[2] in members]
        heapq.heapify(ages)
