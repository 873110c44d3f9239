"""The tool interface and the context a tool runs in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from t_koma.messages import ToolDefinition


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Where and how a tool runs. `env` is the environment for child processes, already stripped of every
    provider key and every variable named like a secret; `secrets` are the values no tool output may carry (the
    engine redacts them before the output goes upstream, to the store or to clients)."""

    workspace: Path
    env: Mapping[str, str]
    timeout_seconds: float = 120.0
    output_cap_bytes: int = 32 * 1024
    secrets: tuple[str, ...] = field(default=(), repr=False)
    owner: str | None = None
    """The tag in every tool process's environment (`tools.leftovers`), to stop what they leave behind."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str
    is_error: bool = False


class Tool(ABC):
    """A capability offered to the model. `requires_approval` tools go through the approval policy first."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[Mapping[str, Any]]
    requires_approval: ClassVar[bool] = True

    @abstractmethod
    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Run with validated-as-JSON arguments. Failures are returned as `is_error` results, not raised."""

    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self.parameters)


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def definitions(self) -> tuple[ToolDefinition, ...]:
        return tuple(tool.definition() for tool in self.tools.values())
