//! `arq ls` and `arq nodes` at size: filters, sorting and paging done by Sesco, through
//! the real binaries (Sesco, the `arq` CLI) against hollow nodes. Bad filter values get a
//! clear error and a non-zero exit, and change nothing.

use std::path::PathBuf;
use std::process::{Command, Output};

use arq::proto::ErrorCode;
use arq::proto::message::{SessionFilter, SessionQuery};
use arq::proto::session::{AdmissionOutcome, SessionId};
use serde_json::Value;
use sesco_e2e::hollow::{HOLLOW_USERS, HollowCluster, HollowOptions, idle_request};
use sesco_e2e::{binary, text};

const NODES: u32 = 12;

struct Listing {
    cluster: HollowCluster,
    runtime: tokio::runtime::Runtime,
    alice: Vec<SessionId>,
    bob: Vec<SessionId>,
    /// alice's sessions that were terminated.
    ended: Vec<SessionId>,
}

impl Listing {
    /// 12 nodes; alice holds 6 sessions (2 of them then terminated), bob 4.
    fn start() -> Self {
        let cluster = HollowCluster::start(HollowOptions {
            nodes: NODES,
            ..HollowOptions::default()
        });
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut admitted = Vec::new();
        for ((user, password), count) in HOLLOW_USERS.into_iter().zip([6, 4]) {
            let client = runtime.block_on(cluster.sign_in(user, password)).unwrap();
            let mut ids = Vec::new();
            for _ in 0..count {
                match runtime
                    .block_on(client.request_session(idle_request()))
                    .unwrap()
                {
                    AdmissionOutcome::Admitted { session, .. } => ids.push(session.id),
                    rejected => panic!("rejected: {rejected:?}"),
                }
            }
            admitted.push((client, ids));
        }
        let (alice_client, alice) = &admitted[0];
        let ended = vec![alice[1], alice[4]];
        for id in &ended {
            runtime
                .block_on(alice_client.terminate_session(*id))
                .unwrap();
        }
        Self {
            alice: alice.clone(),
            bob: admitted[1].1.clone(),
            ended,
            cluster,
            runtime,
        }
    }

    fn password_file(&self, user: &str, password: &str) -> PathBuf {
        let path = self.cluster.dir.path().join(format!("{user}.password"));
        std::fs::write(&path, password).unwrap();
        path
    }

    /// `arq` as `user` (`admin`, `alice` or `bob`).
    fn arq(&self, user: &str, args: &[&str]) -> Output {
        let password = match user {
            "admin" => self.cluster.admin().1,
            _ => HOLLOW_USERS
                .iter()
                .find(|u| u.0 == user)
                .unwrap()
                .1
                .to_string(),
        };
        Command::new(binary("arq"))
            .args(["--server", &self.cluster.addr, "--user", user])
            .arg("--password-file")
            .arg(self.password_file(user, &password))
            .args(args)
            .env_remove("SESCO_TOKEN")
            .env_remove("SESCO_USER")
            .env("HOME", self.cluster.dir.path())
            .output()
            .expect("arq runs")
    }

