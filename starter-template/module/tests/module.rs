//! The module's routes and lifecycle, without a base (`koupleless_module::testing`).

use {{crate_name}}::{{crate_name | pascal_case}};
use koupleless_module::testing::ModuleHarness;

#[tokio::test]
async fn hello_answers_with_the_configured_greeting() {
    let harness = ModuleHarness::builder({{crate_name | pascal_case}})
        .config_toml("[modules.{{project-name}}]\ngreeting = \"good morning\"")
        .start()
        .await
        .expect("the module starts");
    let response = harness.get("{{prefix}}/hello").await;
    assert_eq!(response.status, 200);
    let body: serde_json::Value = response.json();
    assert_eq!(body["message"], "good morning");
    assert_eq!(body["served_by"], "{{project-name}}@0.1.0");
    harness.stop().await.expect("the module stops");
}
