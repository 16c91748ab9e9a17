//! Live reload of `promptgate serve`: new commits go live within
//! seconds, invalid states are refused while the old one keeps serving,
//! in-flight requests finish on the state they started with, bursts of
//! changes coalesce, and reloads under load fail no request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use promptgate::logstore::RequestStatus;
use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::http;
use crate::support::serve::{
    CHAT_PROMPT, Proxy, commit_main, commit_on, header, log_rows, metrics, post, proxy_scaffold,
    status, wait_status,
};

const CANARY_ROLLOUT: &str = "stable: refs/heads/main\ncanary:\n  ref: refs/heads/canary\n  weight: 100\n  prompts: [chat]\n";

fn chat_prompt(system: &str) -> String {
    CHAT_PROMPT.replace("You are terse.", system)
}

/// A scaffold with a `canary` branch and a rollout sending all `chat`
/// traffic to it; returns the canary commit.
fn canary_scaffold(url: &str) -> (crate::support::Scaffold, String) {
    let s = proxy_scaffold("openai", url, "");
    let main = commit_main(&s, &[("rollout.yaml", CANARY_ROLLOUT)], "Canary at 100%");
    let canary = commit_on(
        &s.root(),
        "canary",
        &main,
        &[("prompts/chat.yaml", &chat_prompt("Canary v1."))],
        "canary v1",
    );
    (s, canary)
}

