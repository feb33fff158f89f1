//! `tessera keys ...`

use anyhow::Context as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::print_json;
use crate::cli::KeysCmd;
use crate::client::{Client, field, print_table};

fn base(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("/admin/v1/tenants/{t}/keys"),
        None => "/admin/v1/keys".into(),
    }
}

fn print_keys(c: &Client, items: &[Value]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|k| {
            ["id", "name", "role", "prefix", "expires_at", "revoked_at"]
                .iter()
                .map(|f| field(k, f))
                .collect()
        })
        .collect();
    let _ = c;
    print_table(&["ID", "NAME", "ROLE", "PREFIX", "EXPIRES", "REVOKED"], &rows);
}

pub async fn run(cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create { client, tenant, name, role, expires_at, scopes } => {
            let c = Client::new(&client)?;
            let scopes: Option<Value> = scopes
                .map(|s| serde_json::from_str(&s).context("--scopes is not valid JSON"))
                .transpose()?;
            let body =
                json!({"name": name, "role": role, "expires_at": expires_at, "scopes": scopes});
            let v = c.call(Method::POST, &base(tenant.as_deref()), Some(body)).await?;
            if c.json {
                return print_json(&v);
            }
            print_keys(&c, std::slice::from_ref(&v));
            println!("\nkey (shown once; store it now): {}", field(&v, "key"));
            Ok(())
        }
        KeysCmd::List { client, tenant } => {
            let c = Client::new(&client)?;
            let v = c.call(Method::GET, &base(tenant.as_deref()), None).await?;
            if c.json {
                return print_json(&v);
            }
            print_keys(&c, v["data"].as_array().map(Vec::as_slice).unwrap_or_default());
            Ok(())
        }
        KeysCmd::Revoke { client, tenant, id } => {
            let c = Client::new(&client)?;
            let v =
                c.call(Method::DELETE, &format!("{}/{id}", base(tenant.as_deref())), None).await?;
            if c.json {
                return print_json(&v);
            }
            println!("revoked key {id}");
            Ok(())
        }
    }
}
