//! The server's resource caps under attack: slow bodies, too many
//! connections or realtime streams from one address, a huge multipart
//! boundary, a mailbox flooded from several addresses. Each test runs the
//! attack while another client checks `/api/health`, and asserts what the
//! caps guarantee (refusals, 408s, closed connections, mail counts), never
//! a latency threshold.
//!
//! Client addresses: all of 127.0.0.0/8 is this machine, so a socket bound
//! to 127.0.0.3 before connecting reaches the server (on 127.0.0.1) as
//! another client address. Each test uses its own attacker address.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::helpers::{spawn_app, spawn_app_with_defaults, TestApp};

/// The health checker's address (never an attacker's).
const BYSTANDER: &str = "127.0.0.2";

fn port(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

async fn set_limits(app: &TestApp, limits: Value) {
    let r = app.patch("/api/settings", json!({ "limits": limits })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// A connection to the server from loopback address `from`.
async fn connect_from(port: u16, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind the client address");
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect")
}

/// One HTTP response from `s`: status and body, or `None` when the
/// connection ends (closed or reset) before a whole response.
async fn read_response<R: AsyncReadExt + Unpin>(s: &mut R) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            while buf.len() < end + 4 + len {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return Some((
                status,
                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned(),
            ));
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server ends the connection (bounded wait; what the client
/// may still receive is discarded).
async fn closed_by_server<R: AsyncReadExt + Unpin>(s: &mut R) -> bool {
    let mut sink = [0u8; 8192];
    let wait = async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.is_ok()
}

/// `GET path` on an open connection (kept alive), with extra header lines.
async fn get_on(s: &mut TcpStream, path: &str, extra: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: basalt\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    read_response(s).await
}

/// `/api/health` on a new connection from `from`: the status, if any.
async fn health_from(port: u16, from: &str) -> Option<u16> {
    let mut s = connect_from(port, from).await;
    get_on(&mut s, "/api/health", "Connection: close\r\n")
        .await
        .map(|(status, _)| status)
}

/// Checks `/api/health` from [`BYSTANDER`] until `done`: every answer must
/// be a 200. Returns how many were made and the slowest.
fn watch_health(port: u16, done: Rc<Cell<bool>>) -> actix_web::rt::task::JoinHandle<(usize, Duration)> {
    actix_web::rt::spawn(async move {
        let (mut n, mut worst) = (0, Duration::ZERO);
        while !done.get() {
            let t = Instant::now();
            let status = tokio::time::timeout(Duration::from_secs(30), health_from(port, BYSTANDER))
                .await
                .expect("health answers");
            assert_eq!(status, Some(200), "health during the attack");
            worst = worst.max(t.elapsed());
            n += 1;
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        (n, worst)
    })
}

const WS_UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Opens a WebSocket from `from`: the connection (if upgraded) and status.
async fn ws_from(port: u16, from: &str) -> (TcpStream, Option<u16>) {
    let mut s = connect_from(port, from).await;
    let status = get_on(&mut s, "/api/realtime/ws", WS_UPGRADE).await.map(|r| r.0);
    (s, status)
}

#[actix_web::test]
async fn cap_slow_bodies_get_408_and_are_closed_while_health_answers() {
    let app = spawn_app().await;
    let port = port(&app);
    // A short timeout, and room for every slow connection (the per-address
    // cap has its own test).
    set_limits(&app, json!({"bodyTimeout": 1, "connectionsPerAddress": 1000})).await;
    const SLOW: usize = 300;
    let done = Rc::new(Cell::new(false));
    let health = watch_health(port, done.clone());
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let s = connect_from(port, "127.0.0.4").await;
        // Every tenth is chunked and keeps trickling a byte a time: actix
        // would drain such a body for as long as it comes, unless the
        // server closes after its 408.
        let chunked = i % 10 == 0;
        slow.push(actix_web::rt::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let framing = if chunked {
                "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"ide\r\n"
            } else {
                "Content-Length: 1000\r\n\r\n{\"ide"
            };
            let head = format!(
                "POST /api/collections/users/auth-with-password HTTP/1.1\r\nHost: basalt\r\nContent-Type: application/json\r\n{framing}"
            );
            w.write_all(head.as_bytes()).await.expect("send headers");
            // Holds the write half open (dropping it would end the body).
            let trickle = actix_web::rt::spawn(async move {
                if !chunked {
                    std::future::pending::<()>().await;
                }
                loop {
                    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
                    if w.write_all(b"1\r\nx\r\n").await.is_err() {
                        break;
                    }
                }
                w
            });
            let answer = tokio::time::timeout(Duration::from_secs(30), read_response(&mut r))
                .await
                .expect("an answer or a close, in bounded time");
            let closed = closed_by_server(&mut r).await;
            trickle.abort();
            (answer, closed)
        }));
    }
    let mut timed_out = 0;
    for task in slow {
        let (answer, closed) = task.await.expect("slow client");
        // Closed without an answer is also bounded; an answer is a 408.
        if let Some((status, body)) = answer {
            assert_eq!(status, 408, "{body}");
            let body: Value = serde_json::from_str(&body).expect("JSON error");
            assert_eq!(body["status"], 408);
            assert!(
                body["message"].as_str().is_some_and(|m| m.contains("1-second limit")),
                "{body}"
            );
            timed_out += 1;
        }
        assert!(closed, "the server closes a slow body's connection");
    }
    done.set(true);
    let (checks, worst) = health.await.expect("health watcher");
    eprintln!("slow bodies: {timed_out}/{SLOW} answered 408; health {checks} checks, slowest {worst:?}");
    assert!(checks > 0);
    assert!(timed_out > SLOW / 2, "most slow bodies get a 408 ({timed_out}/{SLOW})");
    // A normal body still works, and no connection is left counted.
    let r = app
        .guest_post(
            "/api/collections/users/auth-with-password",
            json!({"identity": "nobody@example.com", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}

#[actix_web::test]
async fn cap_connections_per_address_refused_at_accept() {
    let app = spawn_app().await;
    let port = port(&app);
    set_limits(&app, json!({"connectionsPerAddress": 16})).await;
    let done = Rc::new(Cell::new(false));
    let health = watch_health(port, done.clone());
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = connect_from(port, "127.0.0.3").await;
        assert_eq!(get_on(&mut s, "/api/health", "").await.map(|r| r.0), Some(200));
        held.push(s);
    }
    // The 17th is closed before its request is read; others still connect.
    for _ in 0..5 {
        let mut s = connect_from(port, "127.0.0.3").await;
        assert_eq!(get_on(&mut s, "/api/health", "").await, None, "over the cap");
    }
    assert_eq!(health_from(port, BYSTANDER).await, Some(200));
    // The held ones still work; closing one frees its slot.
    assert_eq!(get_on(&mut held[0], "/api/health", "").await.map(|r| r.0), Some(200));
    drop(held.pop());
    let mut freed = false;
    for _ in 0..250 {
        if health_from(port, "127.0.0.3").await == Some(200) {
            freed = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "a closed connection gives its slot back");
    done.set(true);
    let (checks, _) = health.await.expect("health watcher");
    assert!(checks > 0);
}

#[actix_web::test]
async fn cap_connections_per_address_behind_a_trusted_proxy() {
    let app = spawn_app().await;
    let port = port(&app);
    let r = app
        .patch(
            "/api/settings",
            json!({"trustedProxy": {"headers": ["X-Forwarded-For"]}, "limits": {"connectionsPerAddress": 16}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Every connection comes from the proxy (127.0.0.1); the header names
    // the client it is charged to.
    let from = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = connect_from(port, "127.0.0.1").await;
        let r = get_on(&mut s, "/api/health", &from("203.0.113.9")).await;
        assert_eq!(r.map(|r| r.0), Some(200));
        held.push(s);
    }
    let mut s = connect_from(port, "127.0.0.1").await;
    let (status, body) = get_on(&mut s, "/api/health", &from("203.0.113.9"))
        .await
        .expect("an answer");
    assert_eq!(status, 429, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["status"], 429);
    assert!(closed_by_server(&mut s).await, "closed after the 429");
    // Another client through the same proxy is not affected.
    let mut other = connect_from(port, "127.0.0.1").await;
    let r = get_on(&mut other, "/api/health", &from("203.0.113.10")).await;
    assert_eq!(r.map(|r| r.0), Some(200));
    // A held connection whose next request is for another client moves its
    // slot there, which frees one for 203.0.113.9.
    let r = get_on(&mut held[0], "/api/health", &from("203.0.113.11")).await;
    assert_eq!(r.map(|r| r.0), Some(200));
    let mut again = connect_from(port, "127.0.0.1").await;
    let r = get_on(&mut again, "/api/health", &from("203.0.113.9")).await;
    assert_eq!(r.map(|r| r.0), Some(200));
}

#[actix_web::test]
async fn cap_realtime_streams_per_address() {
    let app = spawn_app().await;
    let port = port(&app);
    set_limits(&app, json!({"realtimePerAddress": 3})).await;
    let done = Rc::new(Cell::new(false));
    let health = watch_health(port, done.clone());
    let mut open = Vec::new();
    for _ in 0..3 {
        let (s, status) = ws_from(port, "127.0.0.5").await;
        assert_eq!(status, Some(101));
        open.push(s);
    }
    for _ in 0..5 {
        let (_, status) = ws_from(port, "127.0.0.5").await;
        assert_eq!(status, Some(429), "a WebSocket over the cap");
    }
    // SSE streams count against the same cap.
    let mut sse = connect_from(port, "127.0.0.5").await;
    let r = get_on(&mut sse, "/api/realtime", "Connection: close\r\n").await;
    assert_eq!(r.map(|r| r.0), Some(429), "an SSE stream over the cap");
    // Another address is not affected.
    let (_other, status) = ws_from(port, BYSTANDER).await;
    assert_eq!(status, Some(101));
    // Closing a stream frees its slot.
    drop(open.pop());
    let mut freed = None;
    for _ in 0..250 {
        let (s, status) = ws_from(port, "127.0.0.5").await;
        if status == Some(101) {
            freed = Some(s);
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed.is_some(), "a closed WebSocket gives its slot back");
    done.set(true);
    let (checks, _) = health.await.expect("health watcher");
    assert!(checks > 0);
}

/// A masked client text frame (RFC 6455 §5.3; the mask is all zeros).
fn ws_text(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

#[actix_web::test]
async fn cap_slow_headers_after_a_first_request_are_closed() {
    // actix times out only a connection's first request head; a short
    // keep-alive and header timeout make the watchdog's limit 2 s here.
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = crate::helpers::config_for(tmp.path()).await;
    config.workers = 2;
    config.keep_alive = 1;
    config.header_timeout = 1;
    let app = crate::helpers::build_app(config).await;
    let port = app.port();
    let handle = app.handle();
    let realtime = app.state().realtime.clone();
    let server = actix_web::rt::spawn(app.run_until_stopped());

    let done = Rc::new(Cell::new(false));
    let health = watch_health(port, done.clone());
    // A realtime stream: its connection is busy for as long as it lives.
    let (mut ws, status) = ws_from(port, "127.0.0.7").await;
    assert_eq!(status, Some(101));
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = connect_from(port, "127.0.0.7").await;
        assert_eq!(get_on(&mut s, "/api/health", "").await.map(|r| r.0), Some(200));
        slow.push(actix_web::rt::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let trickle = actix_web::rt::spawn(async move {
                for b in b"GET /api/health HTTP/1.1\r\nHost: basalt\r\nX-Slow: "
                    .iter()
                    .chain([b'a'; 4096].iter())
                {
                    if w.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
                }
                w
            });
            let closed = closed_by_server(&mut r).await;
            trickle.abort();
            closed
        }));
    }
    for s in slow {
        assert!(
            s.await.expect("slow client"),
            "a connection dribbling its second request's headers is closed"
        );
    }
    // The WebSocket outlived the limit and still answers.
    ws.write_all(&ws_text(r#"{"type":"ping"}"#)).await.expect("send ping");
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = ws.read(&mut buf).await.expect("read");
            assert!(n > 0, "the WebSocket was closed");
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("\"pong\"") {
                return;
            }
        }
    })
    .await;
    assert!(pong.is_ok(), "pong on the long-lived WebSocket");
    done.set(true);
    let (checks, _) = health.await.expect("health watcher");
    assert!(checks > 0);
    realtime.close();
    drop(ws);
    handle.stop(true).await;
    let _ = server.await;
}

fn multipart_body(boundary: &str, title: &str) -> Vec<u8> {
    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n--{boundary}--\r\n")
        .into_bytes()
}

#[actix_web::test]
async fn cap_multipart_boundary_at_most_70_characters() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "notes",
        "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}}
    }))
    .await;
    let path = "/api/collections/notes/records";
    let b70 = "b".repeat(70);
    let r = app
        .raw(
            Method::POST,
            path,
            &format!("multipart/form-data; boundary={b70}"),
            multipart_body(&b70, "seventy"),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["title"], "seventy");
    let b71 = "b".repeat(71);
    let r = app
        .raw(
            Method::POST,
            path,
            &format!("multipart/form-data; boundary={b71}"),
            multipart_body(&b71, "seventy-one"),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| m.contains("boundary")),
        "{:?}",
        r.body
    );

    // The CPU burn: a 100 KB boundary and a 1 MiB body, eight at once,
    // unauthenticated. The body is the worst case for a naive search (every
    // position matches all but the boundary's last byte: ~10^11 byte
    // comparisons, seconds of CPU each); each is refused from its headers.
    let port = port(&app);
    let done = Rc::new(Cell::new(false));
    let health = watch_health(port, done.clone());
    let boundary = format!("{}a", "-".repeat(100 * 1024 - 1));
    let mut attacks = Vec::new();
    for _ in 0..8 {
        let s = connect_from(port, "127.0.0.6").await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: basalt\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024
        );
        attacks.push(actix_web::rt::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let send = actix_web::rt::spawn(async move {
                let mut body = head.into_bytes();
                body.extend(std::iter::repeat_n(b'-', 1024 * 1024));
                // The server may answer and close before all of it is sent.
                let _ = w.write_all(&body).await;
                w
            });
            let answer = tokio::time::timeout(Duration::from_secs(30), read_response(&mut r))
                .await
                .expect("answered in bounded time");
            send.abort();
            answer
        }));
    }
    for a in attacks {
        let (status, body) = a.await.expect("attack").expect("an answer, not a reset");
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("boundary") && body.contains("70"),
            "the RFC 2046 refusal: {body}"
        );
    }
    done.set(true);
    let (checks, _) = health.await.expect("health watcher");
    assert!(checks > 0);
    assert_eq!(
        app.get(path).await.body["totalItems"],
        1,
        "only the 70-character one was created"
    );
}

