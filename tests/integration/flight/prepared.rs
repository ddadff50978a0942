//! Prepared statements: schemas at prepare time, bound parameters (vectors included), updates,
//! and commands that wait for their execution.

use arrow::array::{ArrayRef, ListArray};
use arrow::datatypes::{Float32Type, Float64Type};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandPreparedStatementQuery, ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor};
use prost::Message;

use super::*;

const NEAREST: &str = "SELECT id, l2_distance(embedding, $1) AS d FROM docs ORDER BY d LIMIT 3";

fn one_param(column: ArrayRef) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "$1",
        column.data_type().clone(),
        true,
    )]));
    RecordBatch::try_new(schema, vec![column]).expect("params")
}

#[tokio::test]
async fn a_vector_binds_to_a_prepared_search() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;

    let mut statement = client.prepare(NEAREST.into(), None).await.expect("prepare");
    let dataset = statement.dataset_schema().expect("dataset schema").clone();
    let names: Vec<_> = dataset.fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "d"]);
    assert_eq!(
        statement.parameter_schema().expect("params").fields().len(),
        1
    );

    // A FixedSizeList<Float32, 4>, as Quiver stores vectors.
    statement
        .set_parameters(one_param(Arc::new(vectors(4, &[0.0, 0.0, 0.9, 0.1]))))
        .expect("bind");
    let info = statement.execute().await.expect("execute");
    let found = quiver_tests::format_rows(&fetch(&mut client, info).await.expect("fetch"));
    let ids: Vec<&str> = found.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["3", "1", "2"]);

    // A List<Float32>, as most clients send a list of numbers.
    let list = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![Some(vec![
        Some(0.9),
        Some(0.1),
        Some(0.0),
        Some(0.0),
    ])]);
    statement
        .set_parameters(one_param(Arc::new(list)))
        .expect("bind");
    let info = statement.execute().await.expect("execute");
    let found = quiver_tests::format_rows(&fetch(&mut client, info).await.expect("fetch"));
    assert_eq!(found[0][0], "1");

    statement.close().await.expect("close");
    server.shutdown().await;
}

#[tokio::test]
async fn parameter_sets_run_one_after_the_other() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;

    let mut insert = client
        .prepare("INSERT INTO docs VALUES ($1, $2, $3)".into(), None)
        .await
        .expect("prepare insert");
    assert_eq!(insert.parameter_schema().expect("params").fields().len(), 3);
    insert
        .set_parameters(docs_batch(
            &[10, 11],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        ))
        .expect("bind");
    assert_eq!(insert.execute_update().await.expect("insert"), 2);

    // Many rows of parameters are one write: a failing row (a duplicate key) leaves none of
    // them written.
    insert
        .set_parameters(docs_batch(&[20, 21, 10], &[0.0; 12]))
        .expect("bind");
    let err = status(insert.execute_update().await.expect_err("duplicate key"));
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{}", err.message());
    assert_eq!(
        rows(
            &mut client,
            "SELECT count(*) FROM docs WHERE id IN (20, 21)"
        )
        .await,
        vec![vec!["0"]]
    );

    let mut lookup = client
        .prepare("SELECT title FROM docs WHERE id = $1".into(), None)
        .await
        .expect("prepare lookup");
    lookup
        .set_parameters(one_param(Arc::new(Int64Array::from(vec![11, 1]))))
        .expect("bind");
    let info = lookup.execute().await.expect("execute");
    assert_eq!(
        quiver_tests::format_rows(&fetch(&mut client, info).await.expect("fetch")),
        vec![vec!["doc 11"], vec!["alpha"]]
    );

    // Values convert to the placeholder's type: a list of doubles into a VECTOR(4) column.
    let embedding = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![
        Some(0.5),
        Some(0.5),
        Some(0.0),
        Some(0.0),
    ])]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("$1", DataType::Int64, false),
        Field::new("$2", DataType::Utf8, true),
        Field::new("$3", embedding.data_type().clone(), true),
    ]));
    let doubles = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![12])),
            Arc::new(StringArray::from(vec!["twelve"])),
            Arc::new(embedding),
        ],
    )
    .expect("batch");
    insert.set_parameters(doubles).expect("bind");
    assert_eq!(insert.execute_update().await.expect("insert"), 1);
    assert_eq!(
        rows(&mut client, "SELECT embedding FROM docs WHERE id = 12").await,
        vec![vec!["[0.5, 0.5, 0, 0]"]]
    );

    // Text binds to a vector parameter as pgvector reads it; another dimension is refused
    // naming the parameter.
    let text = |id: i64, vector: &str| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, false),
            Field::new("$2", DataType::Utf8, true),
            Field::new("$3", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![id])),
                Arc::new(StringArray::from(vec!["text"])),
                Arc::new(StringArray::from(vec![vector])),
            ],
        )
        .expect("batch")
    };
    insert
        .set_parameters(text(13, "[0.25, 0, 1, 2]"))
        .expect("bind");
    assert_eq!(insert.execute_update().await.expect("insert"), 1);
    assert_eq!(
        rows(&mut client, "SELECT embedding FROM docs WHERE id = 13").await,
        vec![vec!["[0.25, 0, 1, 2]"]]
    );
    insert.set_parameters(text(14, "[1, 2, 3]")).expect("bind");
    let err = status(insert.execute_update().await.expect_err("three dimensions"));
    assert_refused(
        &err,
        tonic::Code::InvalidArgument,
        "parameter $3 is VECTOR(4) but got a vector of 3 dimensions",
    );

    // The wrong number of parameters is refused when bound.
    lookup
        .set_parameters(docs_batch(&[1], &[0.0; 4]))
        .expect("set");
    let err = status(
        lookup
            .execute()
            .await
            .expect_err("three values for one parameter"),
    );
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("1 parameter(s) but 3"),
        "{}",
        err.message()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn commands_run_when_executed_not_when_prepared() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut create = client
        .prepare("CREATE TABLE later (id BIGINT)".into(), None)
        .await
        .expect("prepare");
    assert!(create.dataset_schema().expect("schema").fields().is_empty());
    let err = query_error(&mut client, "SELECT * FROM later").await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    create.execute_update().await.expect("run");
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM later").await,
        vec![vec!["0"]]
    );

    // A closed statement's handle is gone.
    let request = ActionCreatePreparedStatementRequest {
        query: "SELECT 1".into(),
        transaction_id: None,
    };
    let mut results = client
        .do_action(Action::new(
            "CreatePreparedStatement",
            request.as_any().encode_to_vec(),
        ))
        .await
        .expect("prepare");
    let created = results
        .message()
        .await
        .expect("result")
        .expect("one result");
    let created: ActionCreatePreparedStatementResult = Any::decode(created.body)
        .expect("any")
        .unpack()
        .expect("unpack")
        .expect("right type");
    let handle = created.prepared_statement_handle;
    let execute = FlightDescriptor::new_cmd(
        CommandPreparedStatementQuery {
            prepared_statement_handle: handle.clone(),
        }
        .as_any()
        .encode_to_vec(),
    );
    assert!(client
        .inner_mut()
        .get_flight_info(execute.clone())
        .await
        .is_ok());
    let close = ActionClosePreparedStatementRequest {
        prepared_statement_handle: handle,
    };
    client
        .do_action(Action::new(
            "ClosePreparedStatement",
            close.as_any().encode_to_vec(),
        ))
        .await
        .expect("close");
    let err = client
        .inner_mut()
        .get_flight_info(execute)
        .await
        .expect_err("closed");
    assert_eq!(err.code(), tonic::Code::NotFound);
    server.shutdown().await;
}

