//! Bytes from an artifact and keys from a bucket are hostile: reading them answers a value or
//! an error, never a panic, and a listing only ever yields artifacts that follow the layout.

use koupleless_release::{ArtifactError, embedded_manifest, embedded_migrations, layout::Layout};
use object_store::{ObjectMeta, path::Path};
use proptest::prelude::*;

/// The start of a component binary: magic number, version, layer.
const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";

fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![u8::try_from(name.len()).unwrap()];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut section = vec![0u8];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            section.push(byte);
            break;
        }
        section.push(byte | 0x80);
    }
    section.extend(body);
    section
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = embedded_manifest(&bytes, "artifact");
        let mut component = COMPONENT_HEADER.to_vec();
        component.extend_from_slice(&bytes);
        let _ = embedded_manifest(&component, "artifact");
    }

    #[test]
    fn any_manifest_section_is_read_without_a_panic(payload in "\\PC{0,200}|\\{\"name\": ?\"\\PC{0,12}\", ?\"version\": ?\"\\PC{0,12}\", ?\"prefix\": ?\"\\PC{0,12}\"\\}") {
        let mut component = COMPONENT_HEADER.to_vec();
        component.extend(custom_section(koupleless_release::MANIFEST_SECTION, payload.as_bytes()));
        if let Ok(Some(manifest)) = embedded_manifest(&component, "artifact") {
            prop_assert!(!manifest.version.to_string().is_empty());
        }
    }

    #[test]
    fn any_migrations_section_is_read_without_a_panic(payload in "\\PC{0,200}|\\[\\{\"version\": ?-?[0-9]{1,3}, ?\"name\": ?\"\\PC{0,8}\", ?\"sql\": ?\"\\PC{0,20}\"\\}\\]") {
        let mut component = COMPONENT_HEADER.to_vec();
        component.extend(custom_section(koupleless_release::MIGRATIONS_SECTION, payload.as_bytes()));
        let _ = embedded_migrations(&component, "artifact");
    }

    #[test]
    fn a_listing_of_any_keys_yields_only_the_layout(keys in proptest::collection::vec("\\PC{0,40}|(modules/)?[a-z]{1,6}/[0-9]\\.[0-9]\\.[0-9]/module\\.wasm(\\.sha256)?|[a-z]{1,6}-[0-9]\\.[0-9]\\.[0-9]\\.wasm", 0..20)) {
        let prefix = Path::from("modules");
        let objects: Vec<ObjectMeta> = keys
            .iter()
            .map(|key| ObjectMeta {
                location: Path::from(format!("modules/{key}")),
                last_modified: chrono::DateTime::UNIX_EPOCH,
                size: 10,
                e_tag: None,
                version: None,
            })
            .collect();
        let mut layout = Layout::default();
        let listing = layout.read(&prefix, &objects);
        for (name, artifacts) in &listing.modules {
            for artifact in artifacts {
                prop_assert_eq!(&artifact.name, name);
                prop_assert!(objects.iter().any(|o| o.location == artifact.location));
            }
        }
    }
}

fn with_migrations(json: &str) -> Vec<u8> {
    let mut component = COMPONENT_HEADER.to_vec();
    component.extend(custom_section(
        koupleless_release::MIGRATIONS_SECTION,
        json.as_bytes(),
    ));
    component
}

#[test]
fn embedded_migrations_are_read_in_order_and_a_bad_section_is_named() {
    let read = embedded_migrations(
        &with_migrations(
            r#"[{"version": 2, "name": "b", "sql": "SELECT 2"}, {"version": 1, "name": "a", "sql": "SELECT 1"}]"#,
        ),
        "payroll.wasm",
    )
    .expect("valid migrations");
    assert_eq!(
        read.iter()
            .map(|m| (m.version, m.name.as_str()))
            .collect::<Vec<_>>(),
        [(1, "a"), (2, "b")]
    );
    assert!(
        embedded_migrations(COMPONENT_HEADER, "none.wasm")
            .expect("no section")
            .is_empty()
    );
    for bad in [
        "not json",
        r#"[{"version": 1, "name": "a", "sql": "x"}, {"version": 1, "name": "b", "sql": "y"}]"#,
    ] {
        let err =
            embedded_migrations(&with_migrations(bad), "payroll.wasm").expect_err("a bad section");
        assert!(matches!(err, ArtifactError::MigrationsJson { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("koupleless-migrations") && text.contains("payroll.wasm"),
            "{text}"
        );
    }
}
