//! `tessera tenants ...`

use reqwest::Method;
use serde_json::{Value, json};

use super::print_json;
use crate::cli::TenantsCmd;
use crate::client::{Client, field, print_table};

fn print_tenants(c: &Client, v: &Value, list: bool) -> anyhow::Result<()> {
    if c.json {
        return print_json(v);
    }
    let items: Vec<Value> =
        if list { v["data"].as_array().cloned().unwrap_or_default() } else { vec![v.clone()] };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            ["id", "name", "plan", "segment", "created_at"].iter().map(|f| field(t, f)).collect()
        })
        .collect();
    print_table(&["ID", "NAME", "PLAN", "SEGMENT", "CREATED"], &rows);
    Ok(())
}

pub async fn run(cmd: TenantsCmd) -> anyhow::Result<()> {
    match cmd {
        TenantsCmd::Create { client, name, plan, segment } => {
            let c = Client::new(&client)?;
            let body = json!({"name": name, "plan": plan, "segment": segment});
            let v = c.call(Method::POST, "/admin/v1/tenants", Some(body)).await?;
            print_tenants(&c, &v, false)
        }
        TenantsCmd::List { client } => {
            let c = Client::new(&client)?;
            let v = c.call(Method::GET, "/admin/v1/tenants", None).await?;
            print_tenants(&c, &v, true)
        }
        TenantsCmd::Get { client, id } => {
            let c = Client::new(&client)?;
            let v = c.call(Method::GET, &format!("/admin/v1/tenants/{id}"), None).await?;
            print_tenants(&c, &v, false)
        }
        TenantsCmd::Delete { client, id } => {
            let c = Client::new(&client)?;
            c.call(Method::DELETE, &format!("/admin/v1/tenants/{id}"), None).await?;
            if c.json {
                print_json(&json!({"id": id, "deleted": true}))
            } else {
                println!("deleted tenant {id}");
                Ok(())
            }
        }
    }
}
