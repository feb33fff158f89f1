//! `tessera drift ...` and `tessera alerts ...`

use reqwest::Method;
use serde_json::Value;

use super::print_json;
use crate::cli::{AlertsCmd, DriftCmd};
use crate::client::{Client, field, print_table};

fn number(v: &Value) -> String {
    v.as_f64().map_or_else(|| "n/a".to_owned(), |x| format!("{x:.4}"))
}

pub async fn drift(cmd: DriftCmd) -> anyhow::Result<()> {
    let DriftCmd::Show { client, model, window, version, reference_from, reference_to, mode } = cmd;
    let c = Client::new(&client)?;
    let mut q = vec![format!("window={window}"), format!("mode={mode}")];
    if let Some(v) = version {
        q.push(format!("version={v}"));
    }
    for (k, v) in [("reference_from", reference_from), ("reference_to", reference_to)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", v.replace('+', "%2B")));
        }
    }
    let r = c.call(Method::GET, &format!("/v1/models/{model}/drift?{}", q.join("&")), None).await?;
    if c.json {
        return print_json(&r);
    }
    let reference = &r["reference"];
    println!(
        "{} version {}  mode {}  reference {} ({} rows, {} predictions)  current {} rows, {} predictions",
        field(&r, "model"),
        field(&r, "version"),
        field(&r, "mode"),
        match reference["kind"].as_str() {
            Some("training") => format!("training set {}", field(reference, "dataset")),
            _ => format!("{} to {}", field(reference, "from"), field(reference, "to")),
        },
        field(reference, "rows"),
        field(reference, "predictions"),
        field(&r["current"], "rows"),
        field(&r["current"], "predictions"),
    );
    let rows: Vec<Vec<String>> = r["columns"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|col| {
            let verdict = match col["drifted"].as_bool() {
                Some(true) => "DRIFT",
                Some(false) => "ok",
                None => "no data",
            };
            vec![
                field(col, "name"),
                field(col, "source"),
                field(col, "kind"),
                field(col, "method"),
                number(&col["value"]),
                number(&col["threshold"]),
                verdict.into(),
            ]
        })
        .collect();
    print_table(&["COLUMN", "SOURCE", "KIND", "METHOD", "VALUE", "THRESHOLD", "VERDICT"], &rows);
    match r["dataset_drift"].as_object() {
        Some(d) => println!(
            "\n{} of {} columns drift (share {}, drifts at {}): {}",
            d["drifted_columns"],
            d["columns"],
            number(&d["share"]),
            d["drift_share"],
            if d["drifted"] == true { "DATASET DRIFT" } else { "no dataset drift" }
        ),
        None => println!("\nno column could be judged"),
    }
    for n in r["notes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!("note: {}", n.as_str().unwrap_or_default());
    }
    Ok(())
}

pub async fn run(cmd: AlertsCmd) -> anyhow::Result<()> {
    let AlertsCmd::List { client, platform } = cmd;
    let c = Client::new(&client)?;
    let path = if platform { "/admin/v1/alerts" } else { "/v1/alerts" };
    let v = c.call(Method::GET, path, None).await?;
    if c.json {
        return print_json(&v);
    }
    let mut rows: Vec<(bool, Vec<String>)> = Vec::new();
    for r in v["data"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let spec = &r["spec"];
        let condition = format!(
            "{} {} {} {} for {}",
            field(spec, "metric"),
            spec["model"].as_str().map(|m| format!("of {m}")).unwrap_or_default(),
            field(spec, "op"),
            field(spec, "threshold"),
            field(spec, "for")
        );
        let instances = r["instances"].as_object().cloned().unwrap_or_default();
        if instances.is_empty() {
            rows.push((
                false,
                vec![
                    field(r, "id"),
                    field(spec, "name"),
                    field(spec, "severity"),
                    condition.clone(),
                    "-".into(),
                    "not evaluated yet".into(),
                    "-".into(),
                ],
            ));
        }
        for (subject, i) in instances {
            let firing = i["status"] == "firing";
            rows.push((
                firing,
                vec![
                    field(r, "id"),
                    field(spec, "name"),
                    field(spec, "severity"),
                    condition.clone(),
                    subject,
                    field(&i, "status"),
                    number(&i["value"]),
                ],
            ));
        }
    }
    rows.sort_by_key(|(firing, _)| !firing);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, r)| r).collect();
    print_table(&["ID", "NAME", "SEVERITY", "CONDITION", "SUBJECT", "STATUS", "VALUE"], &rows);
    Ok(())
}