    fn json(&self, user: &str, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.arq(user, &all);
        assert!(out.status.success(), "arq {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)))
    }

    fn ids(&self, user: &str, args: &[&str]) -> Vec<u64> {
        self.json(user, args)
            .as_array()
            .expect("a JSON list")
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect()
    }

    /// Fails unless `arq` refuses, saying `why`.
    fn refused(&self, user: &str, args: &[&str], why: &str) {
        let out = self.arq(user, args);
        assert!(
            !out.status.success(),
            "arq {args:?} should fail: {}",
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(why),
            "arq {args:?} should say '{why}': {}",
            text(&out)
        );
        assert!(out.stdout.is_empty(), "nothing listed: {}", text(&out));
    }
}

fn numbers(ids: &[SessionId]) -> Vec<u64> {
    ids.iter().map(|id| id.0).collect()
}

#[test]
fn lists_are_filtered_by_sesco() {
    let l = Listing::start();
    let live_alice: Vec<u64> = numbers(&l.alice)
        .into_iter()
        .filter(|id| !numbers(&l.ended).contains(id))
        .collect();
    assert_eq!(l.ids("admin", &["ls", "--user", "alice"]), live_alice);
    assert_eq!(l.ids("admin", &["ls", "--user", "bob"]), numbers(&l.bob));
    assert_eq!(
        l.ids("admin", &["ls"]).len(),
        live_alice.len() + l.bob.len()
    );
    // An ended state looks at ended sessions too.
    assert_eq!(
        l.ids("admin", &["ls", "--state", "terminated"]),
        numbers(&l.ended)
    );
    assert_eq!(
        l.ids("admin", &["ls", "--all", "--user", "alice"]),
        numbers(&l.alice)
    );
    assert_eq!(
        l.ids(
            "admin",
            &["ls", "--state", "running,terminated", "--user", "alice"]
        ),
        numbers(&l.alice)
    );
    assert_eq!(
        l.ids("admin", &["ls", "--application", "idle", "--user", "bob"]),
        numbers(&l.bob)
    );

    // By node: exactly the sessions placed there.
    let all = l.json("admin", &["ls"]);
    let node = all[0]["processes"][0]["node"].as_str().unwrap().to_string();
    let on_node: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["processes"][0]["node"] == node.as_str())
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(l.ids("admin", &["ls", "--node", &node]), on_node);

    // A user sees only their own sessions, and may not ask for another's.
    assert_eq!(l.ids("alice", &["ls"]), live_alice);
    assert_eq!(l.ids("alice", &["ls", "--user", "alice"]), live_alice);
    l.refused(
        "alice",
        &["ls", "--user", "bob"],
        "only admins may list the sessions of others",
    );
    assert_eq!(l.ids("bob", &["ls", "--all"]), numbers(&l.bob));

