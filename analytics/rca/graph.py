"""The call graph RCA walks: known edges, plus the ones traces show (a span whose parent
ran in another service is a call from that service)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from analytics.traces.spans import SpanBatch


class CallGraph:
    """Directed caller -> callee edges between services."""

    def __init__(self, edges: Iterable[tuple[str, str]] = ()) -> None:
        self.callees: dict[str, set[str]] = {}
        self.callers: dict[str, set[str]] = {}
        for caller, callee in edges:
            self.add(caller, callee)

    def add(self, caller: str, callee: str) -> None:
        """One edge (self-calls are ignored)."""
        if caller == callee or not caller or not callee:
            return
        self.callees.setdefault(caller, set()).add(callee)
        self.callers.setdefault(callee, set()).add(caller)

    def __len__(self) -> int:
        return sum(len(v) for v in self.callees.values())

    def add_spans(self, spans: SpanBatch) -> None:
        """The cross-service parent -> child edges of ``spans``."""
        service_of = dict(zip(spans.span_id, spans.service, strict=True))
        for parent, child in zip(spans.parent_id, spans.service, strict=True):
            caller = service_of.get(parent) if parent else None
            if caller is not None:
                self.add(caller, child)
        # Client spans whose callee sent no spans name it by a peer attribute.
        for service, peer in zip(spans.service, spans.peer, strict=True):
            if peer:
                self.add(service, peer)

    def downstream(self, service: str) -> set[str]:
        """Every service reachable from ``service`` through calls."""
        seen: set[str] = set()
        todo = deque(self.callees.get(service, ()))
        while todo:
            node = todo.popleft()
            if node not in seen:
                seen.add(node)
                todo.extend(self.callees.get(node, ()))
        return seen

    def path(self, source: str, target: str) -> list[str]:
        """The shortest call path source -> ... -> target ([] when there is none)."""
        if source == target:
            return [source]
        back: dict[str, str] = {}
        todo = deque([source])
        while todo:
            node = todo.popleft()
            for nxt in sorted(self.callees.get(node, ())):
                if nxt not in back and nxt != source:
                    back[nxt] = node
                    if nxt == target:
                        out = [target]
                        while out[-1] != source:
                            out.append(back[out[-1]])
                        return out[::-1]
                    todo.append(nxt)
        return []
