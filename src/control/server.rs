//! The running server's end of the control socket: one request line, one
//! answer line, per connection.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

use super::socket::{self, DataDir, FileId};
use super::{execute, parse_request, Answer, MAX_LINE, SOCKET_NAME};
use crate::state::AppState;

/// How long a connection may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answer may take to be taken by the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands served at once; more connections get a "busy" answer.
const MAX_IN_FLIGHT: usize = 4;

/// The listening control socket; stops listening and removes the socket
/// file when stopped or dropped.
pub struct Listener {
    task: Option<JoinHandle<()>>,
    dir: DataDir,
    socket: FileId,
}

impl Listener {
    /// Starts listening on `<dir>/.basalt.sock`. Returns `None` after a
    /// warning when the socket cannot be set up safely: the server then
    /// runs without it (the CLI works only while it is stopped).
    pub fn start(state: &AppState, dir: &Path) -> Option<Listener> {
        match bind(dir) {
            Ok((listener, dir, socket)) => {
                let task = actix_web::rt::spawn(accept_loop(listener, state.clone()));
                Some(Listener {
                    task: Some(task),
                    dir,
                    socket,
                })
            }
            Err(e) => {
                tracing::warn!(
                    "control socket not started ({e}); `basalt superuser …` works only while the server is stopped"
                );
                None
            }
        }
    }

    /// Stops accepting and ends commands in flight (waits until their
    /// tasks, which hold the state, are gone), then removes the socket.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // Only the socket this server bound: a file someone put there since
        // stays.
        if let Ok(Some((kind, id))) = self.dir.entry(SOCKET_NAME) {
            if socket::is_socket(kind) && id == self.socket {
                let _ = self.dir.unlink(SOCKET_NAME);
            }
        }
    }
}

/// Binds the socket: the directory made private first, a stale socket (or
/// a symlink planted at its name) removed without following it, the
/// socket restricted to its owner.
fn bind(path: &Path) -> Result<(UnixListener, DataDir, FileId), String> {
    let dir = DataDir::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if dir.make_private()? {
        tracing::warn!(
            dir = %dir.display(),
            "the data dir was open to other users; restricted it to its owner (mode 0700)"
        );
    }
    // The caller holds the data dir's lock, so no other server is using a
    // socket found here: it is left from one that was killed.
    match dir.entry(SOCKET_NAME).map_err(|e| e.to_string())? {
        None => {}
        Some((kind, _)) if socket::is_socket(kind) || socket::is_symlink(kind) => {
            dir.unlink(SOCKET_NAME)
                .map_err(|e| format!("cannot remove the stale {SOCKET_NAME}: {e}"))?;
        }
        Some(_) => {
            return Err(format!(
                "{} exists and is not a socket; remove it",
                path.join(SOCKET_NAME).display()
            ))
        }
    }
    let std_listener = std::os::unix::net::UnixListener::bind(dir.path_of(SOCKET_NAME))
        .map_err(|e| format!("cannot listen on {}: {e}", path.join(SOCKET_NAME).display()))?;
    dir.chmod(SOCKET_NAME, 0o600)
        .map_err(|e| format!("cannot restrict {SOCKET_NAME}: {e}"))?;
    let id = match dir.entry(SOCKET_NAME).map_err(|e| e.to_string())? {
        Some((kind, id)) if socket::is_socket(kind) => id,
        _ => return Err(format!("{SOCKET_NAME} changed while it was set up")),
    };
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = UnixListener::from_std(std_listener).map_err(|e| e.to_string())?;
    Ok((listener, dir, id))
}

/// The same user as the server, or root, may send commands; anyone else
/// is turned away before a byte is read.
fn allowed(stream: &UnixStream) -> Result<(), String> {
    let uid = socket::peer_uid(stream).map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    if uid == socket::euid() || uid == 0 {
        Ok(())
    } else {
        Err(format!("refused a connection from uid {uid}"))
    }
}

async fn accept_loop(listener: UnixListener, state: AppState) {
    // Dropped with this task: aborting the loop ends every command in flight.
    let mut in_flight = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while in_flight.try_join_next().is_some() {}
        if let Err(e) = allowed(&stream) {
            tracing::warn!("control socket: {e}");
            continue;
        }
        if in_flight.len() >= MAX_IN_FLIGHT {
            let _ = stream.try_write(&answer_line(&Answer::Error(
                "the server is busy with other commands; try again".into(),
            )));
            continue;
        }
        in_flight.spawn_local(serve(state.clone(), stream));
    }
}

async fn serve(state: AppState, mut stream: UnixStream) {
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_line(&mut stream)).await {
        Err(_) => Answer::Error("no request line within the time allowed".into()),
        Ok(Err(e)) => Answer::Error(e),
        Ok(Ok(line)) => match parse_request(&line) {
            Err(e) => Answer::Error(e),
            Ok(cmd) => {
                let name = cmd.name();
                let result = execute(&state, cmd).await;
                tracing::info!(command = name, ok = result.is_ok(), "control socket: superuser command");
                match result {
                    Ok(outcome) => Answer::Ok(outcome),
                    Err(e) => Answer::Error(e),
                }
            }
        },
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&answer_line(&answer))).await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
}

/// Reads one line of at most [`MAX_LINE`] bytes (the newline, or the end
/// of the stream, ends it).
async fn read_line(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut reader = BufReader::new(stream.take(MAX_LINE as u64));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() >= MAX_LINE {
        return Err(format!("request line longer than {MAX_LINE} bytes"));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty request".into());
    }
    Ok(line)
}

/// An answer as one line.
pub fn answer_line(answer: &Answer) -> Vec<u8> {
    let mut line = serde_json::to_vec(answer).unwrap_or_else(|_| br#"{"error":"unserializable answer"}"#.to_vec());
    line.push(b'\n');
    line
}
