//! What a hostile or careless client cannot do to a base: hold its connections open, stall a
//! module's instances, or make a module wait without bound.

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{guests::*, *};

/// Reads until the base closes the connection; how long that took, or `None` if it stayed
/// open past `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_heads_are_closed_while_other_clients_are_served() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        "[server]\nheader_read_timeout = \"1s\"",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
        stream
            .write_all(b"GET /payroll/hello HTTP/1.1\r\nHost: base\r\nX-Half: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // The half-sent heads take nothing from a client that sends a whole request.
    let http = Http::new();
    let started = Instant::now();
    let r = http.get(&app(&base, "/payroll/hello")).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(took < Duration::from_millis(100), "answered in {took:?}");

    for stream in &mut slow {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a half-sent request head was still open 5 s after the 1 s header timeout"
        );
    }
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        "[server]\nheader_read_timeout = \"500ms\"",
    )
    .await;
    let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
    stream
        .write_all(b"GET /payroll/hello HTTP/1.1\r\nHost: base\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(2)),
        "an idle connection stayed open: {closed:?}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_do_not_hold_a_wasm_modules_instances() {
    // Two instances, two clients that announce a body and never send it.
    let base = start_base(
        vec![],
        "[wasm]\ninstances_per_module = 2\nrequest_timeout = \"20s\"",
    )
    .await;
    let http = Http::new();
    install(&http, &base, "upload", "1.0.0", &hello_wasm()).await;
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
        stream
            .write_all(
                b"POST /upload/hello HTTP/1.1\r\nHost: base\r\nContent-Length: 100000\r\n\r\nabc",
            )
            .await
            .unwrap();
        uploads.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = http.get(&app(&base, "/upload/hello")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} behind the slow uploads",
        started.elapsed()
    );
    drop(uploads);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_upload_is_answered_408() {
    let base = start_base(vec![], "[server]\nbody_read_timeout = \"300ms\"").await;
    let http = Http::new();
    install(&http, &base, "paused", "1.0.0", &hello_wasm()).await;
    let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
    stream
        .write_all(b"POST /paused/hello HTTP/1.1\r\nHost: base\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    let _ = read.await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.body_read_timeout"), "{answer}");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_busy_instance_is_bounded_and_says_when_to_retry() {
    let base = start_base(
        vec![],
        "[wasm]\ninstances_per_module = 1\nrequest_timeout = \"3s\"\ninstance_wait_timeout = \"200ms\"",
    )
    .await;
    let http = Http::new();
    install(&http, &base, "busy", "1.0.0", &hello_wasm()).await;
    let spin = {
        let (http, url) = (http.clone(), app(&base, "/busy/spin"));
        tokio::spawn(async move { http.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = http.get(&app(&base, "/busy/hello")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.headers[http::header::RETRY_AFTER], "1");
    assert!(
        r.text().contains("wasm.instance_wait_timeout"),
        "{}",
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(spin.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        http.get(&app(&base, "/busy/hello")).await.status,
        StatusCode::OK
    );
    base.shutdown().await.unwrap();
}
