//! The CLI's end of the control socket: hands a command to the server that
//! holds the data dir and returns its answer.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::socket::{self, DataDir};
use super::{Answer, Command, MAX_LINE, SOCKET_NAME};

/// How long the whole exchange may take: a password hash on a busy
/// server takes well under a second; a server that takes this long is
/// stuck, and the CLI says so instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `cmd` to the server running on `dir`. The error says why the
/// server could not be asked (not what the command did: that is in the
/// answer).
pub async fn send(dir: &Path, cmd: &Command) -> Result<Answer, String> {
    let socket_path = dir.join(SOCKET_NAME);
    let fail = |why: String| format!("cannot reach the server through {}: {why}", socket_path.display());
    match tokio::time::timeout(TIMEOUT, exchange(dir, cmd)).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(format!("no answer within {} s", TIMEOUT.as_secs()))),
    }
}

async fn exchange(path: &Path, cmd: &Command) -> Result<Answer, String> {
    let dir = DataDir::open(path).map_err(|e| e.to_string())?;
    match dir.entry(SOCKET_NAME).map_err(|e| e.to_string())? {
        Some((kind, _)) if socket::is_socket(kind) => {}
        Some(_) => return Err("it is not a socket".into()),
        None => return Err("there is no such socket (is the server an older version?)".into()),
    }
    let mut stream = UnixStream::connect(dir.path_of(SOCKET_NAME))
        .await
        .map_err(|e| e.to_string())?;
    // Whoever answers must be this user, root, or the data dir's owner:
    // nobody else gets the password this command carries.
    let server = socket::peer_uid(&stream).map_err(|e| e.to_string())?;
    let (owner, _) = dir.owner_and_mode().map_err(|e| e.to_string())?;
    if server != socket::euid() && server != 0 && server != owner {
        return Err(format!(
            "the socket is served by uid {server}, not by the data dir's owner"
        ));
    }
    let mut line = serde_json::to_vec(cmd).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut reader = BufReader::new((&mut stream).take(MAX_LINE as u64));
    let mut answer = Vec::new();
    reader.read_until(b'\n', &mut answer).await.map_err(|e| e.to_string())?;
    if answer.is_empty() {
        return Err("the server closed the connection without an answer".into());
    }
    serde_json::from_slice(&answer).map_err(|e| format!("unreadable answer: {e}"))
}
