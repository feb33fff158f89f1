//! `tessera audit ...`

use anyhow::bail;
use reqwest::Method;
use serde_json::Value;
use tessera_core::audit::VerifyReport;
use tessera_core::auth::SystemCtx;
use tessera_core::config::DatabaseUrl;

use super::print_json;
use crate::cli::AuditCmd;
use crate::client::{Client, field, print_table};

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify { client, database_url } => {
            let report: VerifyReport = match database_url {
                Some(url) => {
                    let url = DatabaseUrl::parse(&url).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let store = tessera_store::open(&url).await?;
                    tessera_store::verify_audit_chain(&*store, &SystemCtx::bootstrap()).await?
                }
                None => {
                    let c = Client::new(&client)?;
                    serde_json::from_value(
                        c.call(Method::GET, "/admin/v1/audit/verify", None).await?,
                    )?
                }
            };
            if client.json {
                print_json(&serde_json::to_value(&report)?)?;
            } else if report.ok {
                println!("audit chain ok: {} entries verified", report.checked);
            }
            match report.first_broken {
                None => Ok(()),
                Some(b) => bail!("audit chain broken at entry {}: {}", b.id, b.reason),
            }
        }
        AuditCmd::List { client, tenant, since, limit } => {
            let c = Client::new(&client)?;
            let mut q = vec![format!("limit={limit}")];
            if let Some(t) = tenant {
                q.push(format!("tenant={t}"));
            }
            if let Some(s) = since {
                q.push(format!("since={}", s.replace('+', "%2B")));
            }
            let v = c.call(Method::GET, &format!("/admin/v1/audit?{}", q.join("&")), None).await?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["data"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|e: &Value| {
                    ["id", "ts", "actor_key_id", "tenant_id", "action", "target"]
                        .iter()
                        .map(|f| field(e, f))
                        .collect()
                })
                .collect();
            print_table(&["ID", "TIME", "ACTOR", "TENANT", "ACTION", "TARGET"], &rows);
            Ok(())
        }
    }
}
