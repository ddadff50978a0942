//! The statement cache: ad-hoc k-NN queries that differ only in their query vectors are planned
//! once and answer exactly as freshly planned ones, after writes and re-created collections too;
//! `EXPLAIN` says whether the cache serves a query.

use super::*;

/// `docs`' rows (as `create_docs` writes them) and any added by a test: id and embedding.
const DOCS: [(i64, [f32; 4]); 3] = [
    (1, [1.0, 0.0, 0.0, 0.0]),
    (2, [0.0, 1.0, 0.0, 0.0]),
    (3, [0.0, 0.0, 1.0, 0.0]),
];

/// The search, with `query` written in it.
fn search(query: [f32; 4]) -> String {
    format!(
        "SELECT id FROM docs ORDER BY l2_distance(embedding, [{}, {}, {}, {}]) LIMIT 2",
        query[0], query[1], query[2], query[3]
    )
}

/// The two nearest of `rows` to `query` by L2 distance, computed here.
fn nearest(rows: &[(i64, [f32; 4])], query: [f32; 4]) -> Vec<Vec<String>> {
    let mut by_distance: Vec<(f32, i64)> = rows
        .iter()
        .map(|(id, v)| {
            let d: f32 = v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, *id)
        })
        .collect();
    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_distance
        .iter()
        .take(2)
        .map(|(_, id)| vec![id.to_string()])
        .collect()
}

/// The note `EXPLAIN` adds about the statement cache.
async fn cache_note(client: &mut Client, sql: &str) -> Option<String> {
    rows(client, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .find(|row| row[0] == "statement_cache")
        .map(|row| row[1].clone())
}

#[tokio::test]
async fn queries_differing_in_their_vectors_share_one_plan() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;
    let queries = [
        [0.9, 0.1, 0.0, 0.0],
        [0.0, 0.2, 0.9, 0.0],
        [0.1, 0.8, 0.3, 0.0],
        [0.5, 0.0, 0.6, 0.1],
    ];
    assert_eq!(
        cache_note(&mut client, &search(queries[0]))
            .await
            .as_deref(),
        Some("miss: the query's next execution plans its shape and caches it")
    );
    let (made, reused) = plan_counts(&mut client).await;
    for query in queries {
        assert_eq!(
            rows(&mut client, &search(query)).await,
            nearest(&DOCS, query)
        );
    }
    let (made_after, reused_after) = plan_counts(&mut client).await;
    assert_eq!(made_after - made, 1, "one plan for the shape");
    assert_eq!(reused_after - reused, queries.len() as u64 - 1);
    let note = cache_note(&mut client, &search([0.3, 0.3, 0.3, 0.3])).await;
    assert!(
        note.as_deref().is_some_and(|n| n.starts_with("hit")),
        "{note:?}"
    );
    // Statements without a vector say nothing of the cache.
    assert_eq!(cache_note(&mut client, "SELECT id FROM docs").await, None);

    // A row written since is found.
    client
        .execute_update(
            "INSERT INTO docs VALUES (4, 'delta', [0, 0, 0, 1])".into(),
            None,
        )
        .await
        .expect("insert");
    let mut rows_now = DOCS.to_vec();
    rows_now.push((4, [0.0, 0.0, 0.0, 1.0]));
    let query = [0.0, 0.0, 0.1, 0.9];
    assert_eq!(
        rows(&mut client, &search(query)).await,
        nearest(&rows_now, query)
    );

    // Re-created: the new collection's rows.
    for sql in [
        "DROP TABLE docs",
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(4))",
        "INSERT INTO docs VALUES (40, 'x', [0, 0, 0, 1]), (41, 'y', [1, 1, 1, 1])",
    ] {
        client.execute_update(sql.into(), None).await.expect(sql);
    }
    let fresh = [(40, [0.0, 0.0, 0.0, 1.0]), (41, [1.0, 1.0, 1.0, 1.0])];
    assert_eq!(
        rows(&mut client, &search(query)).await,
        nearest(&fresh, query)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_column_named_after_a_vector_is_never_served_from_the_cache() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;
    let unaliased =
        |x: f32| format!("SELECT l2_distance(embedding, [{x}, 0, 0, 0]) FROM docs WHERE id = 1");
    let (made, reused) = plan_counts(&mut client).await;
    for x in [1.0, 2.0] {
        let batches = query(&mut client, &unaliased(x)).await;
        let name = batches[0].schema().field(0).name().clone();
        assert!(name.contains(&format!("{x}")), "{name}");
        assert!(!name.contains('$'), "{name}");
        let expected = (1.0 - x) * (1.0 - x);
        assert_eq!(
            quiver_tests::format_rows(&batches),
            [[expected.to_string()]]
        );
    }
    let (made_after, reused_after) = plan_counts(&mut client).await;
    assert_eq!(reused_after, reused);
    assert!(made_after - made >= 2);
    let note = cache_note(&mut client, &unaliased(3.0)).await;
    assert!(
        note.as_deref().is_some_and(|n| n.starts_with("not cached")),
        "{note:?}"
    );
    server.shutdown().await;
}
