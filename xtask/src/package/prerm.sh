#!/bin/sh
# mcp-interceptor prerm: on removal, stop the agent and remove its pinned
# eBPF program (fail = "closed" would keep refusing connections to the MCP
# ports without it). An upgrade leaves both: postinst restarts the agent.
set -e

CONFIG=/etc/mcp-interceptor/config.toml
UNIT=mcp-interceptor.service

case "$1" in
remove | deconfigure)
    if [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop "$UNIT" >/dev/null || true
    fi
    if [ -f "$CONFIG" ]; then
        if mcp-interceptor status --config "$CONFIG" 2>/dev/null |
            grep -q '"agent_alive": true'; then
            echo "mcp-interceptor: an agent started outside systemd still runs: its steering stays pinned until it is stopped and the pin_dir removed" >&2
        else
            mcp-interceptor detach --config "$CONFIG" >/dev/null ||
                echo "mcp-interceptor: could not remove the pinned steering (above)" >&2
        fi
    fi
    ;;
upgrade | failed-upgrade) ;;
*)
    echo "prerm called with unknown argument '$1'" >&2
    exit 1
    ;;
esac
exit 0