async fn chat_version(p: &Proxy) -> (u16, String) {
    let (code, h, _) = post(
        &format!("{}/v1/chat/completions", p.url),
        &json!({"model": "prompt:chat", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    (code, header(&h, "x-promptgate-version"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_canary_commit_is_served_within_two_seconds_and_invalid_states_are_refused() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, v1) = canary_scaffold(&m.url());
    let p = Proxy::start(&s.root());
    let (code, version) = chat_version(&p).await;
    assert_eq!(code, 200);
    assert!(version.starts_with(&v1), "{version}");

    // A new commit on the canary branch.
    let v2 = commit_on(
        &s.root(),
        "canary",
        "canary",
        &[("prompts/chat.yaml", &chat_prompt("Canary v2."))],
        "v2",
    );
    let committed = Instant::now();
    loop {
        let (code, version) = chat_version(&p).await;
        assert_eq!(code, 200);
        if version.starts_with(&v2) {
            break;
        }
        assert!(
            committed.elapsed() < Duration::from_secs(2),
            "v2 not served 2 s after the commit (still {version})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A template error on the canary ref: refused, v2 keeps serving.
    let before = status(&p).await["reloads"]["failed"].as_u64().unwrap();
    let bad = commit_on(
        &s.root(),
        "canary",
        "canary",
        &[("prompts/chat.yaml", &chat_prompt("Broken {{ oops "))],
        "broken",
    );
    let (st, ok) = wait_status(&p, Duration::from_secs(10), |s| {
        s["reloads"]["failed"].as_u64().unwrap() > before
    })
    .await;
    assert!(ok, "{st:#}");
    assert_eq!(st["last_reload"]["ok"], false);
    assert_eq!(st["last_reload"]["commit"], bad.as_str(), "{st:#}");
    let err = st["last_reload"]["error"].as_str().unwrap();
    assert!(
        err.contains("prompts/chat.yaml") && err.contains("does not compile"),
        "{err}"
    );
    assert_eq!(st["canary"]["commit"], v2.as_str());
    let (code, version) = chat_version(&p).await;
    assert_eq!(code, 200);
    assert!(version.starts_with(&v2), "{version}");

    // An invalid rollout.yaml on the control ref: refused as well.
    let before = st["reloads"]["failed"].as_u64().unwrap();
    let bad_rollout = commit_main(
        &s,
        &[(
            "rollout.yaml",
            "stable: refs/heads/main\ncanary:\n  ref: refs/heads/canary\n  weight: lots\n",
        )],
        "typo",
    );
    let (st, ok) = wait_status(&p, Duration::from_secs(10), |s| {
        s["reloads"]["failed"].as_u64().unwrap() > before
    })
    .await;
    assert!(ok, "{st:#}");
    assert_eq!(st["last_reload"]["commit"], bad_rollout.as_str());
    assert!(
        st["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("rollout.yaml"),
        "{st:#}"
    );
    let (code, version) = chat_version(&p).await;
    assert_eq!(code, 200);
    assert!(version.starts_with(&v2), "{version}");
    let metrics = metrics(&p).await;
    assert!(metrics.contains("promptgate_reloads_total"), "{metrics}");

    // Fixing both goes live again.
    let v3 = commit_on(
        &s.root(),
        "canary",
        "canary",
        &[("prompts/chat.yaml", &chat_prompt("Canary v3."))],
        "v3",
    );
    commit_main(&s, &[("rollout.yaml", CANARY_ROLLOUT)], "fix");
    let (st, ok) = wait_status(&p, Duration::from_secs(10), |s| {
        s["canary"]["commit"] == v3.as_str() && s["last_reload"]["ok"] == true
    })
    .await;
    assert!(ok, "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_streams_in_flight_across_a_reload_finish_with_their_version() {
    let m = MockServer::start(MockConfig {
        // Streams of ~2 s: still running when the reload lands.
        token_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let (s, v1) = canary_scaffold(&m.url());
    let mut p = Proxy::start(&s.root());
    let words = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let started = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let url = format!("{}/v1/chat/completions", p.url);
        let body = json!({"model": "prompt:chat", "stream": true, "messages": [{"role": "user", "content": words}]});
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let r = http().post(url).json(&body).send().await.unwrap();
            let code = r.status().as_u16();
            let version = header(r.headers(), "x-promptgate-version");
            let mut stream = r.bytes_stream();
            let mut text = Vec::new();
            if let Some(first) = stream.next().await {
                text.extend_from_slice(&first.unwrap());
            }
            started.fetch_add(1, Ordering::SeqCst);
            while let Some(chunk) = stream.next().await {
                text.extend_from_slice(&chunk.unwrap());
            }
            (code, version, String::from_utf8(text).unwrap())
        }));
    }
    let t0 = Instant::now();
    while started.load(Ordering::SeqCst) < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "streams did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every stream is under way: move the canary.
    let v2 = commit_on(
        &s.root(),
        "canary",
        "canary",
        &[("prompts/chat.yaml", &chat_prompt("Canary v2."))],
        "v2",
    );
    let (st, ok) = wait_status(&p, Duration::from_secs(10), |s| {
        s["canary"]["commit"] == v2.as_str()
    })
    .await;
    assert!(ok, "{st:#}");
    assert!(
        st["in_flight"].as_u64().unwrap() > 0,
        "the reload happened while streams were running"
    );
    for t in tasks {
        let (code, version, text) = t.await.unwrap();
        assert_eq!(code, 200);
        assert!(version.starts_with(&v1), "{version}");
        assert!(
            text.contains("w39") && text.ends_with("data: [DONE]\n\n"),
            "{text}"
        );
    }
    let (_, version) = chat_version(&p).await;
    assert!(version.starts_with(&v2));
    assert_eq!(p.terminate(), Some(0));
    let rows = log_rows(&s.root());
    let streams: Vec<_> = rows.iter().filter(|r| r.stream).collect();
    assert_eq!(streams.len(), 50);
    assert!(
        streams
            .iter()
            .all(|r| r.commit == v1 && r.status == RequestStatus::Ok)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_fifty_commits_causes_one_reload() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, _) = canary_scaffold(&m.url());
    // The commits are made before the proxy starts (on a branch it does not
    // serve), so the burst itself is only the 50 moves of the canary branch,
    // as a rebase or a pull makes them: on a loaded machine, building each
    // commit could take longer than the debounce's longest wait.
    let mut commits = Vec::new();
    for i in 0..50 {
        let from = if i == 0 {
            "canary".to_string()
        } else {
            "burst".to_string()
        };
        commits.push(commit_on(
            &s.root(),
            "burst",
            &from,
            &[("prompts/chat.yaml", &chat_prompt(&format!("Burst {i}.")))],
            "burst",
        ));
    }
    let p = Proxy::start(&s.root());
    let before = status(&p).await;
    assert_eq!(before["reloads"]["ok"], 0);
    let repo = git2::Repository::open(s.root()).unwrap();
    for id in &commits {
        let oid = git2::Oid::from_str(id).unwrap();
        repo.reference("refs/heads/canary", oid, true, "burst")
            .unwrap();
    }
    let last = commits.last().unwrap().clone();
    let (st, ok) = wait_status(&p, Duration::from_secs(10), |s| {
        s["canary"]["commit"] == last.as_str()
    })
    .await;
    assert!(ok, "{st:#}");
    assert_eq!(st["reloads"]["ok"], 1, "{st:#}");
    assert_eq!(st["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_fail_no_request() {
    let m = MockServer::start(MockConfig {
        token_delay: Duration::from_millis(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let (s, _) = canary_scaffold(&m.url());
    let p = Proxy::start(&s.root());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let url = format!("{}/v1/chat/completions", p.url);
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let client = http();
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let stream = (i + c).is_multiple_of(2);
                let model = if i.is_multiple_of(3) { "prompt:capital" } else { "prompt:chat" };
                let body = json!({"model": model, "stream": stream, "user": format!("u{i}"),
                    "variables": if model == "prompt:capital" { json!({"country": "Peru"}) } else { Value::Null },
                    "messages": [{"role": "user", "content": "one two three"}]});
                let r = client.post(&url).json(&body).send().await.unwrap();
                let code = r.status().as_u16();
                let text = r.text().await.unwrap();
                if code == 200 && (!stream || text.ends_with("data: [DONE]\n\n")) {
                    ok += 1;
                } else {
                    failed.push(format!("{code}: {text}"));
                }
            }
            (ok, failed)
        }));
    }
    let admin = format!("{}/admin/reload", p.url);
    for i in 0..100 {
        if i % 10 == 0 {
            // Some reloads carry a real change.
            commit_on(
                &s.root(),
                "canary",
                "canary",
                &[("prompts/chat.yaml", &chat_prompt(&format!("Load {i}.")))],
                "load",
            );
        }
        let r = http().post(&admin).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 100, "only {ok} requests ran during the reloads");
    let st = status(&p).await;
    assert!(st["reloads"]["ok"].as_u64().unwrap() >= 100, "{st:#}");
    assert_eq!(st["reloads"]["failed"], 0);
}
