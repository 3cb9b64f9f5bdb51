//! Releases from Azure Blob Storage: a real Azurite (the Azure Storage emulator) on
//! loopback, a container created and artifacts uploaded through the Blob API with shared-key
//! signatures, a base watching `az://…` configured only through `[storage.options]`.

use std::time::Duration;

use crate::support::{emulator::Emulator, guests::hello_module, *};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload,
    azure::{AzureAccessKey, AzureAuthorizer, AzureCredential, MicrosoftAzureBuilder},
    client::{HttpConnector, HttpRequestBody, ReqwestConnector},
    path::Path as Key,
};

/// Azurite's well-known development account and key.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "releases";
const WITHIN: Duration = Duration::from_secs(60);

/// The account's Blob endpoint: Azurite serves accounts path-style, `<host>/<account>`.
fn account_url(azurite: &Emulator) -> String {
    format!("{}/{ACCOUNT}", azurite.endpoint())
}

/// Creates the container (object_store writes and reads blobs, it does not create
/// containers): one `Create Container` request signed with the account key.
async fn create_container(azurite: &Emulator) {
    let http = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .expect("an HTTP client");
    let mut request = http::Request::builder()
        .method(http::Method::PUT)
        .uri(format!(
            "{}/{CONTAINER}?restype=container",
            account_url(azurite)
        ))
        .header(http::header::CONTENT_LENGTH, "0")
        .body(HttpRequestBody::empty())
        .unwrap();
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(KEY).unwrap());
    AzureAuthorizer::new(&credential, ACCOUNT)
        .try_authorize(&mut request)
        .expect("signed");
    let response = http.execute(request).await.expect("Azurite answers");
    assert_eq!(
        response.status(),
        http::StatusCode::CREATED,
        "Create Container"
    );
}

fn client(azurite: &Emulator) -> impl ObjectStore {
    MicrosoftAzureBuilder::new()
        .with_account(ACCOUNT)
        .with_access_key(KEY)
        .with_endpoint(account_url(azurite))
        .with_allow_http(true)
        .with_container_name(CONTAINER)
        .build()
        .expect("an Azure client")
}

/// `[storage]` for `az://releases/modules` on Azurite: the account, its key, the endpoint.
fn options(azurite: &Emulator) -> [(&'static str, String); 4] {
    [
        ("azure_storage_account_name", ACCOUNT.to_owned()),
        ("azure_storage_account_key", KEY.to_owned()),
        ("azure_storage_endpoint", account_url(azurite)),
        ("allow_http", "true".to_owned()),
    ]
}

fn base_config(azurite: &Emulator) -> String {
    let options: String = options(azurite)
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    format!(
        r#"
[storage]
enabled = true
url = "az://{CONTAINER}/modules"
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
async fn releases_in_an_azure_container_are_installed() {
    let azurite = Emulator::azurite();
    create_container(&azurite).await;
    let container = client(&azurite);
    let bytes = std::fs::read(hello_module()).unwrap();
    container
        .put(
            &Key::from("modules/hello/1.0.0/module.wasm"),
            PutPayload::from(bytes.clone()),
        )
        .await
        .expect("upload");
    container
        .put(
            &Key::from("modules/hello/1.0.0/module.wasm.sha256"),
            PutPayload::from(sha256(&bytes).into_bytes()),
        )
        .await
        .expect("upload the digest");

    let base = start_base(vec![], &base_config(&azurite)).await;
    let http = Http::new();
    eventually(WITHIN, "hello@1.0.0 from the container", || async {
        http.get(&app(&base, "/hello/who")).await.text() == "hello@1.0.0"
    })
    .await;

    // The next version is released as `koupleless deploy` does it, from the same settings.
    let mut config = koupleless::config::StorageConfig {
        url: format!("az://{CONTAINER}/modules"),
        ..Default::default()
    };
    for (key, value) in options(&azurite) {
        config.options.insert(key.to_owned(), value);
    }
    let version: koupleless::Version = "1.1.0".parse().unwrap();
    let location = koupleless_release::publish(&config, "hello", &version, bytes.clone())
        .await
        .expect("published to the container");
    assert_eq!(location, "az://releases/modules/hello/1.1.0/module.wasm");
    eventually(WITHIN, "hello@1.1.0 from the container", || async {
        http.get(&app(&base, "/hello/who")).await.text() == "hello@1.1.0"
    })
    .await;
    let digest = container
        .get(&Key::from("modules/hello/1.1.0/module.wasm.sha256"))
        .await
        .expect("the digest is there")
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&digest),
        format!("{}  module.wasm\n", sha256(&bytes))
    );
    base.shutdown().await.unwrap();
}

/// A wrong account key: the base keeps serving, and /readyz names the location.
#[tokio::test]
async fn a_wrong_key_is_reported_with_the_location() {
    let azurite = Emulator::azurite();
    create_container(&azurite).await;
    let wrong = "d3Jvbmcta2V5LWZvci10aGUtdGVzdA==";
    // A base whose storage refuses it from the start waits for its first sync until
    // `storage.first_sync_timeout`, then serves what it has.
    let config = base_config(&azurite)
        .replace(KEY, wrong)
        .replace("[storage]\n", "[storage]\nfirst_sync_timeout = \"1s\"\n");
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    eventually(WITHIN, "the storage condition in /readyz", || async {
        let r = http.get(&admin(&base, "/readyz")).await;
        r.status == 200
            && r.json()["conditions"]
                .to_string()
                .contains("az://releases/modules")
    })
    .await;
    base.shutdown().await.unwrap();
}
