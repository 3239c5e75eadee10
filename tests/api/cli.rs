//! The command line as PocketBase's: `basalt superuser …` on a stopped data
//! dir and while the real server runs on it (through the control socket),
//! the socket's protections, and `serve`'s PocketBase spellings.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::helpers::{client, read, SU_EMAIL, SU_PASSWORD};
use crate::persistence::{basalt, login, start_binary, Server};

/// Runs `basalt ARGS… --dir DIR`: exit code, stdout, stderr.
fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run basalt");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a superuser command that must succeed and print `expected`.
fn ok(dir: &Path, args: &[&str], expected: &str) {
    let (code, out, err) = cli(dir, args);
    assert_eq!((code, out.trim_end()), (0, expected), "{args:?}: stderr {err}");
}

/// Runs a superuser command that must fail (exit 1) saying `expected`.
fn fails(dir: &Path, args: &[&str], expected: &str) {
    let (code, out, err) = cli(dir, args);
    assert_eq!((code, err.trim_end()), (1, expected), "{args:?}: stdout {out}");
}

async fn login_status(base: &str, email: &str, password: &str) -> u16 {
    let res = client()
        .post(format!("{base}/api/collections/_superusers/auth-with-password"))
        .send_json(&json!({"identity": email, "password": password}))
        .await
        .expect("login request");
    read(res).await.status
}

fn socket_path(dir: &Path) -> std::path::PathBuf {
    dir.join(".basalt.sock")
}

/// One raw exchange on the control socket.
fn raw_exchange(dir: &Path, request: &[u8]) -> Value {
    let mut s = UnixStream::connect(socket_path(dir)).expect("connect");
    // The server may stop reading a too-long line and answer early.
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read answer");
    serde_json::from_str(answer.trim_end()).unwrap_or_else(|_| panic!("answer is one JSON line: {answer:?}"))
}

fn new_superuser_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let saved = format!("Successfully saved superuser {SU_EMAIL:?}!");
    ok(tmp.path(), &["superuser", "upsert", SU_EMAIL, SU_PASSWORD], &saved);
    tmp
}

#[actix_web::test]
async fn superuser_commands_work_while_the_server_runs() {
    let tmp = new_superuser_dir();
    let dir = tmp.path();
    let (_server, base) = start_binary(dir);
    // Auth rate limits are on by default; this test logs in many times.
    let res = client()
        .patch(format!("{base}/api/settings"))
        .insert_header(("Authorization", login(&base).await))
        .send_json(&json!({"rateLimits": {"enabled": false}}))
        .await
        .unwrap();
    assert_eq!(read(res).await.status, 200);
    fn su<'a>(a: &[&'a str]) -> Vec<&'a str> {
        [&["superuser"][..], a].concat()
    }

    ok(
        dir,
        &su(&["create", "b@example.com", "first password"]),
        r#"Successfully created new superuser "b@example.com"!"#,
    );
    assert_eq!(login_status(&base, "b@example.com", "first password").await, 200);
    fails(
        dir,
        &su(&["create", "b@example.com", "another password"]),
        "failed to create new superuser account: email: Value must be unique.",
    );

    ok(
        dir,
        &su(&["update", "b@example.com", "second password"]),
        r#"Successfully changed superuser "b@example.com" password!"#,
    );
    assert_eq!(login_status(&base, "b@example.com", "first password").await, 400);
    assert_eq!(login_status(&base, "b@example.com", "second password").await, 200);
    fails(
        dir,
        &su(&["update", "nobody@example.com", "a password"]),
        r#"superuser with email "nobody@example.com" doesn't exist"#,
    );

    fails(
        dir,
        &su(&["upsert", "b@example.com", "short"]),
        "failed to upsert superuser account: password: Must be at least 8 characters.",
    );
    ok(
        dir,
        &su(&["upsert", "b@example.com", "third password"]),
        r#"Successfully saved superuser "b@example.com"!"#,
    );
    assert_eq!(login_status(&base, "b@example.com", "third password").await, 200);

    ok(
        dir,
        &su(&["delete", "b@example.com"]),
        r#"Successfully deleted superuser "b@example.com"!"#,
    );
    assert_eq!(login_status(&base, "b@example.com", "third password").await, 400);
    ok(
        dir,
        &su(&["delete", "b@example.com"]),
        r#"superuser "b@example.com" is missing or already deleted"#,
    );
    fails(
        dir,
        &su(&["delete", SU_EMAIL]),
        &format!("failed to delete superuser {SU_EMAIL:?}: The last superuser cannot be deleted."),
    );
    assert_eq!(login_status(&base, SU_EMAIL, SU_PASSWORD).await, 200);
}

