//! The systemd notify protocol (`sd_notify(3)`), without libsystemd: one
//! datagram of newline-separated `KEY=VALUE` assignments to the unix socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing. A failed
//! notification is logged and otherwise ignored: systemd's start timeout is
//! what notices a missing `READY=1`, and the agent must never stop serving
//! because the service manager went away.
//!
//! The variable is read at each call, after `main` may have entered
//! `intercept.netns`. A path socket (systemd's own, `/run/systemd/notify`)
//! is found through the file system from any network namespace; an abstract
//! one belongs to a network namespace and would be looked up in the entered
//! one.

use std::{
    ffi::OsStr,
    io,
    os::unix::{ffi::OsStrExt, net::UnixDatagram},
    path::Path,
    time::Duration,
};

/// The variable systemd sets for `Type=notify` services.
const ENV: &str = "NOTIFY_SOCKET";

/// `WatchdogSec=` in microseconds, set by systemd when the unit has one.
const WATCHDOG_USEC: &str = "WATCHDOG_USEC";

/// The pid `WATCHDOG_USEC` is meant for.
const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// A notification is a few bytes to a local socket; a manager that does not
/// take it within this long is not waited for.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Start-up is complete: steering attached, the audit open, listeners
/// serving. Also sent when a reload has finished (accepted or not).
pub fn ready() {
    notify("READY=1");
}

/// A reload (SIGHUP) has begun. `MONOTONIC_USEC` lets systemd 253+
/// (`Type=notify-reload`) tell this reload from an earlier one; older
/// versions ignore it. [`ready`] ends the reload.
pub fn reloading() {
    notify(&reloading_message(monotonic_usec()));
}

/// Shutdown has begun: listeners closed, connections draining.
pub fn stopping() {
    notify("STOPPING=1");
}

/// The serving loop is alive (`WatchdogSec=`): see `agent::watchdog` for
/// when it is sent.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// How often to send [`watchdog`]: half of `$WATCHDOG_USEC`, as
/// `sd_watchdog_enabled(3)` advises, when systemd set it for this process
/// (`$WATCHDOG_PID` unset or this pid). `None`: no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var_os(WATCHDOG_USEC).as_deref(),
        std::env::var_os(WATCHDOG_PID).as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&OsStr>, pid: Option<&OsStr>, me: u32) -> Option<Duration> {
    // The variables are inherited by children (the upstream-credential
    // command); WATCHDOG_PID says whose they are.
    if let Some(pid) = pid
        && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(me)
    {
        return None;
    }
    let usec: u64 = usec?.to_str()?.parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// A one-line status for `systemctl status`.
pub fn status(msg: &str) {
    notify(&status_message(msg));
}

fn reloading_message(usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

fn status_message(msg: &str) -> String {
    // A newline would start another assignment.
    format!("STATUS={}", msg.replace('\n', " "))
}

fn notify(state: &str) {
    notify_to(std::env::var_os(ENV).as_deref(), state);
}

/// [`notify`] with the socket given (tests pass it instead of setting the
/// process environment): nothing without one, a log line on failure.
fn notify_to(addr: Option<&OsStr>, state: &str) {
    let Some(addr) = addr else {
        return;
    };
    if let Err(e) = send_to(addr, state) {
        tracing::warn!(
            error = %e,
            socket = %addr.to_string_lossy(),
            state = %state.replace('\n', " "),
            "systemd notification not sent"
        );
    }
}

/// Sends `state` to the notify socket `addr` (`$NOTIFY_SOCKET`'s value).
fn send_to(addr: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    let bytes = addr.as_bytes();
    let sent = match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let to = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &to)?
        }
        Some((b'/', _)) => sock.send_to(state.as_bytes(), Path::new(addr))?,
        _ => {
            // systemd only ever sets an absolute path or an abstract name;
            // `vsock:` (systemd 254+ in VMs) is not supported here.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an absolute path or @abstract name",
            ));
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", state.len()),
        ));
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsString, os::unix::ffi::OsStringExt};

    use super::*;

    fn bound(dir: &Path) -> (UnixDatagram, OsString) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sock, path.into_os_string())
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_each_state_as_one_datagram_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, addr) = bound(dir.path());
        send_to(&addr, "READY=1").unwrap();
        send_to(&addr, "STOPPING=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket_named_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mcpi-notify-test-{}", std::process::id());
        let at = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&at).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        send_to(&OsString::from(format!("@{name}")), "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, addr) = bound(dir.path());
        let before = monotonic_usec();
        send_to(&addr, &reloading_message(monotonic_usec())).unwrap();
        let after = monotonic_usec();
        let msg = recv(&sock);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"), "{msg}");
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {msg:?}"));
        assert!(before > 0 && (before..=after).contains(&usec), "{msg}");
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn errors_are_returned_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        // Nobody bound there.
        let missing = dir.path().join("absent.sock").into_os_string();
        assert!(send_to(&missing, "READY=1").is_err());
        for bad in ["", "relative.sock", "vsock:2:1234"] {
            let e = send_to(OsStr::new(bad), "READY=1").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        // Not UTF-8: still a valid path.
        let (sock, addr) = bound(dir.path());
        let odd = dir.path().join(OsString::from_vec(b"n\xffotify".to_vec()));
        std::fs::rename(Path::new(&addr), &odd).unwrap();
        send_to(odd.as_os_str(), "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn status_stays_one_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, addr) = bound(dir.path());
        notify_to(Some(&addr), &status_message("two\nlines"));
        assert_eq!(recv(&sock), "STATUS=two lines");
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_pid_only() {
        let usec = |v: &str| Some(OsString::from(v));
        let half = Some(Duration::from_secs(15));
        assert_eq!(
            watchdog_interval_from(usec("30000000").as_deref(), None, 7),
            half
        );
        assert_eq!(
            watchdog_interval_from(usec("30000000").as_deref(), usec("7").as_deref(), 7),
            half
        );
        // Another process's watchdog (a child inherited the variables).
        assert_eq!(
            watchdog_interval_from(usec("30000000").as_deref(), usec("8").as_deref(), 7),
            None
        );
        for bad in ["", "0", "-5", "30s", "1e6"] {
            assert_eq!(
                watchdog_interval_from(usec(bad).as_deref(), None, 7),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(
            watchdog_interval_from(usec("30000000").as_deref(), usec("x").as_deref(), 7),
            None
        );
    }

    #[test]
    fn no_socket_is_a_no_op_and_failures_are_not_fatal() {
        notify_to(None, "READY=1");
        notify_to(Some(OsStr::new("relative")), "READY=1");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.sock").into_os_string();
        notify_to(Some(&missing), "READY=1");
    }
}
