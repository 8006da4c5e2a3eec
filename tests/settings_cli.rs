//! Settings: embedded defaults, `--config FILE`, `MEDIAROUTER__SECTION__KEY` environment
//! overrides, and bad values that stop the start with the key or file named.

mod common;

use common::*;

/// Runs the server expecting it to refuse to start; returns its stderr.
fn expect_refusal(what: &str, args: &[&str], env: &[(String, String)], needle: &str) -> String {
    let (status, stderr, elapsed) = run_server_to_exit(args, env, secs(10));
    let status = status.unwrap_or_else(|| {
        panic!(
            "{what}: server still running after 10 s; stderr:\n{}",
            tail(&stderr, 30)
        )
    });
    assert!(!status.success(), "{what}: exited 0; stderr:\n{stderr}");
    assert!(elapsed < secs(5), "{what}: took {elapsed:?} to refuse");
    assert!(
        stderr.contains(needle),
        "{what}: stderr does not name {needle:?}:\n{}",
        tail(&stderr, 30)
    );
    stderr
}

#[test]
fn starts_with_embedded_defaults_and_env_ports() {
    let server = Server::start(&[]);
    // RTMP on the default app answers connect.
    RtmpClient::connect(server.rtmp_port, "live").expect("RTMP connect to live");
    // REST answers, and the HTTP listener is up (http.enabled defaults to true).
    let (status, v) = server.rest("stream/find_all", "{}");
    assert_eq!(status, 404, "{v}");
    assert!(
        port_accepts(server.http_port),
        "HTTP port {} not listening",
        server.http_port
    );
}

#[test]
fn config_file_sets_ports_and_values() {
    let dir = TempDir::new("config");
    let ports = Ports::free();
    let path = dir.join("mediarouter.toml");
    write_file(
        &path,
        &format!(
            "[rtmp]\naddress = \"127.0.0.1\"\nport = {}\n\n[http]\naddress = \"127.0.0.1\"\nport = {}\n\n\
             [rest]\naddress = \"127.0.0.1\"\nport = {}\n\n[stream]\nplay_wait_timeout_ms = 1500\n",
            ports.rtmp, ports.http, ports.rest
        ),
    );
    let server = Server::spawn(&["--config", path.to_str().unwrap()], &[], ports)
        .unwrap_or_else(|e| panic!("server with --config: {e}"));
    let mut c = RtmpClient::player(server.rtmp_port, "live", "absent")
        .expect("RTMP on the configured port");
    // The play wait from the file (1.5 s, default 10 s) is in force.
    let started = std::time::Instant::now();
    c.wait_status("NetStream.Play.StreamNotFound", secs(6))
        .unwrap_or_else(|seen| panic!("no StreamNotFound within 6 s: {}", summarize(&seen)));
    assert!(started.elapsed() < secs(5));
    let (status, _) = server.rest("stream/find_all", "{}");
    assert_eq!(status, 404);
}

#[test]
fn env_overrides_the_config_file() {
    let dir = TempDir::new("config-env");
    let ports = Ports::free();
    let file_port = free_port();
    let path = dir.join("mediarouter.toml");
    write_file(&path, &format!("[rtmp]\nport = {file_port}\n"));
    let server = Server::spawn(&["--config", path.to_str().unwrap()], &ports.env(), ports)
        .unwrap_or_else(|e| panic!("server with --config and env: {e}"));
    RtmpClient::connect(server.rtmp_port, "live").expect("RTMP on the env port");
    assert!(
        !port_accepts(file_port),
        "the config file's port is listening though env overrides it"
    );
}

#[test]
fn non_numeric_port_in_env_is_refused() {
    let mut env = Ports::free().env();
    env.retain(|(k, _)| k != "MEDIAROUTER__RTMP__PORT");
    env.push(("MEDIAROUTER__RTMP__PORT".into(), "abc".into()));
    expect_refusal("MEDIAROUTER__RTMP__PORT=abc", &[], &env, "rtmp.port");
}

#[test]
fn out_of_range_ports_are_refused() {
    for bad in ["70000", "0"] {
        let mut env = Ports::free().env();
        env.retain(|(k, _)| k != "MEDIAROUTER__RTMP__PORT");
        env.push(("MEDIAROUTER__RTMP__PORT".into(), bad.into()));
        expect_refusal(
            &format!("MEDIAROUTER__RTMP__PORT={bad}"),
            &[],
            &env,
            "rtmp.port",
        );
    }
}

#[test]
fn missing_config_file_is_refused() {
    let dir = TempDir::new("missing");
    let path = dir.join("does-not-exist.toml");
    let p = path.to_str().unwrap();
    expect_refusal(
        "missing --config file",
        &["--config", p],
        &Ports::free().env(),
        p,
    );
}

#[test]
fn unknown_key_in_config_file_is_refused() {
    let dir = TempDir::new("unknown-key");
    let path = dir.join("bad.toml");
    write_file(&path, "[rtmp]\nbogus_setting = 1\n");
    expect_refusal(
        "unknown key in config file",
        &["--config", path.to_str().unwrap()],
        &Ports::free().env(),
        "bogus_setting",
    );
}

#[test]
fn wrong_type_in_config_file_is_refused() {
    let dir = TempDir::new("wrong-type");
    let path = dir.join("bad.toml");
    write_file(&path, "[rtmp]\nport = \"abc\"\n");
    let mut env = Ports::free().env();
    env.retain(|(k, _)| k != "MEDIAROUTER__RTMP__PORT");
    expect_refusal(
        "rtmp.port = \"abc\" in config file",
        &["--config", path.to_str().unwrap()],
        &env,
        "rtmp.port",
    );
}

#[test]
fn unknown_env_key_is_refused() {
    let mut env = Ports::free().env();
    env.push(("MEDIAROUTER__RTMP__BOGUS_SETTING".into(), "1".into()));
    expect_refusal(
        "MEDIAROUTER__RTMP__BOGUS_SETTING=1",
        &[],
        &env,
        "bogus_setting",
    );
}
