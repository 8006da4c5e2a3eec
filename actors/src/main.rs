//! `mediarouter`: the media server binary. Loads settings, starts the registry, the RTMP
//! listener with its worker threads, the REST API and the web server, and runs until SIGINT or
//! SIGTERM.

mod access;
mod http;
mod messages;
mod registry;
mod rtmp;
mod rtsp;
mod stream;
mod token_cli;
mod vod;
mod webrtc;
mod ws;

use actix::prelude::*;
use actix_web::{App, HttpServer};
use mediarouter_core::settings::Settings;
use registry::Registry;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

const USAGE: &str = "usage: mediarouter [--config FILE]
       mediarouter token --stream NAME --action publish|play [options]   (see token --help)

Runs the media server. Settings come from the embedded defaults (settings/default.toml),
then FILE if given, then MEDIAROUTER__SECTION__KEY environment variables.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("token") {
        return token_cli::run(args.skip(1).collect());
    }
    let mut config_file: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(path) => config_file = Some(PathBuf::from(path)),
                None => return usage_error("--config needs a file"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("mediarouter {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument '{other}'")),
        }
    }
    let settings = match Settings::load(config_file.as_deref(), std::env::vars()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mediarouter: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings.log.filter);
    let system = System::new();
    match system.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("mediarouter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("mediarouter: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn socket_addr(address: &str, port: u16) -> SocketAddr {
    // Settings validated the address already.
    let ip: IpAddr = address.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    SocketAddr::new(ip, port)
}

async fn run(settings: Settings) -> Result<(), String> {
    let gate = access::Gate::new(&settings);
    let registry = Registry::new(
        Arc::new(settings.stream.clone()),
        Arc::clone(&gate),
        Arc::new(settings.rtsp.clone()),
        settings.rtmp.default_app.clone(),
        Arc::new(settings.vod.clone()),
    )
    .start();

    let workers = match settings.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
    let handles = arbiters.iter().map(Arbiter::handle).collect();

    if settings.rtmp.enabled {
        let address = socket_addr(&settings.rtmp.address, settings.rtmp.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen for RTMP on {address} (rtmp.port): {e}"))?;
        let conn_settings = Arc::new(rtmp::ConnectionSettings {
            rtmp: settings.rtmp.clone(),
            stream: settings.stream.clone(),
            vod: settings.vod.clone(),
            gate: Arc::clone(&gate),
        });
        actix_rt::spawn(rtmp::serve(
            listener,
            registry.clone(),
            conn_settings,
            handles,
        ));
    }

    let mut servers = Vec::new();
    let rest_state = Arc::new(http::rest::RestState {
        registry: registry.clone(),
        default_app: settings.rtmp.default_app.clone(),
        first_attempt_timeout: std::time::Duration::from_millis(
            settings.rtsp.connect_timeout_ms + 2_000,
        ),
        api_key: Some(settings.rest.api_key.clone()).filter(|k| !k.is_empty()),
        gate: Arc::clone(&gate),
    });
    if settings.rest.enabled {
        let address = socket_addr(&settings.rest.address, settings.rest.port);
        let state = Arc::clone(&rest_state);
        let server = HttpServer::new(move || {
            let state = Arc::clone(&state);
            App::new().configure(move |cfg| http::rest::configure(cfg, state))
        })
        .workers(1)
        .disable_signals()
        .bind(address)
        .map_err(|e| format!("cannot listen for REST on {address} (rest.port): {e}"))?
        .run();
        info!(%address, api_key = rest_state.api_key.is_some(), "REST API listening under /rest-api");
        if rest_state.api_key.is_none() && !address.ip().is_loopback() {
            warn!(%address, "the REST API controls the server and is open to the network without \
                an API key: set rest.api_key");
        }
        servers.push(server);
    }
    if settings.http.enabled {
        let address = socket_addr(&settings.http.address, settings.http.port);
        let state = Arc::new(http::web::WebState {
            web_root: PathBuf::from(&settings.http.web_root),
            signalling: settings.webrtc.enabled.then(|| {
                Arc::new(ws::SessionContext {
                    registry: registry.clone(),
                    webrtc: webrtc::WebrtcContext::new(
                        settings.webrtc.clone(),
                        Arc::new(settings.stream.clone()),
                    ),
                    default_app: settings.rtmp.default_app.clone(),
                    gate: Arc::clone(&gate),
                })
            }),
            media: settings.websocket.enabled.then(|| {
                Arc::new(ws::media::MediaContext {
                    registry: registry.clone(),
                    default_app: settings.rtmp.default_app.clone(),
                    settings: settings.websocket.clone(),
                    max_lag_ms: settings.stream.player_max_lag_ms,
                    gate: Arc::clone(&gate),
                })
            }),
            listings: settings.http.stream_list.then(|| Arc::clone(&rest_state)),
        });
        let server = HttpServer::new(move || {
            let state = Arc::clone(&state);
            App::new().configure(move |cfg| http::web::configure(cfg, &state))
        })
        // Signalling sessions and their WebRTC viewers live on these workers.
        .workers(workers)
        .on_connect(ws::media::record_socket)
        // WebSockets (signalling, media) never end on their own: a stop does not wait for them.
        .shutdown_timeout(2)
        .disable_signals()
        .bind(address)
        .map_err(|e| format!("cannot listen for HTTP on {address} (http.port): {e}"))?
        .run();
        info!(%address, "web pages listening");
        servers.push(server);
    }

    info!(
        version = env!("CARGO_PKG_VERSION"),
        workers, "mediarouter ready"
    );
    let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
    for server in servers {
        actix_rt::spawn(server);
    }
    wait_for_signal().await;
    info!("shutting down");
    stop_camera_pulls(&registry).await;
    for handle in handles {
        handle.stop(true).await;
    }
    for arbiter in arbiters {
        arbiter.stop();
    }
    Ok(())
}

/// Ends every camera pull, and refuses new ones, while the runtimes still run: an RTSP session
/// tears itself down from a task it spawns when dropped, which panics once the runtime is gone.
/// Bounded: a stop never waits long for this.
async fn stop_camera_pulls(registry: &Addr<Registry>) {
    let stop_all = async {
        let Ok(pulls) = registry.send(messages::ClosePulls).await else {
            return;
        };
        let stops = pulls.iter().map(|pull| {
            pull.send(messages::StopPull {
                reason: "server shutting down".into(),
            })
        });
        futures_util::future::join_all(stops).await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), stop_all).await;
}

async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
