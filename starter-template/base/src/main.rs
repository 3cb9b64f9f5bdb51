//! The {{project-name}} base. Run it with `cargo run`; it prints where it listens.
//!
//! It serves the modules it installs on `server.listen`, answers Kubernetes probes
//! (`/livez`, `/readyz`, `/startupz`), takes admin commands on `admin.listen`, and installs
//! the newest release of each module it finds at `storage.url` (see koupleless.toml).
//!
//! Native modules are compiled in with `.module(...)`, e.g.
//! `Base::builder().module(payroll::Payroll::default())`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // anyhow prints a failure as its message and causes, e.g. which key of the configuration
    // is invalid and where it was set.
    Ok(koupleless::Base::builder().run().await?)
}
