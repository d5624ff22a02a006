//! `distill serve`: the tiered cascade as an HTTP service.

use crate::CmdResult;
use clap::Args;
use distill_serve::config::ServeConfig;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// A serve config (configs/serve/<name>.toml): tiers, upstream, log.
    config: PathBuf,
    /// Override a config key: --set tiers.0.threshold=0.9 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Listen on this port (0: a free one; the address is printed on stdout).
    #[arg(long)]
    port: Option<u16>,
    /// Listen on this address (default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
}

pub fn run(args: ServeArgs) -> CmdResult {
    let mut config = ServeConfig::load(&args.config, &args.sets)?;
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(h) = args.host {
        config.host = h;
    }
    distill_serve::run(config)?;
    Ok(())
}
