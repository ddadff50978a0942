//! Bulk ingest: create, append and replace with a vector column; failures that commit nothing.

use arrow_flight::sql::{
    CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};

use super::*;

fn command(
    table: &str,
    if_not_exist: TableNotExistOption,
    if_exists: TableExistsOption,
) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if_not_exist as i32,
            if_exists: if_exists as i32,
        }),
        table: table.to_string(),
        ..Default::default()
    }
}

async fn ingest(
    client: &mut Client,
    command: CommandStatementIngest,
    batches: Vec<RecordBatch>,
) -> Result<i64, tonic::Status> {
    client
        .execute_ingest(command, futures::stream::iter(batches.into_iter().map(Ok)))
        .await
        .map_err(status)
}

#[tokio::test]
async fn ingest_creates_appends_and_replaces_collections() {
    use TableExistsOption as Exists;
    use TableNotExistOption as NotExist;
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let first = docs_batch(&[1, 2], &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let created = ingest(
        &mut client,
        command("docs", NotExist::Create, Exists::Fail),
        vec![first.clone()],
    )
    .await
    .expect("create");
    assert_eq!(created, 2);
    // The new collection is a Quiver collection with a vector column.
    let described = rows(&mut client, "DESCRIBE docs").await;
    assert_eq!(described[2][0..2], ["embedding", "VECTOR(4)"]);

    let again = ingest(
        &mut client,
        command("docs", NotExist::Create, Exists::Fail),
        vec![first.clone()],
    )
    .await
    .expect_err("exists");
    assert_eq!(again.code(), tonic::Code::AlreadyExists);

    let second = docs_batch(&[3], &[0.0, 0.0, 1.0, 0.0]);
    let appended = ingest(
        &mut client,
        command("docs", NotExist::Fail, Exists::Append),
        vec![second.clone(), second],
    )
    .await
    .expect("append");
    assert_eq!(appended, 2);
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs").await,
        vec![vec!["4"]]
    );
    let nearest = rows(
        &mut client,
        "SELECT id FROM docs ORDER BY l2_distance(embedding, [0, 0.1, 0.9, 0]) LIMIT 1",
    )
    .await;
    assert_eq!(nearest, vec![vec!["3"]]);

    let replaced = ingest(
        &mut client,
        command("docs", NotExist::Fail, Exists::Replace),
        vec![first],
    )
    .await
    .expect("replace");
    assert_eq!(replaced, 2);
    assert_eq!(
        rows(&mut client, "SELECT id FROM docs ORDER BY id").await,
        vec![vec!["1"], vec!["2"]]
    );

    let missing = ingest(
        &mut client,
        command("nope", NotExist::Fail, Exists::Append),
        vec![docs_batch(&[1], &[0.0; 4])],
    )
    .await
    .expect_err("missing");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_ingest_commits_nothing() {
    use TableExistsOption as Exists;
    use TableNotExistOption as NotExist;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;

    // A duplicate primary key in the second batch: the first batch is not kept either.
    let batches = vec![docs_batch(&[7], &[0.0; 4]), docs_batch(&[8, 8], &[0.0; 8])];
    let err = ingest(
        &mut client,
        command("docs", NotExist::Fail, Exists::Append),
        batches,
    )
    .await
    .expect_err("duplicate key");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{}", err.message());
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs").await,
        vec![vec!["3"]]
    );

    // A vector of the wrong dimension is reported by column name.
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("title", DataType::Utf8, true),
            Field::new("embedding", vectors(3, &[0.0; 3]).data_type().clone(), true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![9])),
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(vectors(3, &[0.0; 3])),
        ],
    )
    .expect("batch");
    let err = ingest(
        &mut client,
        command("docs", NotExist::Fail, Exists::Append),
        vec![wrong.clone()],
    )
    .await
    .expect_err("wrong dimension");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("embedding"), "{}", err.message());

    // Missing columns are named; a collection the failed ingest created is dropped again.
    let partial = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
    )
    .expect("batch");
    let err = ingest(
        &mut client,
        command("docs", NotExist::Fail, Exists::Append),
        vec![partial],
    )
    .await
    .expect_err("missing columns");
    assert!(
        err.message().contains("missing [title, embedding]"),
        "{}",
        err.message()
    );
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs").await,
        vec![vec!["3"]]
    );

    let nan = docs_batch(&[1], &[f32::NAN, 0.0, 0.0, 0.0]);
    let err = ingest(
        &mut client,
        command("fresh", NotExist::Create, Exists::Fail),
        vec![nan],
    )
    .await
    .expect_err("non-finite vector");
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    let err = query_error(&mut client, "SELECT * FROM fresh").await;
    assert!(err.message().contains("not found"), "{}", err.message());

    let mut options = command("docs", NotExist::Fail, Exists::Append);
    options.temporary = true;
    let err = ingest(&mut client, options, vec![docs_batch(&[5], &[0.0; 4])])
        .await
        .expect_err("temporary");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut options = command("docs", NotExist::Fail, Exists::Append);
    options
        .options
        .insert("compression".to_string(), "zstd".to_string());
    let err = ingest(&mut client, options, vec![docs_batch(&[6], &[0.0; 4])])
        .await
        .expect_err("unknown option");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .contains("unknown ingest option(s) 'compression'"),
        "{}",
        err.message()
    );
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs WHERE id = 6").await,
        vec![vec!["0"]]
    );
    server.shutdown().await;
}
