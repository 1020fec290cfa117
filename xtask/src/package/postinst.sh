#!/bin/sh
# mcp-interceptor postinst. The agent is never enabled or started by the
# package: the unit starts only once the operator has written
# /etc/mcp-interceptor/config.toml (ConditionPathExists=), and is enabled
# by the operator (systemctl enable --now). An upgrade restarts an agent
# that runs or is enabled.
set -e

CONFIG=/etc/mcp-interceptor/config.toml
EXAMPLE=/usr/share/mcp-interceptor/config.example.toml
STATE=/var/lib/mcp-interceptor
UNIT=mcp-interceptor.service

how_to_start() {
    cat <<MSG
mcp-interceptor: installed, not started: there is no $CONFIG yet.
  1. write it: mcp-interceptor init (probes this host's MCP servers), or
     start from $EXAMPLE (every key explained)
  2. check it: mcp-interceptor check-config $CONFIG
               mcp-interceptor doctor --config $CONFIG
  3. start it: systemctl enable --now mcp-interceptor
MSG
}

case "$1" in
configure | abort-upgrade | abort-deconfigure | abort-remove)
    if [ "$1" = configure ]; then
        # Audit trail, signing and masking keys, tool pins, approvals: root
        # only. The config directory is the operator's.
        mkdir -p "$STATE" /etc/mcp-interceptor
        chown root:root "$STATE"
        chmod 0700 "$STATE"
    fi
    # dh_installsystemd --no-enable: only masks made by the package's
    # removal are lifted; an operator's enablement is kept on upgrade.
    if deb-systemd-helper debian-installed "$UNIT"; then
        deb-systemd-helper unmask "$UNIT" >/dev/null || true
        if deb-systemd-helper --quiet was-enabled "$UNIT"; then
            deb-systemd-helper enable "$UNIT" >/dev/null || true
        fi
    fi
    deb-systemd-helper update-state "$UNIT" >/dev/null || true
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then
            # Restarts only an agent that is enabled or running.
            deb-systemd-invoke restart "$UNIT" >/dev/null || true
        fi
    fi
    if [ "$1" = configure ] && [ ! -e "$CONFIG" ]; then
        how_to_start
    fi
    ;;
*)
    echo "postinst called with unknown argument '$1'" >&2
    exit 1
    ;;
esac
exit 0