/// The ids of a prepared search for `query`, and of the same statement with the vector written
/// in it.
async fn prepared_and_literal(
    client: &mut Client,
    statement: &mut arrow_flight::sql::client::PreparedStatement<tonic::transport::Channel>,
    query: [f32; 4],
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    statement
        .set_parameters(one_param(Arc::new(vectors(4, &query))))
        .expect("bind");
    let info = statement.execute().await.expect("execute");
    let prepared = quiver_tests::format_rows(&fetch(client, info).await.expect("fetch"));
    let literal = NEAREST.replace(
        "$1",
        &format!("[{}, {}, {}, {}]", query[0], query[1], query[2], query[3]),
    );
    (prepared, rows(client, &literal).await)
}

/// 300 more rows in `docs` on a 4-dimensional grid, and an HNSW index over every row.
async fn index_docs(client: &mut Client) {
    let rows: Vec<String> = (0..300)
        .map(|i| {
            let v = [i % 7, (i / 7) % 6, i % 5, i / 35];
            format!(
                "({}, 'grid', [{}, {}, {}, {}])",
                10 + i,
                v[0],
                v[1],
                v[2],
                v[3]
            )
        })
        .collect();
    for sql in [
        format!("INSERT INTO docs VALUES {}", rows.join(", ")),
        "CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops)".to_string(),
    ] {
        client.execute_update(sql, None).await.expect("index docs");
    }
}

/// The rows of [`NEAREST`] for the vector `query` (as text), its distance named `alias`: a
/// statement of a shape of its own, so planned afresh.
async fn planned_afresh(client: &mut Client, query: &str, alias: &str) -> Vec<Vec<String>> {
    let sql = format!(
        "SELECT id, l2_distance(embedding, {query}) AS {alias} FROM docs ORDER BY {alias} LIMIT 3"
    );
    rows(client, &sql).await
}

/// Executions that ran a physical plan kept from an earlier one, from `GetServerInfo`.
async fn physical_plans_reused(client: &mut Client) -> u64 {
    server_info(client).await["physical_plans_reused"]
        .as_u64()
        .expect("physical_plans_reused")
}

