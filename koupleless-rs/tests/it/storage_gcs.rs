//! Releases from Google Cloud Storage: a real fake-gcs-server on loopback, a base watching
//! `gs://…` configured only through `[storage.options]` (the emulator's base URL, no request
//! signing, plain HTTP).
//!
//! The base only lists and downloads, and those go through object_store's GCS client as in
//! production. The artifacts are uploaded through the emulator's JSON upload API: object_store
//! uploads with the XML API's `PUT /<bucket>/<object>`, which fake-gcs-server answers with
//! `400 invalid uploadType` (it takes that request only as a signed-URL upload).

use std::time::Duration;

use crate::support::{emulator::Emulator, guests::hello_module, *};
use object_store::{
    ClientOptions, ObjectStoreExt,
    client::{HttpConnector, HttpRequestBody, ReqwestConnector},
    gcp::GoogleCloudStorageBuilder,
    path::Path as Key,
};

const BUCKET: &str = "releases";
const WITHIN: Duration = Duration::from_secs(60);

/// Uploads `bytes` as `name` in the bucket through the JSON API (`uploadType=media`).
async fn upload(gcs: &Emulator, name: &str, bytes: Vec<u8>) {
    let http = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .expect("an HTTP client");
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!(
            "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}",
            gcs.endpoint()
        ))
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(HttpRequestBody::from(bytes))
        .unwrap();
    let response = http.execute(request).await.expect("the emulator answers");
    assert_eq!(response.status(), http::StatusCode::OK, "uploading {name}");
}

/// `[storage.options]` for the emulator.
fn options(gcs: &Emulator) -> [(&'static str, String); 3] {
    [
        ("google_base_url", gcs.endpoint()),
        ("google_skip_signature", "true".to_owned()),
        ("allow_http", "true".to_owned()),
    ]
}

fn base_config(gcs: &Emulator) -> String {
    let options: String = options(gcs)
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    format!(
        r#"
[storage]
enabled = true
url = "gs://{BUCKET}/modules"
poll_interval = "100ms"
backoff_max = "200ms"
[storage.options]
{options}
[wasm]
instances_per_module = 1
max_instances = 16
"#
    )
}

#[tokio::test]
async fn releases_in_a_gcs_bucket_are_installed() {
    let gcs = Emulator::fake_gcs(&[BUCKET]);
    let bytes = std::fs::read(hello_module()).unwrap();
    upload(&gcs, "modules/hello/1.0.0/module.wasm", bytes.clone()).await;
    upload(
        &gcs,
        "modules/hello/1.0.0/module.wasm.sha256",
        format!("{}  module.wasm\n", sha256(&bytes)).into_bytes(),
    )
    .await;

    // object_store's own client, with the settings the base gets, reads what was uploaded.
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(BUCKET);
    for (key, value) in options(&gcs) {
        builder = builder.with_config(key.parse().unwrap(), value);
    }
    let bucket = builder.build().expect("a GCS client");
    let stored = bucket
        .get(&Key::from("modules/hello/1.0.0/module.wasm"))
        .await
        .expect("the artifact is there")
        .bytes()
        .await
        .unwrap();
    assert!(stored == bytes, "the stored artifact is the uploaded one");

    let base = start_base(vec![], &base_config(&gcs)).await;
    let http = Http::new();
    eventually(WITHIN, "hello@1.0.0 from the bucket", || async {
        http.get(&app(&base, "/hello/who")).await.text() == "hello@1.0.0"
    })
    .await;

    // A newer version released while the base watches, with a digest that does not match:
    // refused, and the base keeps serving 1.0.0.
    upload(&gcs, "modules/hello/1.1.0/module.wasm", bytes.clone()).await;
    upload(
        &gcs,
        "modules/hello/1.1.0/module.wasm.sha256",
        format!("{}  module.wasm\n", sha256(b"something else")).into_bytes(),
    )
    .await;
    eventually(
        WITHIN,
        "the digest mismatch in the rollout record",
        || async {
            let all = http.get(&admin(&base, "/rollouts/hello")).await.json();
            all.as_array().is_some_and(|records| {
                records.iter().any(|r| {
                    r["version"] == "1.1.0"
                        && r["pods"].as_object().is_some_and(|pods| {
                            pods.values().any(|p| {
                                p["outcome"] == "aborted"
                                    && p["reason"].as_str().is_some_and(|why| {
                                        why.contains(
                                            "gs://releases/modules/hello/1.1.0/module.wasm",
                                        ) && why.contains("module.wasm.sha256 says")
                                    })
                            })
                        })
                })
            })
        },
    )
    .await;
    assert_eq!(
        http.get(&app(&base, "/hello/who")).await.text(),
        "hello@1.0.0"
    );

    // Then the right one.
    upload(&gcs, "modules/hello/1.2.0/module.wasm", bytes.clone()).await;
    upload(
        &gcs,
        "modules/hello/1.2.0/module.wasm.sha256",
        format!("{}  module.wasm\n", sha256(&bytes)).into_bytes(),
    )
    .await;
    eventually(WITHIN, "hello@1.2.0 from the bucket", || async {
        http.get(&app(&base, "/hello/who")).await.text() == "hello@1.2.0"
    })
    .await;
    base.shutdown().await.unwrap();
}
