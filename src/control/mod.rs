//! The operator's commands (`basalt superuser create|upsert|update|delete|otp`)
//! and the control socket that lets the CLI run them while a server holds
//! the data dir.
//!
//! The data dir is locked by the process that opens it, so the CLI cannot
//! open it while `basalt serve` runs. Instead the server listens on a Unix
//! socket inside the data dir ([`SOCKET_NAME`], mode 0600 in a 0700 dir,
//! peer uid checked), and the CLI, finding the dir locked, sends its
//! command there as one JSON line and prints the one JSON line it gets
//! back. Either way the command runs through [`execute`], which writes
//! through `core` like the HTTP API (so the realtime feed sees it).
//!
//! Messages, arguments and exit codes follow PocketBase 0.40's
//! `superuser` commands, so scripts written for it keep working.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::{auth, records, SUPERUSERS};
use crate::error::ApiError;
use crate::state::AppState;

#[cfg(unix)]
mod client;
#[cfg(unix)]
mod server;
#[cfg(unix)]
mod socket;

#[cfg(unix)]
pub use server::Listener;

/// Without Unix sockets there is no control socket: the CLI works only
/// while the server is stopped.
#[cfg(not(unix))]
pub struct Listener;

#[cfg(not(unix))]
impl Listener {
    pub fn start(_state: &AppState, _dir: &std::path::Path) -> Option<Listener> {
        None
    }
    pub async fn stop(self) {}
}

/// Hands `cmd` to the server running on `dir` (see the module docs); the
/// error says why the server could not be asked.
pub async fn send(dir: &std::path::Path, cmd: &Command) -> Result<Answer, String> {
    #[cfg(unix)]
    return client::send(dir, cmd).await;
    #[cfg(not(unix))]
    return Err(format!("{} is in use by a running server", dir.display()));
}

/// The socket's file name inside the data dir.
pub const SOCKET_NAME: &str = ".basalt.sock";

/// Longest request or answer line in bytes (with its newline): an email,
/// a password and a few keys fit many times over; a longer line is an
/// error, never an allocation the sender chooses.
pub const MAX_LINE: usize = 16 * 1024;

/// One command, as the CLI parsed it and as it travels on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// A new superuser; refused if the address is taken.
    Create { email: String, password: String },
    /// A new superuser, or a new password for an existing one.
    Upsert { email: String, password: String },
    /// A new password for an existing superuser.
    Update { email: String, password: String },
    /// Deletes a superuser (an unknown address is not an error).
    Delete { email: String },
    /// A one-time password for `auth-with-otp` on `_superusers`.
    Otp { email: String },
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase", deny_unknown_fields)]
pub enum Outcome {
    Created {
        email: String,
    },
    Saved {
        email: String,
    },
    Updated {
        email: String,
    },
    Deleted {
        email: String,
    },
    /// `delete` of an address no superuser has (exit 0, as PocketBase).
    Missing {
        email: String,
    },
    Otp {
        email: String,
        id: String,
        password: String,
        /// Seconds the code stays valid.
        valid: u64,
    },
}

/// The server's answer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Answer {
    Ok(Outcome),
    Error(String),
}

impl Command {
    /// Builds a command from `superuser ACTION ARGS…`, checking the
    /// arguments with PocketBase's messages (extra arguments after the
    /// email are ignored by `delete` and `otp`, as there).
    pub fn from_args(action: &str, args: &[String]) -> Result<Command, String> {
        let pair = || -> Result<(String, String), String> {
            let [email, password] = args else {
                return Err("missing email and password arguments".into());
            };
            Ok((email.clone(), password.clone()))
        };
        let cmd = match action {
            "create" => pair().map(|(email, password)| Command::Create { email, password })?,
            "upsert" => pair().map(|(email, password)| Command::Upsert { email, password })?,
            "update" => pair().map(|(email, password)| Command::Update { email, password })?,
            "delete" | "otp" => {
                let email = args.first().cloned().unwrap_or_default();
                if action == "delete" {
                    Command::Delete { email }
                } else {
                    Command::Otp { email }
                }
            }
            other => return Err(format!("unknown superuser command {other:?}")),
        };
        cmd.check()?;
        Ok(cmd)
    }