#[tokio::test]
async fn an_index_search_binds_its_vector_into_a_kept_physical_plan() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;
    index_docs(&mut client).await;
    let queries = [
        [0.31, 2.47, 1.13, 3.71],
        [5.62, 0.18, 3.94, 6.27],
        [2.09, 4.83, 0.52, 1.36],
        [6.4, 5.7, 4.1, 8.2],
    ];
    let text = |q: &[f32; 4]| format!("[{}, {}, {}, {}]", q[0], q[1], q[2], q[3]);

    // Prepared: the first execution plans and keeps its physical plan; the others bind into it.
    let mut statement = client.prepare(NEAREST.into(), None).await.expect("prepare");
    let before = physical_plans_reused(&mut client).await;
    for (i, query) in queries.iter().enumerate() {
        statement
            .set_parameters(one_param(Arc::new(vectors(4, query))))
            .expect("bind");
        let info = statement.execute().await.expect("execute");
        let prepared = quiver_tests::format_rows(&fetch(&mut client, info).await.expect("fetch"));
        let fresh = planned_afresh(&mut client, &text(query), &format!("d{i}")).await;
        assert_eq!(prepared, fresh, "query {query:?}");
    }
    let reused = physical_plans_reused(&mut client).await - before;
    assert_eq!(reused, queries.len() as u64 - 1);

    // Ad hoc, one shape: the statement cache keeps the physical plan the same way.
    let before = physical_plans_reused(&mut client).await;
    for (i, query) in queries.iter().enumerate() {
        let literal = rows(&mut client, &NEAREST.replace("$1", &text(query))).await;
        let fresh = planned_afresh(&mut client, &text(query), &format!("e{i}")).await;
        assert_eq!(literal, fresh, "query {query:?}");
    }
    let reused = physical_plans_reused(&mut client).await - before;
    assert_eq!(reused, queries.len() as u64 - 1);

    // A write: the next execution plans again and finds the new row.
    client
        .execute_update(
            "INSERT INTO docs VALUES (999, 'new', [6.4, 5.7, 4.1, 8.2])".into(),
            None,
        )
        .await
        .expect("insert");
    let before = physical_plans_reused(&mut client).await;
    statement
        .set_parameters(one_param(Arc::new(vectors(4, &queries[3]))))
        .expect("bind");
    let info = statement.execute().await.expect("execute");
    let prepared = quiver_tests::format_rows(&fetch(&mut client, info).await.expect("fetch"));
    assert_eq!(prepared[0][0], "999");
    assert_eq!(physical_plans_reused(&mut client).await, before);
    server.shutdown().await;
}

#[tokio::test]
async fn a_prepared_search_is_planned_once_and_follows_its_collection() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;
    let mut statement = client.prepare(NEAREST.into(), None).await.expect("prepare");
    // No two rows at the same distance from any query: the order is defined.
    let queries = [
        [0.1, 0.0, 0.9, 0.1],
        [1.0, 0.1, 0.0, 0.0],
        [0.2, 0.8, 0.1, 0.0],
        [0.5, 0.4, 0.6, 0.5],
        [0.3, 0.0, 0.1, 1.0],
    ];
    let (made_before, reused_before) = plan_counts(&mut client).await;
    for query in queries {
        let (prepared, literal) = prepared_and_literal(&mut client, &mut statement, query).await;
        assert_eq!(prepared, literal, "query {query:?}");
    }
    let (made, reused) = plan_counts(&mut client).await;
    // One plan for the prepared statement's first execution, and one for the shape of the
    // literal statements (the statement cache); every other execution reuses one of them.
    assert_eq!(made - made_before, 2);
    assert_eq!(reused - reused_before, 2 * (queries.len() as u64 - 1));

    // A row written since is found by the next execution.
    client
        .execute_update(
            "INSERT INTO docs VALUES (9, 'delta', [0, 0, 0, 1])".into(),
            None,
        )
        .await
        .expect("insert");
    let (prepared, literal) =
        prepared_and_literal(&mut client, &mut statement, [0.1, 0.0, 0.2, 1.0]).await;
    assert_eq!(prepared[0][0], "9");
    assert_eq!(prepared, literal);

    // The collection dropped and created again: the new one's rows, never the old ones.
    for sql in [
        "DROP TABLE docs",
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(4))",
        "INSERT INTO docs VALUES (40, 'new', [0, 0, 0, 1])",
    ] {
        client.execute_update(sql.into(), None).await.expect(sql);
    }
    let (prepared, literal) =
        prepared_and_literal(&mut client, &mut statement, [0.0, 0.0, 0.0, 1.0]).await;
    let ids: Vec<&str> = prepared.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["40"]);
    assert_eq!(prepared, literal);

    // Dropped for good: the execution fails as a fresh statement does.
    client
        .execute_update("DROP TABLE docs".into(), None)
        .await
        .expect("drop");
    statement
        .set_parameters(one_param(Arc::new(vectors(4, &[0.0, 0.0, 0.0, 1.0]))))
        .expect("bind");
    let gone = match statement.execute().await {
        Err(e) => status(e),
        Ok(info) => status(fetch(&mut client, info).await.expect_err("dropped")),
    };
    assert!(gone.message().contains("docs"), "{gone}");
    server.shutdown().await;
}