/// Auth mails to `to` in the dev outbox.
fn mails_to(app: &TestApp, to: &str) -> usize {
    std::fs::read_dir(app.dir.join("outbox"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter(|m| m.contains(&format!("To: {to}\r\n")))
                .count()
        })
        .unwrap_or(0)
}

/// A request as client `ip` (through the trusted proxy).
async fn post_from(app: &TestApp, ip: &str, path: &str, body: Value) -> crate::helpers::Resp {
    let req = app
        .client
        .request(Method::POST, format!("{}{path}", app.base))
        .insert_header(("X-Forwarded-For", ip.to_owned()));
    crate::helpers::read(req.send_json(&body).await.expect("request sent")).await
}

#[actix_web::test]
async fn cap_mails_per_recipient_whoever_asks() {
    // Default settings: rate limits on (5 auth requests per 10 s per
    // address), 3 mails of a kind per address per 10 minutes.
    let app = spawn_app_with_defaults().await;
    let r = app
        .patch(
            "/api/settings",
            json!({"trustedProxy": {"headers": ["X-Forwarded-For"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for email in ["vic@example.com", "sentinel@example.com"] {
        let r = app
            .guest_post(
                "/api/collections/users/records",
                json!({"email": email, "password": "password-1", "passwordConfirm": "password-1"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let reset = "/api/collections/users/request-password-reset";
    // 15 reset requests for one mailbox from 3 addresses, as the report
    // did: every one answered like a sent one.
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        for _ in 0..5 {
            let r = post_from(&app, ip, reset, json!({"email": "vic@example.com"})).await;
            assert_eq!(r.status, 204, "{ip}: {:?}", r.body);
        }
    }
    // OTP codes too (another kind: its own count).
    let r = app
        .patch(
            "/api/collections/users",
            json!({"authOptions": {"otp": {"enabled": true, "duration": 300, "length": 6}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for ip in ["198.51.100.4", "198.51.100.5"] {
        for _ in 0..4 {
            let r = post_from(
                &app,
                ip,
                "/api/collections/users/request-otp",
                json!({"email": "vic@example.com"}),
            )
            .await;
            assert_eq!(r.status, 200, "{ip}: {:?}", r.body);
            assert!(r.body["otpId"].is_string());
        }
    }
    // The mails are sent in the background: wait for the three allowed of
    // each kind, then for a sentinel's mails requested after all of them.
    for _ in 0..3 {
        post_from(&app, "198.51.100.9", reset, json!({"email": "sentinel@example.com"})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while mails_to(&app, "vic@example.com") < 6 || mails_to(&app, "sentinel@example.com") < 3 {
        // (vic: 3 resets + 3 codes; more would come from a broken throttle)
        assert!(Instant::now() < deadline, "mails were not written");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let outbox: Vec<String> = std::fs::read_dir(app.dir.join("outbox"))
        .expect("outbox")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|m| m.contains("To: vic@example.com\r\n"))
        .collect();
    let count = |subject: &str| {
        outbox
            .iter()
            .filter(|m| m.contains(&format!("Subject: {subject}\r\n")))
            .count()
    };
    assert_eq!(count("Reset your Basalt password"), 3, "not 15");
    assert_eq!(count("Your Basalt sign-in code"), 3, "not 8");
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}
