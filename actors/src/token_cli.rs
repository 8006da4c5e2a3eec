//! `mediarouter token`: mints a signed token (see `mediarouter_core::access::token`) with the
//! secret of an application from the same settings the server reads, or one given outright.
//!
//! Invariant: prints the token alone on stdout (scripts capture it); every error goes to stderr
//! with exit status 2.

use mediarouter_core::access::token::TokenRequest;
use mediarouter_core::settings::Settings;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: mediarouter token --stream NAME --action publish|play [options]

Prints a token that lets its holder publish or play one stream until it expires.

  --stream NAME     the stream's name within its application (required)
  --action ACTION   publish or play (required)
  --app KEY         the application (default: rtmp.default_app); its token_secret signs
  --ttl DURATION    how long the token is valid, e.g. 30s, 15m, 2h, 7d (default: 1h)
  --client TAG      names the holder: on a play token, who plays; on a private publish
                    token, the only one who may play it
  --private         on a publish token: the stream is played by one holder only
  --any-app         valid in every application signed by the same secret (without it the
                    token names --app and is valid there only)
  --secret SECRET   sign with this secret instead of the application's
  --config FILE     settings file, as for the server (environment variables apply too)";

pub fn run(args: Vec<String>) -> ExitCode {
    match mint_from(args) {
        Ok(Some(token)) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediarouter token: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The token the arguments ask for (`None`: help was asked for).
fn mint_from(args: Vec<String>) -> Result<Option<String>, String> {
    let mut args = args.into_iter();
    let mut request = TokenRequest {
        stream: String::new(),
        action: String::new(),
        app: String::new(),
        bind_app: true,
        ttl_seconds: 3600,
        client: None,
        private: false,
    };
    let (mut secret, mut config) = (None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--stream" => request.stream = value()?,
            "--action" => request.action = value()?,
            "--app" => request.app = value()?,
            "--client" => request.client = Some(value()?),
            "--secret" => secret = Some(value()?),
            "--config" | "-c" => config = Some(PathBuf::from(value()?)),
            "--ttl" => {
                request.ttl_seconds = humantime::parse_duration(&value()?)
                    .map_err(|e| format!("--ttl: {e}"))?
                    .as_secs()
            }
            "--private" => request.private = true,
            "--any-app" => request.bind_app = false,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let settings =
        Settings::load(config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
    if request.app.is_empty() {
        request.app = settings.rtmp.default_app.clone();
    }
    let secret = secret.unwrap_or_else(|| settings.app(&request.app).token_secret.clone());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    request.mint(&secret, now).map(|(token, _)| Some(token))
}
