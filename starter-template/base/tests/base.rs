//! The base starts on an ephemeral port, answers its probes over HTTP, and stops cleanly.

use std::io::{Read, Write};

use koupleless::{Base, testing::test_figment};

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_serves_its_probes() {
    let base = Base::builder()
        .figment(test_figment())
        .start()
        .await
        .expect("the base starts");
    let addr = base.app_addr();
    let live = tokio::task::spawn_blocking(move || get(addr, "/livez")).await.unwrap();
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let mut ready = String::new();
    for _ in 0..100 {
        ready = tokio::task::spawn_blocking(move || get(addr, "/readyz")).await.unwrap();
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    base.shutdown().await.expect("it stops");
}
