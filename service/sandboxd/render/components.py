"""The fixed parts of every sandbox runtime: object names, container names, ports and mount paths.

Upstream's identifiers, exact, in one place so the StatefulSet, the Services, the HTTPRoute, the MCP companion
and the environment agree on them.

What it deliberately does not do: derive per-sandbox names (``sandboxd.naming`` and
``sandboxd.render.context``) or read settings.
"""

from __future__ import annotations

from typing import Final

PTY_SERVER: Final = "pty-server"
PTY_SERVER_PORT: Final = 7681
HTTP_PORT_NAME: Final = "http"
SERVICE_ACCOUNT: Final = "sandbox"

MCP_SERVER: Final = "openova-sandbox-mcp"
MCP_COMPONENT: Final = "mcp-server"
MCP_CONTAINER: Final = "mcp"
MCP_BINARY: Final = "/usr/local/bin/openova-sandbox-mcp"
MCP_CONFIG_MAP: Final = "sandbox-mcp-config"
MCP_CONFIG_COMPONENT: Final = "mcp-config"
MCP_CONFIG_KEY: Final = "mcp.json"
MCP_CONFIG_VOLUME: Final = "mcp-config"
#: Where each agent CLI looks for its MCP configuration (Claude Code, Qwen Code, Cursor, the workspace).
MCP_CONFIG_PATHS: Final = (
    "/workspace/.mcp.json",
    "/home/node/.claude.json",
    "/home/node/.qwen/settings.json",
    "/workspace/.cursor/mcp.json",
)

WORKSPACE: Final = "/workspace"
#: The non-root user and group every sandbox container runs as.
RUN_AS: Final = 65532
