//! Images and lineage over the real HTTP surface: image series logged per step and
//! fetched by URL, inputs declared between runs and datasets, and the lineage graph
//! coming back whole across a small ensemble; another team sees none of it.

use std::num::NonZeroU32;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sextant_cli::Backend;
use sextant_edge::rate_limit::{Limit, RateLimits};
use sextant_tests::{PNG, TestApp, error_code, fresh_aws_storage, text};

/// Stores a small artifact through the real upload flow.
fn node_ids(graph: &Value) -> Vec<String> {
    let mut ids: Vec<String> = graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| text(node, "id"))
        .collect();
    ids.sort();
    ids
}

fn edges(graph: &Value) -> Vec<(String, String)> {
    graph["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| (text(edge, "from"), text(edge, "to")))
        .collect()
}

#[tokio::test]
async fn the_lineage_of_an_ensemble_of_two_trainers_comes_back_whole() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "zoo").await;
    let mut ids = Vec::new();
    for name in ["trainer-a", "trainer-b", "ensemble"] {
        ids.push(text(
            &app.create_run(key, "zoo", json!({"name": name})).await,
            "id",
        ));
    }
    let [first, second, ensemble] = <[String; 3]>::try_from(ids).expect("three runs");
    let dataset = json!({"dataset": {"uri": "s3://data/cifar10", "hash": "00112233445566778899aabbccddeeff", "name": "cifar10"}});
    for trainer in [&first, &second] {
        let (status, _) = app
            .post(&format!("/v1/runs/{trainer}/inputs"), key, dataset.clone())
            .await;
        assert_eq!(status, StatusCode::CREATED);
        app.store_artifact(key, trainer, "model.pt", trainer.as_bytes(), Some("model"))
            .await;
        let (status, body) = app
            .post(
                &format!("/v1/runs/{ensemble}/inputs"),
                key,
                json!({"artifact": {"run": trainer, "path": "model.pt"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    app.store_artifact(key, &ensemble, "ensemble.pt", b"both", Some("model"))
        .await;

    let (status, graph) = app.get(&format!("/v1/runs/{ensemble}/lineage"), key).await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    let data = "dataset:00112233445566778899aabbccddeeff".to_owned();
    let artifact = |run: &str, path: &str| format!("{run}/{path}");
    let mut expected = vec![
        first.clone(),
        second.clone(),
        ensemble.clone(),
        data.clone(),
        artifact(&first, "model.pt"),
        artifact(&second, "model.pt"),
        artifact(&ensemble, "ensemble.pt"),
    ];
    expected.sort();
    assert_eq!(node_ids(&graph), expected);
    let edges = edges(&graph);
    for (from, to) in [
        (data.clone(), first.clone()),
        (data.clone(), second.clone()),
        (first.clone(), artifact(&first, "model.pt")),
        (artifact(&first, "model.pt"), ensemble.clone()),
        (second.clone(), artifact(&second, "model.pt")),
        (artifact(&second, "model.pt"), ensemble.clone()),
        (ensemble.clone(), artifact(&ensemble, "ensemble.pt")),
    ] {
        assert!(
            edges.contains(&(from.clone(), to.clone())),
            "missing {from} -> {to}"
        );
    }
    assert_eq!(edges.len(), 7);
    assert_eq!(graph["truncated"], false);

    // From a trainer: the dataset upstream, the ensemble downstream.
    let (_, from_trainer) = app.get(&format!("/v1/runs/{first}/lineage"), key).await;
    let ids = node_ids(&from_trainer);
    assert!(ids.contains(&data) && ids.contains(&ensemble), "{ids:?}");
    assert!(
        !ids.contains(&second),
        "a sibling is neither upstream nor downstream"
    );

    let (status, used) = app
        .get("/v1/datasets/00112233445566778899aabbccddeeff", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{used}");
    assert_eq!(used["dataset"]["uri"], "s3://data/cifar10");
    let mut users: Vec<String> = used["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| text(r, "id"))
        .collect();
    users.sort();
    let mut trainers = vec![first.clone(), second.clone()];
    trainers.sort();
    assert_eq!(users, trainers);
}

#[tokio::test]
async fn inputs_must_name_something_that_exists() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "zoo").await;
    let run = text(&app.create_run(key, "zoo", json!({})).await, "id");
    for (input, status, code) in [
        (
            json!({"artifact": {"run": run, "path": "missing.pt"}}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"artifact": {"run": "run_00000000000000000000000000", "path": "m.pt"}}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"dataset": {"uri": "s3://x", "hash": "xyz"}}),
            StatusCode::BAD_REQUEST,
            "invalid_hash",
        ),
        (
            json!({"dataset": {"uri": "", "hash": "00112233445566778899aabbccddeeff"}}),
            StatusCode::BAD_REQUEST,
            "invalid_uri",
        ),
        (
            json!({"model": {}}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ] {
        let (got, body) = app
            .post(&format!("/v1/runs/{run}/inputs"), key, input.clone())
            .await;
        assert_eq!(got, status, "{input}: {body}");
        assert_eq!(error_code(&body), code, "{input}");
    }
}

#[tokio::test]
async fn a_series_longer_than_a_page_lists_whole_a_page_at_a_time_on_the_embedded_store() {
    // Pages of the default (and largest) size.
    a_series_longer_than_a_page_lists_whole_a_page_at_a_time(Backend::Embedded, 1_201, None).await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn a_series_longer_than_a_page_lists_whole_a_page_at_a_time_on_dynamodb() {
    let (config, _, _) = fresh_aws_storage().await;
    a_series_longer_than_a_page_lists_whole_a_page_at_a_time(Backend::Aws(config), 25, Some(10))
        .await;
}

/// A listing answers a page of images and a cursor to the next, so a series longer
/// than a page comes back whole, once, in order, also when a page ends inside a step.
async fn a_series_longer_than_a_page_lists_whole_a_page_at_a_time(
    backend: Backend,
    logged: usize,
    limit: Option<usize>,
) {
    // One client logs more images than the per-key burst allows; lift the limits.
    let unlimited = Limit {
        per_minute: NonZeroU32::MAX,
        burst: NonZeroU32::MAX,
    };
    let app = TestApp::spawn_adjusted(backend, |config| {
        config.rate_limits = RateLimits {
            team: unlimited,
            credential: unlimited,
            address: unlimited,
        }
    })
    .await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "zoo").await;
    let run = text(&app.create_run(key, "zoo", json!({})).await, "id");
    // Three images a step, so page boundaries fall inside steps.
    let posts = (0..logged).map(|n| {
        let (app, run) = (&app, &run);
        async move {
            let mut image = PNG.to_vec();
            image.extend_from_slice(&n.to_le_bytes());
            let (status, body) = app
                .post_image(key, run, &format!("series=s&step={}", n / 3), &image)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    });
    futures::stream::iter(posts)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    let listing = |query: String| {
        let limit = limit
            .map(|limit| format!("&limit={limit}"))
            .unwrap_or_default();
        format!("/v1/runs/{run}/images/s?{query}{limit}")
    };
    let steps_and_ids = |page: &Value| -> Vec<(i64, String)> {
        page["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|image| (image["step"].as_i64().unwrap(), text(image, "id")))
            .collect()
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = Vec::new();
    loop {
        let (status, page) = app.get(&listing(format!("cursor={cursor}")), key).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let images = steps_and_ids(&page);
        seen.extend(images.iter().cloned());
        pages.push(images.len());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let page_size = limit.unwrap_or(1_000);
    assert_eq!(pages.len(), logged.div_ceil(page_size), "{pages:?}");
    assert!(pages.iter().all(|&size| size <= page_size), "{pages:?}");
    assert_eq!(seen.len(), logged);
    let mut ordered = seen.clone();
    ordered.sort();
    ordered.dedup();
    assert_eq!(seen, ordered, "every image once, in step order");

    // A cursor keeps to the range it is used with: from inside the first page's last
    // step to a few steps on.
    let (_, first) = app.get(&listing(String::new()), key).await;
    let cursor = text(&first, "next_cursor");
    let to = seen[page_size - 1].0 + 2;
    let (_, ranged) = app
        .get(&listing(format!("to={to}&cursor={cursor}")), key)
        .await;
    let expected: Vec<(i64, String)> = seen[page_size..]
        .iter()
        .filter(|(step, _)| *step <= to)
        .cloned()
        .collect();
    assert_eq!(steps_and_ids(&ranged), expected, "{ranged}");
    assert!(ranged["next_cursor"].is_null(), "{ranged}");

    for (query, code) in [
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
    ] {
        let (status, body) = app
            .get(&format!("/v1/runs/{run}/images/s?{query}"), key)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}");
    }
}

#[tokio::test]
async fn images_are_logged_per_step_listed_in_order_and_fetched_by_url() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "zoo").await;
    let run = text(&app.create_run(key, "zoo", json!({})).await, "id");
    for step in [30, 10, 20] {
        let mut image = PNG.to_vec();
        image.push(step as u8);
        let (status, body) = app
            .post_image(
                key,
                &run,
                &format!("series=samples/val&step={step}"),
                &image,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["content_type"], "image/png");
    }
    let (_, series) = app.get(&format!("/v1/runs/{run}/images"), key).await;
    assert_eq!(
        series["series"]["samples/val"],
        json!({"count": 3, "first_step": 10, "last_step": 30})
    );

    let (status, listed) = app
        .get(&format!("/v1/runs/{run}/images/samples/val?from=15"), key)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let images = listed["images"].as_array().unwrap();
    let steps: Vec<i64> = images.iter().map(|i| i["step"].as_i64().unwrap()).collect();
    assert_eq!(steps, [20, 30]);
    let fetched = app
        .client
        .get(text(&images[0], "url"))
        .send()
        .await
        .unwrap();
    assert!(fetched.status().is_success());
    assert_eq!(fetched.bytes().await.unwrap().last(), Some(&20));

    let (_, one) = app
        .get(&format!("/v1/runs/{run}/images/samples/val?step=10"), key)
        .await;
    assert_eq!(one["images"].as_array().unwrap().len(), 1);

    let (status, body) = app
        .post_image(key, &run, "series=samples/val&step=1", b"GIF89a...")
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_image")
    );
    let (status, body) = app
        .post_image(key, &run, "series=bad%23name&step=1", PNG)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_series_name")
    );

    // An ended run takes no more images, like points.
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/runs/{run}"),
            Some(key),
            Some(json!({"status": "succeeded"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post_image(key, &run, "series=samples/val&step=40", PNG)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::CONFLICT, "run_ended")
    );

    // Deleting the run deletes the images' objects.
    let (status, _) = app.delete(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = app
        .client
        .get(text(&images[0], "url"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_teams_images_inputs_lineage_and_datasets_answer_404() {
    let app = TestApp::spawn().await;
    let owner = app.signup().await;
    let stranger = app.signup().await;
    app.create_project(&owner.api_key, "zoo").await;
    let run = text(
        &app.create_run(&owner.api_key, "zoo", json!({})).await,
        "id",
    );
    let (status, _) = app
        .post_image(&owner.api_key, &run, "series=s&step=1", PNG)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let hash = "00112233445566778899aabbccddeeff";
    let (status, _) = app
        .post(
            &format!("/v1/runs/{run}/inputs"),
            &owner.api_key,
            json!({"dataset": {"uri": "s3://d", "hash": hash}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    for path in [
        format!("/v1/runs/{run}/images"),
        format!("/v1/runs/{run}/images/s"),
        format!("/v1/runs/{run}/inputs"),
        format!("/v1/runs/{run}/lineage"),
        format!("/v1/datasets/{hash}"),
    ] {
        let (status, body) = app.get(&path, &stranger.api_key).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (status, _) = app
        .post_image(&stranger.api_key, &run, "series=s&step=2", PNG)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/v1/runs/{run}/inputs"),
            &stranger.api_key,
            json!({"dataset": {"uri": "s3://d", "hash": hash}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// An upload whose answer was lost is sent again by the client; the image must be
/// stored, and counted as a logged point, once.
#[tokio::test]
async fn an_image_sent_again_is_stored_and_counted_once() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "zoo").await;
    let run = text(&app.create_run(key, "zoo", json!({})).await, "id");
    let mut other = PNG.to_vec();
    other.push(7);
    let (status, first) = app.post_image(key, &run, "series=s&step=1", PNG).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = app.post_image(key, &run, "series=s&step=1", PNG).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again, first);
    // Other bytes at the same step, or the same bytes at another step, are new images.
    for query in ["series=s&step=1", "series=s&step=2"] {
        let body = if query.ends_with('1') {
            &other[..]
        } else {
            PNG
        };
        let (status, image) = app.post_image(key, &run, query, body).await;
        assert_eq!(status, StatusCode::CREATED, "{image}");
        assert_ne!(image["id"], first["id"]);
    }
    // A retry of an image stored before the run ended is answered as it was.
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/runs/{run}"),
            Some(key),
            Some(json!({"status": "succeeded"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, late) = app.post_image(key, &run, "series=s&step=1", PNG).await;
    assert_eq!(status, StatusCode::CREATED, "{late}");
    assert_eq!(late, first);
    let (_, series) = app.get(&format!("/v1/runs/{run}/images"), key).await;
    assert_eq!(series["series"]["s"]["count"], 3, "{series}");
    let (_, listed) = app.get(&format!("/v1/runs/{run}/images/s"), key).await;
    assert_eq!(listed["images"].as_array().unwrap().len(), 3, "{listed}");
}
