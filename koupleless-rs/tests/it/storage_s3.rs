//! Releases from an S3 bucket: a real S3-protocol server (`s3s-fs`, with signature checks)
//! on loopback, artifacts uploaded through the S3 API, a base watching `s3://…`. When the
//! server goes away, listings fail, the base says so in health detail and metrics, and
//! keeps serving and stays ready.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::support::{guests::hello_module, *};
use object_store::{ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path as Key};
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinSet};

const ACCESS_KEY: &str = "koupleless-test";
const SECRET_KEY: &str = "koupleless-test-secret";
const BUCKET: &str = "releases";
const WITHIN: Duration = Duration::from_secs(60);

/// An S3 server on 127.0.0.1 backed by a temporary directory; stopping it closes the
/// listener and every open connection.
struct S3Server {
    addr: SocketAddr,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl S3Server {
    async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let open = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Without it every GET waits ~40 ms on Nagle's algorithm.
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                open.lock().await.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            accept,
            _root: root,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(&self) {
        self.accept.abort();
        self.connections.lock().await.abort_all();
    }

    fn client(&self) -> impl object_store::ObjectStore {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(self.endpoint())
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_allow_http(true)
            .build()
            .expect("an S3 client")
    }
}

fn base_config(s3: &S3Server) -> String {
    format!(
        r#"
[storage]
enabled = true
url = "s3://{BUCKET}/modules"
poll_interval = "100ms"
backoff_max = "200ms"
[storage.options]
aws_endpoint = "{}"
aws_region = "us-east-1"
aws_access_key_id = "{ACCESS_KEY}"
aws_secret_access_key = "{SECRET_KEY}"
allow_http = "true"
[wasm]
instances_per_module = 1
max_instances = 16
"#,
        s3.endpoint()
    )
}

async fn who(http: &Http, base: &koupleless::RunningBase) -> String {
    http.get(&app(base, "/hello/who")).await.text()
}

#[tokio::test]
async fn releases_in_a_bucket_are_installed_and_an_outage_only_pauses_them() {
    let s3 = S3Server::start().await;
    let bucket = s3.client();
    let bytes = std::fs::read(hello_module()).unwrap();
    let digest = sha256(&bytes);
    bucket
        .put(
            &Key::from("modules/hello/1.0.0/module.wasm"),
            PutPayload::from(bytes.clone()),
        )
        .await
        .expect("upload");
    bucket
        .put(
            &Key::from("modules/hello/1.0.0/module.wasm.sha256"),
            PutPayload::from(digest.into_bytes()),
        )
        .await
        .expect("upload the digest");

    let base = start_base(vec![], &base_config(&s3)).await;
    let http = Http::new();
    eventually(WITHIN, "hello@1.0.0 from the bucket", || async {
        who(&http, &base).await == "hello@1.0.0"
    })
    .await;

    // No digest: installed once two listings see the same object.
    bucket
        .put(
            &Key::from("modules/hello-1.1.0.wasm"),
            PutPayload::from(bytes.clone()),
        )
        .await
        .expect("upload");
    eventually(WITHIN, "hello@1.1.0 from the bucket", || async {
        who(&http, &base).await == "hello@1.1.0"
    })
    .await;
    let record = http.get(&admin(&base, "/rollouts/hello")).await.json();
    let installed: Vec<&Value> = record
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["pods"]
                .as_object()
                .unwrap()
                .values()
                .all(|p| p["outcome"] == "succeeded")
        })
        .collect();
    assert_eq!(installed.len(), 2, "{record}");

    // The bucket goes away: serving and readiness go on, health detail names the problem.
    s3.stop().await;
    eventually(WITHIN, "the storage condition in /readyz", || async {
        let r = http.get(&admin(&base, "/readyz")).await;
        r.status == 200 && r.json()["conditions"].to_string().contains("storage")
    })
    .await;
    let detail = http.get(&admin(&base, "/readyz")).await.json();
    assert!(
        detail["conditions"]
            .to_string()
            .contains(&s3.addr.port().to_string())
            || detail["conditions"]
                .to_string()
                .contains("s3://releases/modules"),
        "the condition names the location: {detail}"
    );
    for _ in 0..20 {
        assert_eq!(who(&http, &base).await, "hello@1.1.0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("koupleless_storage_operations_total")
                && l.contains("operation=\"list\"")
                && l.contains("result=\"failure\"")),
        "{metrics}"
    );
    base.shutdown().await.unwrap();
}

/// `publish_with_progress` sends an artifact above the part size as a multipart upload:
/// progress arrives part by part, and the object the bases read is the whole artifact with
/// its digest.
#[tokio::test]
async fn a_large_release_goes_up_in_parts() {
    let s3 = S3Server::start().await;
    let mut config = koupleless::config::StorageConfig {
        url: format!("s3://{BUCKET}/modules"),
        ..Default::default()
    };
    for (key, value) in [
        ("aws_endpoint", s3.endpoint()),
        ("aws_region", "us-east-1".to_owned()),
        ("aws_access_key_id", ACCESS_KEY.to_owned()),
        ("aws_secret_access_key", SECRET_KEY.to_owned()),
        ("allow_http", "true".to_owned()),
    ] {
        config.options.insert(key.to_owned(), value);
    }
    let part = koupleless_release::UPLOAD_PART_SIZE;
    let size = 2 * part + part / 2;
    let artifact: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let seen = std::sync::Mutex::new(Vec::new());
    let version: koupleless::Version = "1.0.0".parse().unwrap();

    let location = koupleless_release::publish_with_progress(
        &config,
        "big",
        &version,
        artifact.clone(),
        &|sent| seen.lock().unwrap().push(sent),
    )
    .await
    .expect("the release is uploaded");

    assert!(location.contains("big/1.0.0/module.wasm"), "{location}");
    let part = part as u64;
    assert_eq!(
        *seen.lock().unwrap(),
        [part, 2 * part, size as u64],
        "one progress report per part"
    );
    let bucket = s3.client();
    let stored = bucket
        .get(&Key::from("modules/big/1.0.0/module.wasm"))
        .await
        .expect("the artifact is there")
        .bytes()
        .await
        .unwrap();
    assert!(
        stored == artifact,
        "the stored artifact is the uploaded one, whole"
    );
    let digest = bucket
        .get(&Key::from("modules/big/1.0.0/module.wasm.sha256"))
        .await
        .expect("the digest is there")
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&digest),
        format!("{}  module.wasm\n", sha256(&artifact))
    );
}
