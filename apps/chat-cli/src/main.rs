//! `chat-cli`: terminal chat over a p2pmesh mesh (see the library's docs).

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = chat_cli::Config::parse();
    // Quiet by default: errors only (the WebRTC crates' chatty logs included).
    let default = match config.verbose {
        0 => "error".to_owned(),
        1 => format!("info,{}", p2pmesh::webrtc_adapter::QUIET_LOG_DIRECTIVES),
        _ => "debug".to_owned(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    match chat_cli::run(config, stdin, tokio::io::stdout()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-cli: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
