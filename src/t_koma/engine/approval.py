"""The approval gate between a model's tool call and running it (`[tools.shell] approval`)."""

from __future__ import annotations

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
