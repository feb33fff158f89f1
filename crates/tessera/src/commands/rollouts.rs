//! `tessera rollouts ...`

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::print_json;
use crate::cli::RolloutsCmd;
use crate::client::{Client, field, print_table};

pub async fn run(cmd: RolloutsCmd) -> anyhow::Result<()> {
    match cmd {
        RolloutsCmd::Start {
            client,
            model,
            candidate,
            steps,
            interval,
            error_rate_max,
            p99_ms_max,
            accuracy_min,
            mae_max,
            min_samples,
            drift_max,
            agreement_min,
            failures_before_rollback,
            wait,
        } => {
            let c = Client::new(&client)?;
            let steps = parse_steps(&steps)?;
            let candidate =
                candidate.parse::<i64>().map_or_else(|_| json!(candidate), |v| json!(v));
            let mut checks = Map::new();
            for (name, v) in [
                ("error_rate_max", error_rate_max),
                ("p99_ms_max", p99_ms_max),
                ("accuracy_min", accuracy_min),
                ("mae_max", mae_max),
                ("drift_max", drift_max),
                ("agreement_min", agreement_min),
            ] {
                if let Some(v) = v {
                    checks.insert(name.into(), json!(v));
                }
            }
            checks.insert("min_samples".into(), json!(min_samples));
            let body = json!({"model": model, "candidate": candidate, "steps": steps,
                "interval": interval, "checks": checks,
                "failures_before_rollback": failures_before_rollback});
            let r = c.call(Method::POST, "/v1/rollouts", Some(body)).await?;
            if !wait {
                return show(&c, &r);
            }
            let id = field(&r, "id");
            eprintln!(
                "rollout {id} started; following it (Ctrl-C stops following, not the rollout)"
            );
            let mut seen = 0;
            loop {
                let r = c.call(Method::GET, &format!("/v1/rollouts/{id}"), None).await?;
                let history = r["history"].as_array().cloned().unwrap_or_default();
                for h in history.iter().skip(seen) {
                    if !c.json {
                        println!("{}", history_line(h));
                    }
                }
                seen = history.len();
                match r["state"].as_str() {
                    Some("running" | "paused") => tokio::time::sleep(Duration::from_secs(1)).await,
                    Some("promoted") => {
                        if c.json {
                            print_json(&r)?;
                        }
                        return Ok(());
                    }
                    other => {
                        if c.json {
                            print_json(&r)?;
                        }
                        bail!("rollout {id} ended {}", other.unwrap_or("in an unknown state"));
                    }
                }
            }
        }
        RolloutsCmd::Status { client, id } => {
            let c = Client::new(&client)?;
            let r = c.call(Method::GET, &format!("/v1/rollouts/{id}"), None).await?;
            show(&c, &r)
        }
        RolloutsCmd::List { client, model } => {
            let c = Client::new(&client)?;
            let path = match model {
                Some(m) => format!("/v1/rollouts?model={m}"),
                None => "/v1/rollouts".into(),
            };
            let v = c.call(Method::GET, &path, None).await?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["data"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    vec![
                        field(r, "id"),
                        field(r, "model"),
                        field(r, "candidate"),
                        field(r, "state"),
                        step_label(r),
                        field(r, "updated_at"),
                    ]
                })
                .collect();
            print_table(&["ID", "MODEL", "CANDIDATE", "STATE", "STEP", "UPDATED"], &rows);
            Ok(())
        }
        RolloutsCmd::Pause { client, id } => control(&client, &id, "pause").await,
        RolloutsCmd::Resume { client, id } => control(&client, &id, "resume").await,
        RolloutsCmd::Abort { client, id } => control(&client, &id, "abort").await,
    }
}

async fn control(client: &crate::cli::ClientArgs, id: &str, action: &str) -> anyhow::Result<()> {
    let c = Client::new(client)?;
    let r = c.call(Method::POST, &format!("/v1/rollouts/{id}/{action}"), None).await?;
    show(&c, &r)
}

/// `shadow,5,25` as the API's steps.
fn parse_steps(s: &str) -> anyhow::Result<Vec<Value>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "shadow" => Ok(json!("shadow")),
            n => n
                .trim_end_matches('%')
                .parse::<u32>()
                .map(|w| json!(w))
                .with_context(|| format!("--steps: {n:?} is neither \"shadow\" nor a weight")),
        })
        .collect()
}

fn step_label(r: &Value) -> String {
    let i = r["step"].as_u64().unwrap_or(0) as usize;
    match r["steps"].get(i) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => format!("{n}%"),
        _ => "-".into(),
    }
}

fn history_line(h: &Value) -> String {
    let checks: Vec<String> = h["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let value = c["value"].as_f64().map_or("n/a".into(), |v| format!("{v:.4}"));
            format!("{} {value} {} {}", field(c, "name"), field(c, "op"), field(c, "threshold"))
        })
        .collect();
    let mut line = format!("{}  {:<11} {:<7}", field(h, "at"), field(h, "event"), field(h, "step"));
    if !checks.is_empty() {
        line.push_str(&format!("  [{}]", checks.join("; ")));
    }
    if let Some(d) = h["detail"].as_str() {
        line.push_str(&format!("  {d}"));
    }
    line
}

/// A rollout as a person reads it: where it is, its last checks, its history.
fn show(c: &Client, r: &Value) -> anyhow::Result<()> {
    if c.json {
        return print_json(r);
    }
    println!(
        "rollout {}  model {}  candidate {}  primary {}",
        field(r, "id"),
        field(r, "model"),
        field(r, "candidate"),
        field(r, "primary")
    );
    println!(
        "state {}  step {} of {}  failures {}/{}  next evaluation {}",
        field(r, "state"),
        step_label(r),
        r["steps"].as_array().map_or(0, Vec::len),
        field(r, "failures"),
        field(r, "failures_before_rollback"),
        field(r, "next_evaluation_at")
    );
    let rows: Vec<Vec<String>> = r["last_checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|ch| {
            let verdict = match ch["passed"].as_bool() {
                Some(true) => "ok",
                Some(false) => "FAIL",
                None => "no data",
            };
            let value = ch["value"].as_f64().map_or("n/a".into(), |v| format!("{v:.4}"));
            vec![
                field(ch, "name"),
                value,
                format!("{} {}", field(ch, "op"), field(ch, "threshold")),
                field(ch, "samples"),
                verdict.into(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print_table(&["CHECK", "VALUE", "NEEDS", "SAMPLES", "VERDICT"], &rows);
    }
    println!("\nhistory:");
    for h in r["history"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!("  {}", history_line(h));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_from_the_command_line() {
        assert_eq!(
            parse_steps("shadow, 5,25%,100").unwrap(),
            vec![json!("shadow"), json!(5), json!(25), json!(100)]
        );
        assert!(parse_steps("shadow,half").unwrap_err().to_string().contains("half"));
    }

    #[test]
    fn history_lines_show_checks_and_detail() {
        let h = json!({"at": "t", "event": "failed", "step": "5%", "detail": "accuracy failed",
            "checks": [{"name": "accuracy", "value": 0.5, "op": ">=", "threshold": 0.85}]});
        let line = history_line(&h);
        assert!(
            line.contains("accuracy 0.5000 >= 0.85") && line.ends_with("accuracy failed"),
            "{line}"
        );
    }
}