#[actix_web::test]
async fn superuser_otp_works_with_auth_with_otp() {
    let tmp = new_superuser_dir();
    let dir = tmp.path();
    let (_server, base) = start_binary(dir);
    fails(
        dir,
        &["superuser", "otp", SU_EMAIL],
        "OTP auth is not enabled for the _superusers collection",
    );
    let token = login(&base).await;
    let res = client()
        .patch(format!("{base}/api/collections/_superusers"))
        .insert_header(("Authorization", token))
        .send_json(&json!({"authOptions": {"otp": {"enabled": true}}}))
        .await
        .unwrap();
    assert_eq!(read(res).await.status, 200);
    fails(
        dir,
        &["superuser", "otp", "nobody@example.com"],
        r#"superuser with email "nobody@example.com" doesn't exist"#,
    );

    let (code, out, err) = cli(dir, &["superuser", "otp", SU_EMAIL]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("Successfully created OTP for superuser {SU_EMAIL:?}:\n")),
        "{out}"
    );
    let field = |name: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        line.rsplit(' ').next().unwrap().to_owned()
    };
    let (otp_id, pass) = (field("Id:"), field("Pass:"));
    assert_eq!(pass.len(), 8, "{out}");
    assert!(out.contains("└─ Valid: 180s"), "{out}");

    let with_otp = |password: &str| {
        client()
            .post(format!("{base}/api/collections/_superusers/auth-with-otp"))
            .send_json(&json!({"otpId": otp_id, "password": password}))
    };
    let wrong = if pass == "00000000" { "11111111" } else { "00000000" };
    assert_eq!(read(with_otp(wrong).await.unwrap()).await.status, 400);
    let res = read(with_otp(&pass).await.unwrap()).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.body["record"]["email"], SU_EMAIL);
    // A code works once.
    assert_eq!(read(with_otp(&pass).await.unwrap()).await.status, 400);
}

/// The same commands on a stopped data dir open it directly, with the
/// same messages; the server started afterwards sees what they did.
#[actix_web::test]
async fn superuser_commands_on_a_stopped_dir_and_argument_errors() {
    let tmp = new_superuser_dir();
    let dir = tmp.path();
    fails(
        dir,
        &["superuser", "create", "b@example.com"],
        "missing email and password arguments",
    );
    fails(
        dir,
        &["superuser", "create", "not-an-email", "a password"],
        "missing or invalid email address",
    );
    fails(dir, &["superuser", "delete"], "invalid or missing email address");
    fails(dir, &["superuser", "otp", "nope"], "invalid or missing email address");
    ok(
        dir,
        &["superuser", "create", "b@example.com", "first password"],
        r#"Successfully created new superuser "b@example.com"!"#,
    );
    fails(
        dir,
        &["superuser", "create", "B@example.com", "first password"],
        "failed to create new superuser account: email: Value must be unique.",
    );
    ok(
        dir,
        &["superuser", "update", "b@example.com", "second password"],
        r#"Successfully changed superuser "b@example.com" password!"#,
    );
    fails(
        dir,
        &["superuser", "otp", "b@example.com"],
        "OTP auth is not enabled for the _superusers collection",
    );
    ok(
        dir,
        &["superuser", "delete", SU_EMAIL],
        &format!("Successfully deleted superuser {SU_EMAIL:?}!"),
    );
    let (_server, base) = start_binary(dir);
    assert_eq!(login_status(&base, "b@example.com", "second password").await, 200);
    assert_eq!(login_status(&base, SU_EMAIL, SU_PASSWORD).await, 400);
}

