//! The cost and review pages wired to their modules: the production plane
//! over request logs written by `RequestLogger`, and the review queue of
//! `serve` (enqueue from the call page, decide from the review page, seen
//! through `/v1/review/...`) and of `promptgate ui` (listed read-only).

use chrono::{DateTime, Duration, Utc};
use promptgate::logstore::{RequestLogRow, Variant};
use promptgate::mock_llm::{MockConfig, MockServer};
use promptgate::review::{ReviewItem, ReviewQueue};
use serde_json::Value;

use super::{TOKEN, UiServer, countries, get, page, scaffold, start, traffic, wait_rows};
use crate::support::logs::write_rows_async;
use crate::support::serve::log_dir;

/// The cells of the rows of the page's `plane` table (header left out).
fn plane_rows(html: &str) -> Vec<Vec<String>> {
    let table = html
        .split("<table id=\"plane\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the plane table");
    table
        .split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, rest)| rest);
                    inner.split("</td>").next().unwrap_or("").to_string()
                })
                .collect()
        })
        .collect()
}

/// A form post from the dashboard's own origin with the token.
async fn form_post(base: &str, path: &str, body: &str) -> reqwest::Response {
    crate::support::http_no_redirect()
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_page_shows_one_point_per_version_and_model_with_the_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs");
    let start = DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    // (version, model, cost per call, calls passing of 10): small@a and
    // large@a are on the frontier, small@b costs more than small@a and
    // passes less: dominated.
    let design = [
        ("aaaaaaaa11", "small", 0.001, 9u32),
        ("aaaaaaaa11", "large", 0.004, 10),
        ("bbbbbbbb22", "small", 0.002, 5),
    ];
    let mut rows = Vec::new();
    for (d, (version, model, cost, passing)) in design.iter().enumerate() {
        for i in 0..10 {
            let mut r = RequestLogRow::new(
                format!("req-{d}-{i}"),
                start + Duration::seconds((d * 10 + i) as i64),
            );
            r.prompt_id = Some("capital".into());
            r.prompt_version = Some((*version).into());
            r.variant = Variant::Stable;
            r.model = (*model).into();
            r.cost = *cost;
            r.latency_ms = 50.0;
            r.online_pass = Some((i as u32) < *passing);
            rows.push(r);
        }
    }
    // A pass-through call nobody scored: no quality, not on the plane.
    let mut unscored = RequestLogRow::new("req-unscored", start);
    unscored.model = "other".into();
    unscored.cost = 0.5;
    rows.push(unscored);
    write_rows_async(&root, rows).await;

    let ui = UiServer::start(&["--logs", root.to_str().unwrap()]);
    let html = page(&format!("{}/ui/cost", ui.url)).await;
    let table = plane_rows(&html);
    assert_eq!(table.len(), 3, "one row per version and model: {table:?}");
    for (version, model, cost, passing) in design {
        let row = table
            .iter()
            .find(|r| r[0].contains(&version[..7]) && r[1] == model)
            .unwrap_or_else(|| panic!("{version} {model}: {table:?}"));
        assert_eq!(row[2], "10", "{row:?}");
        let quality: f64 = row[4].parse().unwrap();
        assert!(
            (quality - f64::from(passing) / 10.0).abs() < 1e-3,
            "{row:?}"
        );
        let on_frontier = version != "bbbbbbbb22";
        assert_eq!(
            row[5] == "yes",
            on_frontier,
            "{version} {model}: {row:?} ({cost})"
        );
    }
    assert!(!html.contains("other"), "the unscored call has no point");
    assert!(html.contains("<svg"), "the plane is drawn");

    // No queue under the root: the review page says so, nothing is created.
    let r = get(&format!("{}/ui/review", ui.url), false).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    assert!(!root.join("review").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_enqueues_from_the_call_page_and_records_the_review_form() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = scaffold(&m);
    let mut p = start(&s, &["--no-analyzer"]);
    let ids = traffic(&p, &countries(3), 0).await;
    wait_rows(&s.root(), ids.len());
    let id = &ids[1];

    // The call page offers the queue; its post puts the call there.
    let call = page(&format!("{}/ui/calls/{id}", p.url)).await;
    assert!(call.contains("id=\"enqueue\""), "{call}");
    let r = form_post(
        &p.url,
        &format!("/ui/calls/{id}/review"),
        "reason=looks+odd",
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/review");
    let r = form_post(&p.url, "/ui/calls/no-such-call/review", "reason=x").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no-such-call"));

    let client = crate::support::http();
    let items: Value = client
        .get(format!("{}/v1/review/items", p.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(items[0]["item"]["request_id"], id.as_str());
    assert_eq!(items[0]["item"]["reason"], "looks odd");
    assert!(!items[0]["item"]["output"].as_str().unwrap().is_empty());

    let review = page(&format!("{}/ui/review", p.url)).await;
    assert!(
        review.contains(&format!("data-item-id=\"{id}\"")),
        "{review}"
    );
    assert!(review.contains("class=\"review-form\""), "{review}");

    // A correction without text is refused and changes nothing.
    let r = form_post(
        &p.url,
        &format!("/ui/review/{id}"),
        "decision=correct&text=",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = form_post(
        &p.url,
        &format!("/ui/review/{id}"),
        "decision=correct&text=Lima+is+the+capital",
    )
    .await;
    assert_eq!(r.status(), 303);
    let item: Value = client
        .get(format!("{}/v1/review/items/{id}", p.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["status"], "decided", "{item:#}");
    assert_eq!(item["decision"]["kind"], "correct");
    assert_eq!(item["decision"]["expected"], "Lima is the capital");
    assert_eq!(item["decision"]["reviewer"], "dashboard");
    // A decision is final: a second form post is refused.
    let r = form_post(&p.url, &format!("/ui/review/{id}"), "decision=discard").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already decided"));
    let review = page(&format!("{}/ui/review", p.url)).await;
    assert!(review.contains("decided: correct by dashboard"), "{review}");
    assert!(!review.contains("class=\"review-form\""), "{review}");
    page(&format!("{}/ui/cost", p.url)).await;
    assert_eq!(p.terminate(), Some(0));

    // `promptgate ui` over the same folder lists the queue and changes nothing.
    let logs = log_dir(&s.root());
    let journal = std::fs::read(logs.join("review").join("journal.jsonl")).ok();
    let ui = UiServer::start(&["--logs", logs.to_str().unwrap()]);
    let review = page(&format!("{}/ui/review", ui.url)).await;
    assert!(
        review.contains(&format!("data-item-id=\"{id}\"")),
        "{review}"
    );
    assert!(review.contains("Read-only"), "{review}");
    let call = page(&format!("{}/ui/calls/{}", ui.url, ids[0])).await;
    assert!(!call.contains("id=\"enqueue\""), "{call}");
    let r = form_post(&ui.url, &format!("/ui/calls/{}/review", ids[0]), "reason=x").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("read-only"));
    let queue = ReviewQueue::for_log_root(&logs).unwrap();
    assert_eq!(queue.list().unwrap().len(), 1, "nothing enqueued by `ui`");
    if let Some(before) = journal {
        assert_eq!(
            std::fs::read(logs.join("review").join("journal.jsonl")).unwrap(),
            before
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_lists_a_queue_written_beside_it_and_refuses_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs");
    let row = {
        let mut r = RequestLogRow::new("req-queued", Utc::now());
        r.prompt_id = Some("capital".into());
        r.output = "Paris".into();
        r
    };
    write_rows_async(&root, vec![row.clone()]).await;
    let queue = ReviewQueue::for_log_root(&root).unwrap();
    queue
        .enqueue(vec![ReviewItem::from_row(
            &row,
            &[],
            None,
            "sampled".into(),
        )])
        .unwrap();

    let ui = UiServer::start(&["--logs", root.to_str().unwrap()]);
    let review = page(&format!("{}/ui/review", ui.url)).await;
    assert!(review.contains("data-item-id=\"req-queued\""), "{review}");
    assert!(review.contains("pending"), "{review}");
    let r = crate::support::http_no_redirect()
        .post(format!("{}/ui/review/req-queued", ui.url))
        .header("origin", &ui.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("decision=accept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
    let items = queue.list().unwrap();
    assert!(items[0].decision.is_none(), "no decision recorded");
}
