#!/bin/sh
# mcp-interceptor postrm. Purge removes the package's systemd state and the
# logs, but KEEPS /var/lib/mcp-interceptor (the audit trail, its outbox of
# files not yet uploaded, the audit signing key, tool pins, approvals) and
# the operator's /etc/mcp-interceptor: evidence is never deleted by a
# package manager unless the operator asked for it, either with
#   touch /var/lib/mcp-interceptor/purge-state   (before the purge), or
#   MCP_INTERCEPTOR_PURGE_STATE=yes dpkg --purge mcp-interceptor
set -e

STATE=/var/lib/mcp-interceptor
UNIT=mcp-interceptor.service

purge_state() {
    if [ ! -d "$STATE" ]; then
        return 0
    fi
    if [ "${MCP_INTERCEPTOR_PURGE_STATE:-}" = yes ] || [ -e "$STATE/purge-state" ]; then
        rm -rf "$STATE"
        echo "mcp-interceptor: removed $STATE (audit trail, signing key, state), as asked"
        return 0
    fi
    pending=$(find "$STATE" -path '*/outbox/*' -type f 2>/dev/null | wc -l)
    cat <<MSG
mcp-interceptor: purged, but KEPT $STATE: the audit trail, the audit
  signing key, tool pins and approvals ($pending audit file(s) still waiting
  in the outbox for S3 upload). Back it up or upload it, then delete it:
    rm -rf $STATE
  (to have a purge delete it: touch $STATE/purge-state first, or run
  MCP_INTERCEPTOR_PURGE_STATE=yes dpkg --purge mcp-interceptor)
MSG
}

case "$1" in
purge)
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge "$UNIT" >/dev/null || true
        deb-systemd-helper unmask "$UNIT" >/dev/null || true
    fi
    rm -rf /var/log/mcp-interceptor
    purge_state
    # The operator's config stays; the directory goes if it is empty.
    rmdir /etc/mcp-interceptor 2>/dev/null || true
    ;;
remove)
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper mask "$UNIT" >/dev/null || true
    fi
    ;;
upgrade | failed-upgrade | abort-install | abort-upgrade | disappear) ;;
*)
    echo "postrm called with unknown argument '$1'" >&2
    exit 1
    ;;
esac
exit 0
