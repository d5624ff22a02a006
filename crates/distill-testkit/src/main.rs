//! `distill-testkit`: servers for benchmarks.
//!
//! `distill-testkit instant [PORT]` serves an instant-answer OpenAI-compatible
//! endpoint until killed; `distill-testkit llama PARALLEL` starts llama-server
//! and prints its base URL, until killed.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("instant") => {
            let port = args.get(1).and_then(|p| p.parse().ok());
            match distill_testkit::instant::InstantServer::start(port, "spam", "ham") {
                Ok(s) => {
                    println!("{}", s.base_url());
                    let _ = std::io::stdout().flush();
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(2);
                }
            }
        }
        Some("llama") => {
            let parallel = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(4);
            match distill_testkit::llama::LlamaServer::start(parallel) {
                Ok(s) => {
                    println!("{}", s.base_url());
                    let _ = std::io::stdout().flush();
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(2);
                }
            }
        }
        _ => {
            eprintln!("usage: distill-testkit instant [PORT] | llama [PARALLEL]");
            std::process::exit(2);
        }
    }
}