    /// The email check PocketBase makes before it looks at any data; the
    /// server repeats it for what arrives on the socket.
    pub fn check(&self) -> Result<(), String> {
        let ok = crate::schema::record::is_valid_email(self.email());
        match self {
            _ if ok => Ok(()),
            Command::Delete { .. } | Command::Otp { .. } => Err("invalid or missing email address".into()),
            _ => Err("missing or invalid email address".into()),
        }
    }

    /// The superuser's address the command is about.
    pub fn email(&self) -> &str {
        match self {
            Command::Create { email, .. }
            | Command::Upsert { email, .. }
            | Command::Update { email, .. }
            | Command::Delete { email }
            | Command::Otp { email } => email,
        }
    }

    /// The command's name (for the log; never the password).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Upsert { .. } => "upsert",
            Command::Update { .. } => "update",
            Command::Delete { .. } => "delete",
            Command::Otp { .. } => "otp",
        }
    }
}

impl Outcome {
    /// The line(s) the CLI prints on success, worded as PocketBase's.
    pub fn message(&self) -> String {
        match self {
            Outcome::Created { email } => format!("Successfully created new superuser {email:?}!"),
            Outcome::Saved { email } => format!("Successfully saved superuser {email:?}!"),
            Outcome::Updated { email } => format!("Successfully changed superuser {email:?} password!"),
            Outcome::Deleted { email } => format!("Successfully deleted superuser {email:?}!"),
            Outcome::Missing { email } => format!("superuser {email:?} is missing or already deleted"),
            Outcome::Otp {
                email,
                id,
                password,
                valid,
            } => format!(
                "Successfully created OTP for superuser {email:?}:\n├─ Id:    {id}\n├─ Pass:  {password}\n└─ Valid: {valid}s\n"
            ),
        }
    }
}

/// Runs `cmd` against an open data dir (the CLI's own, or the server's
/// for a command that came over the socket). The error is the line the
/// CLI prints.
pub async fn execute(state: &AppState, cmd: Command) -> Result<Outcome, String> {
    cmd.check()?;
    let email = cmd.email().to_owned();
    let found = records::find_superuser(state, &email).map_err(|e| describe(&e))?;
    match cmd {
        Command::Create { password, .. } => records::create_superuser(state, &email, &password)
            .await
            .map(|_| Outcome::Created { email })
            .map_err(|e| format!("failed to create new superuser account: {}", describe(&e))),
        Command::Upsert { password, .. } => records::upsert_superuser(state, &email, &password)
            .await
            .map(|_| Outcome::Saved { email })
            .map_err(|e| format!("failed to upsert superuser account: {}", describe(&e))),
        Command::Update { password, .. } => {
            let id = found.ok_or_else(|| missing(&email))?;
            records::set_superuser_password(state, &id, &password)
                .await
                .map(|_| Outcome::Updated { email: email.clone() })
                .map_err(|e| format!("failed to change superuser {email:?} password: {}", describe(&e)))
        }
        Command::Delete { .. } => match found {
            None => Ok(Outcome::Missing { email }),
            Some(id) => match records::delete_superuser(state, &id).await {
                Ok(()) => Ok(Outcome::Deleted { email }),
                // Deleted meanwhile by someone else: as if it was missing.
                Err(e) if e.status == 404 => Ok(Outcome::Missing { email }),
                Err(e) => Err(format!("failed to delete superuser {email:?}: {}", describe(&e))),
            },
        },
        Command::Otp { .. } => otp(state, email, found).await,
    }
}

