//! A document checked against its published JSON Schema (`docs/schemas/`),
//! shared by the binary's tests and the unit tests of `src/output.rs`
//! (included with `#[path]`). It covers the keywords schemars writes: `$ref`
//! into `$defs`, `type`, `const`, `enum`, `properties`, `required`,
//! `additionalProperties`, `items`, `prefixItems`, `oneOf`, `anyOf`, `allOf`.
//! Strict where a script would break: a key no schema branch declares is an
//! error unless the object's schema allows other keys with
//! `additionalProperties` or says nothing of objects (a bare description, or
//! `true`: any JSON, such as an action's pre-state).

#![allow(dead_code)] // each test crate uses what it needs

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// The published schema `docs/schemas/NAME.schema.json`.
pub fn published(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas")
        .join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every way `document` breaks the schema, each with the path to the value.
pub fn violations(schema: &Value, document: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, document, "$", &BTreeSet::new(), &mut errors);
    errors
}

/// Panics with every violation of the schema `name` by `document`.
pub fn assert_valid(name: &str, document: &Value) {
    let errors = violations(&published(name), document);
    assert!(
        errors.is_empty(),
        "the document breaks docs/schemas/{name}.schema.json:\n{}",
        errors.join("\n")
    );
}

/// The schema `schema`'s `$ref` names; its other keywords apply as well
/// (2020-12: a `$ref` beside keywords is one more `allOf` branch).
fn referenced<'a>(root: &'a Value, schema: &Value) -> Option<&'a Value> {
    let reference = schema.get("$ref")?.as_str()?;
    let name = reference
        .strip_prefix("#/$defs/")
        .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
    Some(&root["$defs"][name])
}

/// The `allOf` branches of `schema` and its `$ref`: all of them apply.
fn conjuncts<'a>(root: &'a Value, schema: &'a Value) -> impl Iterator<Item = &'a Value> {
    let all_of = schema.get("allOf").and_then(Value::as_array);
    all_of.into_iter().flatten().chain(referenced(root, schema))
}

fn branches<'a>(schema: &'a Value, keyword: &str) -> impl Iterator<Item = &'a Value> {
    schema
        .get(keyword)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => panic!("unsupported type {other}"),
    }
}

/// The keys `schema` declares whatever the value: its properties and those
/// of what it applies in full (`allOf`, `$ref`).
fn declared_here(root: &Value, schema: &Value) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for branch in conjuncts(root, schema) {
        keys.extend(declared_here(root, branch));
    }
    keys
}

/// The keys `schema` declares for `value`: [`declared_here`] and the keys of
/// each `oneOf`/`anyOf` branch `value` satisfies.
fn declared(
    root: &Value,
    schema: &Value,
    value: &Value,
    inherited: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut keys = declared_here(root, schema);
    let mut visible = inherited.clone();
    visible.extend(keys.iter().cloned());
    for branch in conjuncts(root, schema) {
        keys.extend(declared(root, branch, value, &visible));
    }
    for branch in branches(schema, "oneOf").chain(branches(schema, "anyOf")) {
        if passes(root, branch, value, &visible) {
            keys.extend(declared(root, branch, value, &visible));
        }
    }
    keys
}

fn passes(root: &Value, schema: &Value, value: &Value, inherited: &BTreeSet<String>) -> bool {
    let mut errors = Vec::new();
    check(root, schema, value, "", inherited, &mut errors);
    errors.is_empty()
}

fn check(
    root: &Value,
    schema: &Value,
    value: &Value,
    path: &str,
    inherited: &BTreeSet<String>,
    errors: &mut Vec<String>,
) {
    match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{path}: no value is allowed here"));
            return;
        }
        _ => {}
    }
    if let Some(expected) = schema.get("type") {
        let types: Vec<&str> = match expected {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| type_matches(t, value)) {
            errors.push(format!("{path}: {value} is not of type {expected}"));
            return;
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("{path}: {value} is not {constant}"));
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let mut visible = inherited.clone();
    visible.extend(declared_here(root, schema));
    for branch in conjuncts(root, schema) {
        check(root, branch, value, path, &visible, errors);
    }
    for keyword in ["oneOf", "anyOf"] {
        let all: Vec<&Value> = branches(schema, keyword).collect();
        if all.is_empty() {
            continue;
        }
        let passing = all
            .iter()
            .filter(|branch| passes(root, branch, value, &visible))
            .count();
        let ok = if keyword == "oneOf" {
            passing == 1
        } else {
            passing >= 1
        };
        if !ok {
            errors.push(format!(
                "{path}: {passing} of the {} `{keyword}` branches match {value}",
                all.len()
            ));
        }
    }
    if let Value::Object(object) = value {
        for key in branches(schema, "required") {
            let key = key.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                errors.push(format!("{path}: required key `{key}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let mut known = visible.clone();
        known.extend(declared(root, schema, value, inherited));
        for (key, item) in object {
            let item_path = format!("{path}.{key}");
            if let Some(property) = properties.and_then(|p| p.get(key)) {
                check(root, property, item, &item_path, &BTreeSet::new(), errors);
            } else if known.contains(key) {
                // Declared by an enclosing schema or a matching branch, which checks it.
            } else if let Some(additional) = schema.get("additionalProperties") {
                check(root, additional, item, &item_path, &BTreeSet::new(), errors);
            } else if describes_objects(root, schema) {
                errors.push(format!("{item_path}: the schema declares no key `{key}`"));
            }
        }
    }
    if let Value::Array(items) = value {
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        for (index, item) in items.iter().enumerate() {
            let item_schema = prefix
                .and_then(|p| p.get(index))
                .or_else(|| schema.get("items"));
            if let Some(item_schema) = item_schema {
                let item_path = format!("{path}[{index}]");
                check(
                    root,
                    item_schema,
                    item,
                    &item_path,
                    &BTreeSet::new(),
                    errors,
                );
            }
        }
    }
}

/// Whether `schema` says what an object holds (`properties` or `type:
/// object`, itself or through a branch); a schema that does not (a bare
/// description: any JSON) declares no keys to be strict about.
fn describes_objects(root: &Value, schema: &Value) -> bool {
    schema.get("properties").is_some()
        || schema.get("type").is_some_and(|t| {
            t == "object"
                || t.as_array()
                    .is_some_and(|list| list.iter().any(|t| t == "object"))
        })
        || conjuncts(root, schema)
            .chain(branches(schema, "oneOf"))
            .chain(branches(schema, "anyOf"))
            .any(|branch| describes_objects(root, branch))
}