#[actix_web::test]
async fn control_socket_is_private_and_answers_bad_lines_with_errors() {
    let tmp = new_superuser_dir();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_server, base) = start_binary(dir);
    let meta = std::fs::symlink_metadata(socket_path(dir)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);

    // An idle connection does not hold up others.
    let _idle = UnixStream::connect(socket_path(dir)).unwrap();
    for (request, error) in [
        (&b"garbage\n"[..], "invalid request: "),
        (b"\n", "empty request"),
        (br#"{"op":"drop","email":"a@example.com"}"#, "invalid request: "),
        (br#"{"op":"create","email":"a@example.com"}"#, "invalid request: "),
        (
            br#"{"op":"create","email":"nope","password":"12345678"}"#,
            "missing or invalid email address",
        ),
        (b"\xff\xfe\n", "invalid request: "),
    ] {
        let answer = raw_exchange(dir, request);
        let text = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error answer: {answer}"));
        assert!(text.starts_with(error), "{text}");
    }
    let huge = vec![b'x'; 1 << 20];
    assert_eq!(
        raw_exchange(dir, &huge)["error"],
        "request line longer than 16384 bytes"
    );
    let answer = raw_exchange(dir, br#"{"op":"delete","email":"gone@example.com"}"#);
    assert_eq!(
        answer,
        json!({"ok": {"result": "missing", "email": "gone@example.com"}})
    );

    // Still serving, both ends.
    assert_eq!(login_status(&base, SU_EMAIL, SU_PASSWORD).await, 200);
    ok(
        dir,
        &["superuser", "upsert", "c@example.com", "a password"],
        r#"Successfully saved superuser "c@example.com"!"#,
    );
}

/// Runs `f` on a thread whose credentials are switched to uid 65534 (a raw
/// syscall changes only the calling thread's). `None` when this process may
/// not switch (not root).
fn as_other_uid<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        // SAFETY: a raw setresuid affects only this thread, which ends here.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        (rc == 0).then(f)
    })
    .join()
    .expect("thread")
}

#[actix_web::test]
async fn another_user_cannot_use_the_control_socket() {
    let tmp = new_superuser_dir();
    let dir = tmp.path().to_path_buf();
    let (_server, base) = start_binary(&dir);
    let path = socket_path(&dir);
    let p = path.clone();
    let Some(refused) = as_other_uid(move || UnixStream::connect(&p).map(|_| ()).map_err(|e| e.kind())) else {
        eprintln!("not root: the socket's modes are checked by the other tests; the second uid is not tried");
        return;
    };
    assert_eq!(refused, Err(std::io::ErrorKind::PermissionDenied));

    // Even with the file modes opened up by mistake, the server checks
    // who is calling and answers nothing.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = path.clone();
    let answer = as_other_uid(move || {
        let mut s = UnixStream::connect(&p).expect("connects past the modes");
        let _ = s.write_all(b"{\"op\":\"create\",\"email\":\"evil@example.com\",\"password\":\"12345678\"}\n");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    })
    .expect("still root");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(login_status(&base, "evil@example.com", "12345678").await, 400);
    ok(
        &dir,
        &["superuser", "delete", "evil@example.com"],
        r#"superuser "evil@example.com" is missing or already deleted"#,
    );
}

/// A killed server leaves its socket; the next one replaces it, and a
/// symlink planted at the socket's name is removed, never followed.
#[actix_web::test]
async fn stale_socket_and_planted_symlink_are_replaced_not_followed() {
    let tmp = new_superuser_dir();
    let dir = tmp.path();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let absent = elsewhere.path().join("absent");

    let (mut server, _) = start_binary(dir);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(std::fs::symlink_metadata(socket_path(dir))
        .unwrap()
        .file_type()
        .is_socket());
    let (mut server, base) = start_binary(dir);
    ok(
        dir,
        &["superuser", "upsert", "a@example.com", "a password"],
        r#"Successfully saved superuser "a@example.com"!"#,
    );
    assert_eq!(login_status(&base, "a@example.com", "a password").await, 200);

    for target in [&victim, &absent] {
        server.kill().unwrap();
        server.wait().unwrap();
        std::fs::remove_file(socket_path(dir)).unwrap();
        std::os::unix::fs::symlink(target, socket_path(dir)).unwrap();
        let (next, _) = start_binary(dir);
        server = next;
        let meta = std::fs::symlink_metadata(socket_path(dir)).unwrap();
        assert!(meta.file_type().is_socket(), "{target:?}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        ok(
            dir,
            &["superuser", "upsert", "a@example.com", "a password"],
            r#"Successfully saved superuser "a@example.com"!"#,
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o644);
    assert!(!absent.exists());
}

#[actix_web::test]
async fn clean_shutdown_removes_the_socket() {
    let tmp = new_superuser_dir();
    let dir = tmp.path();
    let (mut server, _) = start_binary(dir);
    assert!(socket_path(dir).exists());
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0);
    assert_eq!(server.wait().unwrap().code(), Some(0));
    assert!(std::fs::symlink_metadata(socket_path(dir)).is_err(), "socket removed");
    // Stopped: the CLI opens the dir itself again.
    ok(
        dir,
        &["superuser", "update", SU_EMAIL, "a new password"],
        &format!("Successfully changed superuser {SU_EMAIL:?} password!"),
    );
}

