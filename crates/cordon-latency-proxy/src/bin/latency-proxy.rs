//! `latency-proxy`: an AWS-like round trip in front of the local emulator.
//!
//! Prints `listening on ADDR` on stdout once it accepts connections, then runs
//! until interrupted (SIGINT or SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use cordon_latency_proxy::throttle::Ec2Throttle;
use cordon_latency_proxy::{HangMode, HangRule, LatencyProxy, ProxyConfig};
use tokio::io::AsyncWriteExt;

/// Forward HTTP/1.1 requests to a loopback upstream with a delay per request.
#[derive(Debug, Parser)]
#[command(name = "latency-proxy", version, about)]
struct Args {
    /// The emulator, e.g. 127.0.0.1:5000.
    #[arg(long)]
    upstream: SocketAddr,
    /// Where to listen (port 0: a free port, printed on start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Milliseconds added before each request is forwarded.
    #[arg(long, default_value_t = 40)]
    delay_ms: u64,
    /// Never answer the Nth request (1-based, over all connections).
    #[arg(long, conflicts_with = "hang_operation")]
    hang_nth: Option<u64>,
    /// Never answer the first request for this operation (e.g. CreateSecurityGroup).
    #[arg(long)]
    hang_operation: Option<String>,
    /// Forward the held request to the emulator (it takes effect) and drop
    /// its answer, instead of holding it unsent.
    #[arg(long)]
    hang_after_forwarding: bool,
    /// Answer every request for this operation late: OPERATION=MILLISECONDS
    /// more than the others (e.g. DescribeInstances=4000), a slow service.
    #[arg(long, value_parser = parse_slow)]
    slow: Option<(String, Duration)>,
    /// Answer EC2 requests `RequestLimitExceeded` when EC2's published token buckets would.
    #[arg(long)]
    ec2_throttle: bool,
    /// Append one JSON line per request to this file.
    #[arg(long)]
    log: Option<PathBuf>,
}

fn parse_slow(text: &str) -> Result<(String, Duration), String> {
    let (operation, ms) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write OPERATION=MILLISECONDS"))?;
    let ms: u64 = ms
        .parse()
        .map_err(|e| format!("`{text}`: milliseconds: {e}"))?;
    Ok((operation.to_string(), Duration::from_millis(ms)))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let hang = match (args.hang_nth, args.hang_operation) {
        (Some(n), _) => Some(HangRule::Nth(n)),
        (None, Some(op)) => Some(HangRule::Operation(op)),
        (None, None) => None,
    };
    let config = ProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        delay: Duration::from_millis(args.delay_ms),
        hang,
        hang_mode: if args.hang_after_forwarding {
            HangMode::Unanswered
        } else {
            HangMode::Unsent
        },
        slow: args.slow,
        throttle: args.ec2_throttle.then(Ec2Throttle::published),
        log: args.log,
    };
    let proxy = LatencyProxy::bind(config).await?;
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("listening on {}\n", proxy.local_addr()).as_bytes())
        .await?;
    stdout.flush().await?;
    tokio::select! {
        _ = proxy.serve() => {}
        _ = shutdown_signal() => {}
    }
    Ok(())
}
