//! `tether run`: the long-running host. Pollers, schedules, delivery workers and the webhook
//! server run until SIGINT or SIGTERM; work in flight then finishes before exit.

use std::net::SocketAddr;
use std::sync::Arc;

use tether_core::config::Config;
use tether_core::flow;
use tether_core::scheduler::{FlowSlot, Scheduler, SchedulerSettings};

use super::{flows, CliError, Exit};
use crate::console::access::Access;
use crate::console::{Console, FlowInfo};
use crate::server::{self, ServerState};
use crate::services::now_ms;

pub struct RunArgs {
    pub listen: SocketAddr,
    pub workers: usize,
    pub idle_ms: u64,
    pub poll_lease_ms: u64,
}

pub fn run(config: &Config, args: &RunArgs) -> Result<Exit, CliError> {
    let access = Access::new(args.listen, config.dashboard.token.clone())
        .map_err(|refused| CliError::new(Exit::Usage, refused.to_string()))?;
    // Before any connector call, so /metrics counts every request.
    crate::telemetry::handle();
    let mut prepared = flows::Prepared::all(config)?;
    // Relations are computed over the whole set before the flows move into their slots.
    let relations: Vec<flow::Relations> = prepared
        .checked
        .flows
        .iter()
        .map(|f| flow::relations(&prepared.checked.flows, f))
        .collect();
    // The dashboard lists every flow, a disabled one marked so.
    let flow_infos: Vec<FlowInfo> = prepared.checked.flows.iter().map(FlowInfo::of).collect();
    // A flow with `enabled = false` gets no poller, no workers and no webhook intake; its
    // connectors are not even opened.
    let (enabled, relations): (Vec<_>, Vec<_>) = std::mem::take(&mut prepared.checked.flows)
        .into_iter()
        .zip(relations)
        .partition(|(f, _)| f.enabled);
    let disabled: Vec<String> = relations.into_iter().map(|(f, _)| f.name).collect();
    let (enabled_flows, relations): (Vec<_>, Vec<_>) = enabled.into_iter().unzip();
    prepared.checked.flows = enabled_flows;
    let names: Vec<String> = prepared.checked.flows.iter().map(|f| f.name.clone()).collect();
    // One instance per configured connector, shared by its flows: one token, one rate budget.
    let mut instances: std::collections::BTreeMap<String, Arc<dyn tether_abi::Connector>> = Default::default();
    let mut opened = Vec::new();
    for f in &prepared.checked.flows {
        let mut instance = |name: &str| -> Result<Arc<dyn tether_abi::Connector>, CliError> {
            if let Some(open) = instances.get(name) {
                return Ok(Arc::clone(open));
            }
            let open = prepared.open(config, name)?;
            instances.insert(name.to_owned(), Arc::clone(&open));
            Ok(open)
        };
        opened.push((instance(&f.source_connector)?, instance(&f.target_connector)?));
    }
    let context = Arc::clone(prepared.context());
    let flows::Prepared {
        checked,
        runtime,
        store,
        ..
    } = prepared;
    let slots: Vec<FlowSlot> = checked
        .flows
        .into_iter()
        .zip(relations)
        .zip(opened)
        .map(|((flow, relations), (source, target))| FlowSlot {
            flow,
            relations,
            source,
            target,
        })
        .collect();
    let host_id = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id()
    );
    let clock: tether_core::scheduler::Clock = Arc::new(now_ms);
    let alerts_host_id = host_id.clone();
    let scheduler = Scheduler::new(
        store.clone(),
        slots,
        SchedulerSettings {
            retry: config.delivery,
            host_id,
            workers: args.workers,
            idle_ms: args.idle_ms,
            poll_lease_ms: args.poll_lease_ms,
        },
        Arc::clone(&clock),
    );
    let alerts = match &config.alerts {
        Some(settings) => Some(
            crate::alerts::Checker::new(
                store.clone(),
                config.clone(),
                settings.clone(),
                Arc::clone(&scheduler),
                Arc::clone(context.vault()),
                alerts_host_id,
                Arc::clone(&clock),
            )
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?,
        ),
        None => None,
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| CliError::new(Exit::Usage, format!("cannot listen on {}: {e}", args.listen)))?;
        let bound = listener.local_addr().unwrap_or(args.listen);
        // Listening for SIGTERM/SIGINT before the banner: whoever reads it may stop us at once.
        let stop_signal = super::stop_signal();
        // Tests and scripts read this line to learn the port when ADDR asks for port 0.
        let disabled = if disabled.is_empty() {
            String::new()
        } else {
            format!(", disabled [{}]", disabled.join(", "))
        };
        println!(
            "tether run: {} flow(s) [{}]{disabled}; webhooks at http://{bound}/webhooks/CONNECTOR; dashboard at http://{bound}/",
            names.len(),
            names.join(", ")
        );
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let console = Console::new(
            store.clone(),
            config.clone(),
            flow_infos,
            context,
            access,
            Arc::clone(&clock),
        );
        let app = server::router(
            ServerState {
                scheduler: Arc::clone(&scheduler),
                store,
                clock,
            },
            console,
        );
        let mut server_stop = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.changed().await;
                })
                .await
        });
        let alerts = alerts.map(|checker| tokio::spawn(checker.run(stop.clone())));
        let engine = tokio::spawn({
            let scheduler = Arc::clone(&scheduler);
            async move { scheduler.run(stop).await }
        });
        stop_signal.await;
        tracing::info!("stopping: finishing work in flight");
        let _ = stop_tx.send(true);
        let _ = engine.await;
        if let Some(alerts) = alerts {
            let _ = alerts.await;
        }
        match server.await {
            Ok(Ok(())) => Ok(Exit::Ok),
            Ok(Err(e)) => Err(CliError::new(Exit::Failed, format!("the HTTP server failed: {e}"))),
            Err(e) => Err(CliError::new(Exit::Failed, format!("the HTTP server stopped: {e}"))),
        }
    })
}