#[actix_web::test]
async fn serve_takes_pocketbase_spellings_and_notes_ignored_flags() {
    let tmp = new_superuser_dir();
    let dir_flag = format!("--dir={}", tmp.path().display());
    let mut server = Server(
        crate::helpers::on_suite_engine(&mut basalt(), tmp.path())
            .args([
                "serve",
                "--http=127.0.0.1:0",
                &dir_flag,
                "--automigrate=false",
                "--hooksDir=./pb_hooks",
                "--dev",
                "--origins=http://a.example",
                "--origins=http://b.example",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let res = client()
        .get(format!("{base}/api/health"))
        .insert_header(("Origin", "http://b.example"))
        .send()
        .await
        .unwrap();
    let allowed = res.headers().get("access-control-allow-origin").cloned();
    assert_eq!(read(res).await.status, 200);
    assert_eq!(allowed.unwrap(), "http://b.example");
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0);
    server.wait().unwrap();
    let mut err = String::new();
    server.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 3, "{err}");
    for flag in ["--automigrate", "--hooksDir", "--dev"] {
        assert!(notes.iter().any(|n| n.contains(flag)), "{flag}: {err}");
    }
    // `--dir` before the command, as PocketBase takes it.
    let out = crate::helpers::on_suite_engine(&mut basalt(), tmp.path())
        .arg(&dir_flag)
        .args(["superuser", "delete", "x@example.com"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        r#"superuser "x@example.com" is missing or already deleted"#
    );
}

#[test]
fn serve_with_a_domain_or_https_says_tls_is_not_built() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&["serve", "example.com"][..], &["serve", "--https=0.0.0.0:443"]] {
        let (code, _, err) = cli(tmp.path(), args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("automatic TLS") && err.contains("not built"), "{err}");
    }
    assert!(!tmp.path().join("db").exists(), "nothing was opened");
}

/// As `pocketbase superuser`: without a subcommand, the list of them, exit 0.
#[test]
fn superuser_without_a_command_lists_them() {
    let out = basalt().arg("superuser").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["basalt superuser", "create", "upsert", "update", "delete", "otp"] {
        assert!(text.contains(word), "{word}: {text}");
    }
}

#[test]
fn version_as_pocketbase_prints_it() {
    let expected = format!("basalt version {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-v"], &["version"]] {
        let out = basalt().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
    }
}

/// A command through the socket is written like an API write: realtime
/// subscribers see it.
#[actix_web::test]
async fn realtime_sees_what_the_cli_writes() {
    let app = crate::helpers::spawn_app().await;
    let (mut ws, _) = crate::realtime::Ws::open(&app, Some(&app.token)).await;
    let ok = ws
        .subscribe(json!({"type": "subscribe", "id": "su", "topic": "_superusers/*"}))
        .await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let dir = app.dir.clone();
    // Off this thread: the in-process server answers the socket on it.
    let (code, out, err) = actix_web::rt::task::spawn_blocking(move || {
        cli(&dir, &["superuser", "create", "live@example.com", "a password"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let event = ws.recv().await;
    assert_eq!(
        (
            event["sub"].as_str(),
            event["action"].as_str(),
            event["record"]["email"].as_str()
        ),
        (Some("su"), Some("create"), Some("live@example.com")),
        "{event}"
    );
}
