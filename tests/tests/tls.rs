//! TLS between all parts: `sesco tls init` makes the certificates, Sesco serves TLS, the
//! Lrmd, arq and the applications' control ports connect over it; a client that does not
//! speak TLS, trusts another authority, or reaches Sesco by a name its certificate does
//! not carry gets no connection.

use std::time::Duration;

use sesco_e2e::{ALICE, Cluster, ClusterOptions, binary, text, wait_for};

#[test]
fn every_part_speaks_tls_and_strangers_are_turned_away() {
    let cluster = Cluster::start_with(ClusterOptions {
        tls: true,
        ..ClusterOptions::default()
    });
    // The node registered over TLS (start_with waited for it); a session's process
    // registers its control port over TLS and gets its set-point.
    let session = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let id = session["id"].as_u64().unwrap();
    wait_for("the control port over TLS", Duration::from_secs(20), || {
        (cluster.show(id)["processes"][0]["control_registered"] == true).then_some(())
    });
    assert!(
        cluster
            .events()
            .iter()
            .any(|e| e["session"] == id && e["kind"].get("SetPointAcked").is_some()),
        "the application acknowledged its set-point over TLS"
    );

    let password = cluster.dir.path().join("alice.password");
    let arq = |extra: &[&str], server: &str| {
        let mut command = std::process::Command::new(binary("arq"));
        command
            .env_remove("SESCO_TLS_CA")
            .env("SESCO_USER", ALICE.0)
            .env("SESCO_PASSWORD_FILE", &password)
            .env("HOME", cluster.dir.path())
            .args(["--server", server])
            .args(extra)
            .arg("ls");
        command.output().unwrap()
    };
    std::fs::write(&password, ALICE.1).unwrap();
    let server = cluster.client_addr();
    let ca = cluster.tls_ca().unwrap();
    let ok = arq(&["--tls-ca", ca.to_str().unwrap()], &server);
    assert!(ok.status.success(), "{}", text(&ok));

    // Plain TCP: Sesco reads no TLS handshake and drops the connection.
    let plain = arq(&[], &server);
    assert!(!plain.status.success(), "{}", text(&plain));

    // Another authority.
    let other = cluster.dir.path().join("other-tls");
    let out = std::process::Command::new(binary("sesco"))
        .args(["tls", "init", "--name", "127.0.0.1", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stranger = arq(
        &["--tls-ca", other.join("ca.pem").to_str().unwrap()],
        &server,
    );
    assert!(!stranger.status.success());
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("certificate"),
        "{}",
        text(&stranger)
    );

    // A name the certificate does not carry.
    let port = server.rsplit(':').next().unwrap();
    let wrong_name = arq(
        &["--tls-ca", ca.to_str().unwrap()],
        &format!("localhost:{port}"),
    );
    assert!(!wrong_name.status.success());
    assert!(
        String::from_utf8_lossy(&wrong_name.stderr).contains("certificate"),
        "{}",
        text(&wrong_name)
    );

    // `sesco tls init` does not overwrite what exists.
    let again = std::process::Command::new(binary("sesco"))
        .args(["tls", "init", "--name", "127.0.0.1", "--dir"])
        .arg(cluster.tls_dir())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        text(&again)
    );
}
