//! The checked-in JSON Schema (`schema/stack.schema.json`) is the one the
//! types generate. Regenerate it with
//! `UPDATE_SCHEMA=1 cargo test -p stacks --test it spec_schema`.

use std::path::Path;

#[test]
fn checked_in_schema_is_current() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/stack.schema.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&stacks::spec::spec_schema()).expect("schema serializes")
    );
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(file.parent().expect("has a parent")).expect("create schema/");
        std::fs::write(&file, &generated).expect("write the schema");
        return;
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema/stack.schema.json is out of date with the spec types; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p stacks --test it spec_schema` and commit the result"
    );
}

#[test]
fn schema_describes_the_spec() {
    let schema = stacks::spec::spec_schema();
    assert_eq!(schema["title"], "Spec");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required fields")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for field in ["stack", "provider", "services", "executors", "event_keys"] {
        assert!(required.contains(&field), "{field} is required");
    }
    assert_eq!(schema["additionalProperties"], false);
}
