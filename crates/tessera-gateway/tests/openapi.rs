//! The OpenAPI document describes every route the app serves, and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tessera_gateway::routes::api_routes;

#[test]
fn every_route_is_documented() {
    let doc = tessera_gateway::routes::openapi::document();
    let routes = api_routes();
    let mut missing = Vec::new();
    for (verb, path) in routes.registered() {
        if doc["paths"][*path][verb.as_str()].is_null() {
            missing.push(format!("{} {path}", verb.as_str()));
        }
    }
    assert!(missing.is_empty(), "routes missing from the OpenAPI document: {missing:?}");
    let documented: usize =
        doc["paths"].as_object().unwrap().values().map(|m| m.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        routes.registered().len(),
        "the document lists routes the app does not serve"
    );
}

#[test]
fn routes_are_only_added_through_the_registry() {
    // A `.route(` call outside routes/mod.rs would bypass the registry and the check above.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("routes/mod.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains(".route(") || text.contains(".nest(") || text.contains(".merge(") {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(offenders.is_empty(), "routes added outside the registry: {offenders:?}");
}

#[test]
fn every_ref_resolves_and_open_routes_need_no_credential() {
    let doc = tessera_gateway::routes::openapi::document();
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                for key in ["$ref", "operationRef"] {
                    if let Some(r) = m.get(key).and_then(|r| r.as_str()) {
                        out.push(r);
                    }
                }
                m.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    let dangling: Vec<&str> = all
        .into_iter()
        .filter(|r| {
            // A JSON pointer: `~1` stands for `/` inside a key.
            doc.pointer(r.trim_start_matches('#')).is_none()
        })
        .collect();
    assert!(dangling.is_empty(), "$refs that resolve to nothing: {dangling:?}");
    for path in tessera_gateway::auth::OPEN_ROUTES {
        let op = &doc["paths"][*path]["get"];
        assert_eq!(op["security"], serde_json::json!([]), "{path} asks for a credential");
    }
    let links = &doc["paths"]["/admin/v1/tenants"]["post"]["responses"]["201"]["links"];
    assert!(links.as_object().is_some_and(|l| l.len() >= 3), "creating a tenant links on: {links}");
    let infer = &doc["paths"]["/v1/embeddings"]["post"]["responses"];
    for status in ["400", "401", "403", "404", "429", "503"] {
        assert!(infer.get(status).is_some(), "/v1/embeddings does not list {status}");
    }
}