async fn otp(state: &AppState, email: String, found: Option<String>) -> Result<Outcome, String> {
    let id = found.ok_or_else(|| missing(&email))?;
    let coll = state
        .registry
        .get(SUPERUSERS)
        .ok_or_else(|| "missing _superusers collection".to_owned())?;
    if !auth::otp_enabled(&coll) {
        return Err(format!("OTP auth is not enabled for the {SUPERUSERS} collection"));
    }
    let issued = auth::issue_otp(state, &coll, &id)
        .await
        .map_err(|e| format!("failed to create OTP: {}", describe(&e)))?;
    Ok(Outcome::Otp {
        email,
        id: issued.id,
        password: issued.code,
        valid: issued.duration,
    })
}

fn missing(email: &str) -> String {
    format!("superuser with email {email:?} doesn't exist")
}

/// An API error as one line: the field errors as `field: message; …`
/// (PocketBase's wording of validation errors), else the message.
pub fn describe(e: &ApiError) -> String {
    if e.data.is_empty() {
        return e.message.clone();
    }
    let text = |v: &Value| -> String {
        v.get("message")
            .and_then(Value::as_str)
            .unwrap_or("invalid value")
            .trim_end_matches('.')
            .to_owned()
    };
    let mut keys: Vec<(&String, &Value)> = e.data.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = keys.into_iter().map(|(k, v)| format!("{k}: {}", text(v))).collect();
    format!("{}.", parts.join("; "))
}

/// Parses one request line (without its newline) into a command.
pub fn parse_request(line: &[u8]) -> Result<Command, String> {
    let value: Map<String, Value> = serde_json::from_slice(line).map_err(|e| format!("invalid request: {e}"))?;
    serde_json::from_value(Value::Object(value)).map_err(|e| format!("invalid request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked_as_pocketbase_checks_them() {
        let missing = Err("missing email and password arguments".to_owned());
        assert_eq!(Command::from_args("create", &args(&["a@b.co"])), missing);
        assert_eq!(Command::from_args("update", &args(&["a@b.co", "x", "y"])), missing);
        assert_eq!(
            Command::from_args("upsert", &args(&["nope", "12345678"])),
            Err("missing or invalid email address".to_owned())
        );
        assert_eq!(
            Command::from_args("delete", &args(&[])),
            Err("invalid or missing email address".to_owned())
        );
        assert_eq!(
            Command::from_args("otp", &args(&["a@b.co", "ignored"])),
            Ok(Command::Otp { email: "a@b.co".into() })
        );
    }

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(
            parse_request(br#"{"op":"delete","email":"a@b.co"}"#),
            Ok(Command::Delete { email: "a@b.co".into() })
        );
        for bad in [
            &b"garbage"[..],
            br#"{"op":"drop","email":"a@b.co"}"#,
            br#"{"op":"delete","email":"a@b.co","extra":1}"#,
            br#"{"op":"create","email":"a@b.co"}"#,
            br#"["op"]"#,
            b"\xff\xfe",
        ] {
            let e = parse_request(bad).expect_err("refused");
            assert!(e.starts_with("invalid request: "), "{e}");
        }
    }

    #[test]
    fn validation_errors_read_like_pocketbase() {
        let mut e = ApiError::bad_request("Failed to validate the submitted data.");
        e.data.insert(
            "password".into(),
            serde_json::json!({"code": "validation_min_length", "message": "Must be at least 8 characters."}),
        );
        e.data.insert(
            "email".into(),
            serde_json::json!({"code": "validation_not_unique", "message": "Value must be unique."}),
        );
        assert_eq!(
            describe(&e),
            "email: Value must be unique; password: Must be at least 8 characters."
        );
        assert_eq!(describe(&ApiError::bad_request("No.")), "No.");
    }

    #[test]
    fn answers_round_trip() {
        let a = Answer::Ok(Outcome::Otp {
            email: "a@b.co".into(),
            id: "x".into(),
            password: "123".into(),
            valid: 180,
        });
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Answer>(&line).unwrap(), a);
        assert!(!line.contains('\n'));
    }
}