    // Nodes: by state, by the sessions they run, by name.
    let up = l.json("admin", &["nodes", "--state", "up"]);
    assert_eq!(up.as_array().unwrap().len(), NODES as usize);
    assert!(
        l.json("admin", &["nodes", "--state", "lost"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let bobs_nodes = l.json("admin", &["nodes", "--user", "bob"]);
    for n in bobs_nodes.as_array().unwrap() {
        let runs_bob = n["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| numbers(&l.bob).contains(&id.as_u64().unwrap()));
        assert!(runs_bob, "{} runs none of bob's sessions: {n}", n["name"]);
    }
    assert!(!bobs_nodes.as_array().unwrap().is_empty());
    let one = l.json("admin", &["nodes", "--node", &node]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["name"], node.as_str());

    // The old requests still answer as before.
    let (user, password) = HOLLOW_USERS[1];
    let client = l
        .runtime
        .block_on(l.cluster.sign_in(user, password))
        .unwrap();
    let old = l
        .runtime
        .block_on(client.list_sessions(SessionFilter::Live))
        .unwrap();
    assert_eq!(
        old.iter().map(|s| s.id.0).collect::<Vec<_>>(),
        numbers(&l.bob)
    );
    assert_eq!(
        l.runtime.block_on(client.list_nodes()).unwrap().len(),
        NODES as usize
    );
}

#[test]
fn lists_are_sorted_and_paged_by_sesco() {
    let l = Listing::start();
    let all = l.ids("admin", &["ls"]);
    let mut ascending = all.clone();
    ascending.sort();
    assert_eq!(all, ascending, "by id by default");
    let mut descending = ascending.clone();
    descending.reverse();
    assert_eq!(l.ids("admin", &["ls", "--reverse"]), descending);

    // By user, ties by id: alice's sessions, then bob's.
    let by_user = l.json("admin", &["ls", "--sort", "user"]);
    let users: Vec<&str> = by_user
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user"].as_str().unwrap())
        .collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(users, sorted);
    let by_user_reversed = l.json("admin", &["ls", "--sort", "user", "--reverse"]);
    assert_eq!(by_user_reversed[0]["user"], "bob");

    // By node.
    let by_node = l.json("admin", &["ls", "--sort", "node"]);
    let nodes: Vec<&str> = by_node
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["processes"][0]["node"].as_str().unwrap())
        .collect();
    let mut sorted = nodes.clone();
    sorted.sort();
    assert_eq!(nodes, sorted);

    // Pages: windows of the same order that together make the whole list.
    let first = l.ids("admin", &["ls", "--limit", "3"]);
    let second = l.ids("admin", &["ls", "--limit", "3", "--offset", "3"]);
    let rest = l.ids("admin", &["ls", "--offset", "6"]);
    assert_eq!(first, ascending[..3]);
    assert_eq!([first, second, rest].concat(), ascending);
    assert!(l.ids("admin", &["ls", "--offset", "1000"]).is_empty());
    let text = l.arq("admin", &["ls", "--limit", "2"]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains(&format!("2 of {} sessions shown", all.len())),
        "{}",
        sesco_e2e::text(&text)
    );

    // Nodes by name (numbers sort as text), by sessions, paged.
    let names: Vec<String> = l
        .json("admin", &["nodes", "--sort", "name"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let page = l.json("admin", &["nodes", "--limit", "4", "--offset", "4"]);
    let page: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(page, names[4..8]);
    let busiest = l.json("admin", &["nodes", "--sort", "sessions", "--reverse"]);
    let counts: Vec<usize> = busiest
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["sessions"].as_array().unwrap().len())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    assert!(counts[0] >= 1);
}

#[test]
fn bad_filter_values_are_refused_and_change_nothing() {
    let l = Listing::start();
    // Measured usage moves on by itself; everything else must not.
    let sessions = || {
        let mut all = l.json("admin", &["ls", "--all"]);
        for s in all.as_array_mut().unwrap() {
            for p in s["processes"].as_array_mut().unwrap() {
                p["usage"] = Value::Null;
            }
        }
        all
    };
    let before = sessions();
    let node_names = || -> Vec<Value> {
        let nodes = l.json("admin", &["nodes"]);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].clone())
            .collect()
    };
    let nodes_before = node_names();

    let refusals: [(&[&str], &str); 12] = [
        // Caught by arq: values that are not in the list, limits that are not counts.
        (
            &["ls", "--state", "bogus"],
            "invalid value 'bogus' for '--state",
        ),
        (
            &["ls", "--sort", "colour"],
            "invalid value 'colour' for '--sort",
        ),
        (&["ls", "--limit", "0"], "--limit"),
        (
            &["ls", "--limit", "many"],
            "invalid value 'many' for '--limit",
        ),
        (
            &["nodes", "--state", "down"],
            "invalid value 'down' for '--state",
        ),
        // Caught by Sesco: malformed names, names that do not exist.
        (&["ls", "--user", "Not A Name"], "user filter"),
        (
            &["ls", "--user", "nobody-at-all"],
            "no user 'nobody-at-all'",
        ),
        (
            &["ls", "--application", "nosuch"],
            "no application 'nosuch'",
        ),
        (&["ls", "--node", "nosuch"], "no node 'nosuch'"),
        (&["nodes", "--node", "nosuch"], "no node 'nosuch'"),
        (
            &["nodes", "--application", "nosuch"],
            "no application 'nosuch'",
        ),
        (&["nodes", "--user", "Bad!"], "user filter"),
    ];
    for (args, why) in refusals {
        l.refused("admin", args, why);
    }
    let refused = l.arq("admin", &["ls", "--node", "nosuch"]).status;
    assert_eq!(refused.code(), Some(1), "a list Sesco refuses exits with 1");

    // Pages out of range, sent by a client other than arq.
    let (admin, password) = l.cluster.admin();
    let client = l
        .runtime
        .block_on(l.cluster.sign_in(&admin, &password))
        .unwrap();
    for limit in [0, 1001] {
        let error = l
            .runtime
            .block_on(client.query_sessions(SessionQuery {
                limit,
                ..SessionQuery::default()
            }))
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::Invalid), "{error}");
        assert!(
            error.to_string().contains("a page holds 1 to 1000"),
            "{error}"
        );
    }

    assert!(sessions() == before, "sessions changed");
    assert_eq!(node_names(), nodes_before, "nodes unchanged");
}
