//! `fjord-operator`: runs the controllers (default), or prints the CRDs (`crd`) or the objects a
//! Cluster manifest becomes (`render -f cluster.yaml`), without a cluster.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fjord_operator::controller::{self, Context, Scope};
use fjord_operator::leader::LeaderElection;
use fjord_operator::metrics::{self, Metrics};
use fjord_operator::render;
use tokio_util::sync::CancellationToken;

/// The Kafka admin client decodes responses with kafka-protocol, which reserves memory for
/// array lengths read off the wire; the broker's allocator keeps a hostile length from
/// aborting the process (see `fjord_runtime::alloc`).
#[global_allocator]
static ALLOCATOR: fjord_runtime::alloc::GuardedAlloc = fjord_runtime::alloc::GuardedAlloc;

#[derive(Debug, Parser)]
#[command(name = "fjord-operator", version, about = "Fjord Kubernetes operator")]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, env = "FJORD_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    /// Broker image of Clusters that name none.
    #[arg(long, env = "FJORD_BROKER_IMAGE", default_value = default_broker_image(), global = true)]
    broker_image: String,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when left out.
    #[arg(long, env = "FJORD_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "FJORD_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "FJORD_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease; the operator's own namespace by default.
    #[arg(long, env = "FJORD_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Reach every Cluster's brokers at this `host:port` instead of its bootstrap Service (an
    /// operator running outside the cluster, with `kubectl port-forward`).
    #[arg(long, env = "FJORD_BOOTSTRAP_OVERRIDE")]
    bootstrap_override: Option<String>,
    /// Bound on each Kafka admin request, in seconds.
    #[arg(long, env = "FJORD_KAFKA_TIMEOUT_SECONDS", default_value_t = 10)]
    kafka_timeout_seconds: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the controllers (the default).
    Run,
    /// Prints the CustomResourceDefinitions, or writes them one file each (what `crds/` holds).
    Crd {
        /// Write `<group>_<plural>.yaml` files into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Prints every object the operator would apply for the Cluster(s) in a manifest.
    Render {
        /// The manifest; `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

const fn default_broker_image() -> &'static str {
    concat!("ghcr.io/fjord-dev/fjord-broker:", env!("CARGO_PKG_VERSION"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { output_dir: None }) => {
            print!("{}", render::crds_yaml().context("writing the CRDs")?);
            Ok(())
        }
        Some(Command::Crd {
            output_dir: Some(dir),
        }) => {
            for (name, yaml) in render::crd_files().context("writing the CRDs")? {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Some(Command::Render { file }) => {
            let manifest = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading standard input")?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            print!("{}", render::render(&manifest, &cli.broker_image)?);
            Ok(())
        }
        Some(Command::Run) | None => {
            init_logging(&cli.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(run(cli.run, cli.broker_image))
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: RunArgs, broker_image: String) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding {}", args.metrics_listen))?;
    let http = tokio::spawn(metrics::serve(
        listener,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));

    // In a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config.
    let mut config = kube::Config::infer()
        .await
        .context("configuring the Kubernetes API client (in-cluster or KUBECONFIG)")?;
    controller::identify(&mut config);
    let client = kube::Client::try_from(config).context("connecting to the Kubernetes API")?;
    let mut context = Context::new(client.clone(), Arc::clone(&metrics), broker_image);
    context.bootstrap_override = args.bootstrap_override;
    context.kafka_timeout = Duration::from_secs(args.kafka_timeout_seconds);
    let context = Arc::new(context);
    // Ready once the API server answers: a standby replica is as ready as the leader (it takes
    // over when the lease frees), so rolling updates of the Deployment can wait on readiness.
    let version = client
        .apiserver_version()
        .await
        .context("asking the Kubernetes API server for its version")?;
    tracing::info!(kubernetes = %version.git_version, "connected to the API server");
    metrics.set_ready(true);

    let signals = shutdown.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "installing the SIGTERM handler");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        tracing::info!("shutting down");
        signals.cancel();
    });

    let scope = Scope {
        namespaces: args.watch_namespaces,
    };
    let mut lost_lease = false;
    if args.leader_election {
        let namespace = args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("fjord-operator-{}", uuid::Uuid::new_v4()));
        let election = LeaderElection::new(client, &namespace, "fjord-operator-leader", identity);
        tracing::info!(%namespace, "waiting to become leader");
        if election.acquire(&shutdown).await {
            metrics.set_leader(true);
            tracing::info!("leading: starting the controllers");
            let controllers = tokio::spawn(controller::run(
                Arc::clone(&context),
                scope,
                shutdown.clone(),
            ));
            election.hold(&shutdown).await;
            lost_lease = !shutdown.is_cancelled();
            metrics.set_leader(false);
            shutdown.cancel();
            if lost_lease {
                // Another replica may lead already: stop at once, not after in-flight reconciles.
                controllers.abort();
            } else {
                let _ = controllers.await;
                election.release().await;
            }
        }
    } else {
        metrics.set_leader(true);
        controller::run(context, scope, shutdown.clone()).await;
    }
    shutdown.cancel();
    let _ = http.await;
    anyhow::ensure!(
        !lost_lease,
        "lost the leader lease; exiting so a replica can take over"
    );
    Ok(())
}
