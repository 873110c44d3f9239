"""The approval gate between a model's tool call and running it (`[tools.shell] approval`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from t_koma.config.model import Approval
from t_koma.engine.events import ApprovalCallback, ApprovalNeeded, EventSink, ToolCallRequest
from t_koma.tools.base import Tool

DENIED_BY_POLICY = 'Not run: tool calls are disabled by the configuration ([tools.shell] approval = "deny").'
NOBODY_TO_ASK = (
    "Not run: this call needs the user's approval and nobody can give it here. The user can allow tool calls "
    'with `t-koma ask --yes` or by setting [tools.shell] approval = "auto" in config.toml.'
)
DENIED_BY_USER = "Not run: the user denied this call."
REMEMBERED_SESSIONS = 1024


@dataclass
class ApprovalGate:
    """Decides whether one call may run. `always` is the session's set of tool names the user approved for
    good; it outlives the turn (the engine keeps one set per session)."""

    policy: Approval
    callback: ApprovalCallback | None
    always: set[str]
    session_id: str
    sink: EventSink

    async def denial(self, tool: Tool, call: ToolCallRequest) -> str | None:
        """None when the call may run, else the message that goes back to the model as an error result."""
        if self.policy == "deny" and tool.requires_approval:
            return DENIED_BY_POLICY
        if not tool.requires_approval or self.policy == "auto" or call.name in self.always:
            return None
        if self.callback is None:
            return NOBODY_TO_ASK
        await self.sink(ApprovalNeeded(self.session_id, call.call_id, call.name, call.arguments))
        decision = await self.callback(call)
        if decision == "always":
            self.always.add(call.name)
            return None
        return None if decision == "approve" else DENIED_BY_USER


class RememberedApprovals:
    """Per session, the tool names its user approved "always" (the `ApprovalGate.always` sets), kept across turns.
    Bounded: sessions with nothing remembered are dropped when their turn ends, and beyond `max_sessions` the least
    recently used session is forgotten (its user is asked again), so a long-running gateway does not keep an entry
    for every session it ever served."""

    def __init__(self, max_sessions: int = REMEMBERED_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._sets: OrderedDict[str, set[str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sets)

    def of(self, session_id: str) -> set[str]:
        """The session's set (the same object until it is forgotten), now the most recently used."""
        always = self._sets.pop(session_id, None)
        if always is None:
            always = set()
        self._sets[session_id] = always
        while len(self._sets) > self.max_sessions:
            self._sets.popitem(last=False)
        return always

    def release(self, session_id: str) -> None:
        """A turn of the session ended: drop its entry if nothing is remembered."""
        if self._sets.get(session_id) == set():
            del self._sets[session_id]

    def forget(self, session_id: str) -> None:
        """The session was deleted."""
        self._sets.pop(session_id, None)
