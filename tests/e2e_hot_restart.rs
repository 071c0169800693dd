//! Envoy hot restart under load: a second Envoy process (epoch 1) takes the listener over
//! from the first while requests keep coming. Shared data does not survive the process, so
//! the new filter starts without a snapshot: every request is either decided on a snapshot
//! inside the bound or gets the failure mode, never anything else, and none fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{curl, envoy_command, free_port, localise, shipped_config, wait_until};

fn spawn(config: &Path, log: &Path, epoch: u32, base_id: Option<&str>, id_file: &Path) -> Child {
    let mut cmd = envoy_command();
    cmd.arg("-c")
        .arg(config)
        .args([
            "--concurrency",
            "2",
            "-l",
            "info",
            "--file-flush-interval-msec",
            "50",
        ])
        .args(["--restart-epoch", &epoch.to_string()])
        .args(["--drain-time-s", "2", "--parent-shutdown-time-s", "4"])
        .arg("--log-path")
        .arg(log);
    match base_id {
        Some(id) => cmd.args(["--base-id", id]),
        None => cmd
            .arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(id_file),
    };
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_hot_restart_under_load_fails_no_request_and_decides_none_on_a_stale_snapshot() {
    let (source, source_port) = support::start_source(consent_source::store::DEFAULT_PART_SIZE);
    let (_backend, backend_port) = support::start_backend();
    let (port, admin) = (free_port(), free_port());
    let yaml = localise(
        &support::for_reference_source(&shipped_config("envoy-demo.yaml")),
        port,
        admin,
        backend_port,
        source_port,
    );
    let dir = std::env::temp_dir().join(support::tag("hot-restart"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, yaml).unwrap();
    let id_file = dir.join("base-id");
    let url = format!("http://127.0.0.1:{port}/echo");
    let ask = |purpose: &str| {
        curl(&[
            "-H",
            "x-user-id: u-alice",
            "-H",
            &format!("x-data-purpose: {purpose}"),
            &url,
        ])
    };

    let mut first = spawn(&config, &dir.join("epoch0.log"), 0, None, &id_file);
    assert!(
        wait_until(Duration::from_secs(20), || ask("support.inquiries").status
            == 200),
        "epoch 0 never served"
    );
    let base_id = std::fs::read_to_string(&id_file)
        .unwrap()
        .trim()
        .to_string();

    let load = support::Load::start(url.clone());
    std::thread::sleep(Duration::from_millis(500));
    let restart_at = Instant::now();
    let mut second = spawn(
        &config,
        &dir.join("epoch1.log"),
        1,
        Some(&base_id),
        &id_file,
    );
    // The parent exits once the child has taken over and drained it.
    let parent_gone = wait_until(Duration::from_secs(15), || {
        matches!(first.try_wait(), Ok(Some(_)))
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.finish();
    let after_ok = ask("support.inquiries").status;
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    let _ = second.wait();
    if !parent_gone {
        let _ = first.kill();
    }
    let _ = first.wait();
    drop(source);
    assert!(parent_gone, "epoch 0 did not exit after the hot restart");
    assert_eq!(after_ok, 200, "epoch 1 serves with its own snapshot");

    let around: Vec<_> = seen.iter().filter(|(t, _, _)| *t >= restart_at).collect();
    assert!(
        around.len() > 20,
        "only {} requests across the restart",
        around.len()
    );
    let mut other = Vec::new();
    let mut unavailable = 0;
    for (_, status, body) in seen.iter() {
        match status {
            200 => {}
            403 if body.contains("snapshot_unavailable") => unavailable += 1,
            _ => other.push((status, body.chars().take(120).collect::<String>())),
        }
    }
    assert!(other.is_empty(), "failed or unexpected answers: {other:?}");
    eprintln!(
        "hot restart: {} requests, {} across the restart, {unavailable} answered snapshot_unavailable (new process, before its first fetch), none failed",
        seen.len(),
        around.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
