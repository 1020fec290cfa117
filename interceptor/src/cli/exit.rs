//! The EXIT STATUS section of each command's help. One convention for
//! all: 0 is success, 1 is failure (a check failed, an answer was
//! negative, or an error whose cause goes to stderr), 2 is a usage error
//! (clap's: an unknown flag, a missing or malformed argument).

/// The root command.
pub const ROOT: &str = "EXIT STATUS:
  0  the command succeeded
  1  it failed: a check failed, or an error (its cause on stderr)
  2  usage error: unknown command or flag, missing or malformed argument
Each command's --help names what success and failure mean for it.";

/// Commands that only group subcommands.
pub const PARENT: &str = "EXIT STATUS:
  that of the subcommand; 2 when none or an unknown one is given";

/// Commands whose only failure is an error.
pub const PLAIN: &str = "EXIT STATUS:
  0  done
  1  error (its cause on stderr)
  2  usage error";

/// `run`.
pub const RUN: &str = "EXIT STATUS:
  0  stopped cleanly (SIGTERM or SIGINT)
  1  could not start, or failed while running (the log says why); with
     fail = \"closed\" the steered ports stay refused until it runs again
  2  usage error";

/// `init`.
pub const INIT: &str = "EXIT STATUS:
  0  config written (or printed with -c -)
  1  error: the file exists (use --force), or it cannot be written
  2  usage error, e.g. neither --oidc-issuer nor --allow-anonymous";

/// `check-config`.
pub const CHECK_CONFIG: &str = "EXIT STATUS:
  0  the config is valid (warnings on stderr do not fail it)
  1  invalid: the cause on stderr (with --json: {\"valid\": false, \"error\": ...})
  2  usage error";

/// `doctor`.
pub const DOCTOR: &str = "EXIT STATUS:
  0  every check passed (warnings do not fail)
  1  at least one check failed (each with a fix)
  2  usage error";

/// `status`.
pub const STATUS: &str = "EXIT STATUS:
  0  the pinned state was read
  1  nothing is pinned (the agent never ran, or was detached) or it
     cannot be read; still JSON on stdout: {\"attached\": false, ...}
  2  usage error";

/// `audit verify`.
pub const VERIFY: &str = "EXIT STATUS:
  0  every file and the manifest chain are intact
  1  a break (named on stdout), or the directory cannot be read
  2  usage error";

/// `audit replay`.
pub const REPLAY: &str = "EXIT STATUS:
  0  the session's rows were printed
  1  no rows for the session, or an error
  2  usage error";

/// `policy test`.
pub const POLICY_TEST: &str = "EXIT STATUS:
  0  every case got the decision it expects
  1  a case did not, or the policy or table cannot be loaded
  2  usage error";

/// `tools show`.
pub const TOOLS_SHOW: &str = "EXIT STATUS:
  0  the tool was shown
  1  the server has no such tool recorded, or an error
  2  usage error";

/// `tools pin`.
pub const TOOLS_PIN: &str = "EXIT STATUS:
  0  re-pinned (or nothing had changed)
  1  no such server or tool, or an error
  2  usage error";

/// Commands that ask the running agent (`approvals`, `grants`).
pub const AGENT: &str = "EXIT STATUS:
  0  the agent answered and did it
  1  the agent refused (its reason on stderr), or cannot be reached
  2  usage error";

/// `report nist`: the worst status of the period's controls.
pub const REPORT_NIST: &str = "EXIT STATUS:
  (after writing all three files)
  0  every control met
  1  the report could not be made (its cause on stderr)
  2  usage error
  3  a control not met (a broken audit chain included)
  4  none not met, but one partial or not assessed";
