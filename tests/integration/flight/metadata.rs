//! Catalog metadata: catalogs, schemas, tables with their schemas, table types, primary keys,
//! SqlInfo and XDBC type info.

use arrow::array::AsArray;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetTables,
    CommandGetXdbcTypeInfo, SqlInfo,
};
use arrow_flight::IpcMessage;

use super::*;

async fn listing(client: &mut Client, info: FlightInfo) -> Vec<Vec<String>> {
    let announced = info.clone().try_decode_schema().expect("schema");
    let batches = fetch(client, info).await.expect("fetch");
    for batch in &batches {
        assert_eq!(batch.schema().fields(), announced.fields());
    }
    quiver_tests::format_rows(&batches)
}

#[tokio::test]
async fn table_listings_show_what_another_process_committed() {
    // Looking for a newer catalog before every request; the interval is tested in freshness.rs.
    let server = TestServer::start_with(|config| {
        config.catalog_refresh_interval = std::time::Duration::ZERO;
    })
    .await;
    let mut client = server.client().await;
    create_docs(&mut client).await;
    let tables = CommandGetTables {
        include_schema: true,
        table_types: vec!["TABLE".into()],
        ..Default::default()
    };
    let info = client.get_tables(tables.clone()).await.expect("tables");
    assert_eq!(
        fetch(&mut client, info).await.expect("fetch")[0].num_rows(),
        1
    );
    // A second process on the same data root adds a collection.
    let other = quiver_tests::open_session(
        &server.data_dir().to_string_lossy(),
        quiver_catalog::fault::FaultHooks::default(),
    )
    .await;
    other
        .run_script("CREATE TABLE notes (id BIGINT NOT NULL, body VARCHAR)")
        .await
        .expect("create");
    let info = client.get_tables(tables).await.expect("tables");
    let batches = fetch(&mut client, info).await.expect("fetch");
    let listed: Vec<(String, Vec<String>)> = batches
        .iter()
        .flat_map(|batch| {
            (0..batch.num_rows()).map(move |row| {
                let encoded = batch.column(4).as_binary::<i32>().value(row).to_vec();
                let schema = Schema::try_from(IpcMessage(encoded.into())).expect("schema");
                (
                    batch.column(2).as_string::<i32>().value(row).to_string(),
                    schema.fields().iter().map(|f| f.name().clone()).collect(),
                )
            })
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "docs".to_string(),
                vec!["id".into(), "title".into(), "embedding".into()]
            ),
            ("notes".to_string(), vec!["id".into(), "body".into()]),
        ]
    );
}

#[tokio::test]
async fn catalogs_schemas_tables_and_keys_describe_the_collections() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;
    client
        .execute_update("CREATE DATABASE lab".into(), None)
        .await
        .expect("database");
    client
        .execute_update("CREATE TABLE lab.notes (body VARCHAR)".into(), None)
        .await
        .expect("table");

    let info = client.get_catalogs().await.expect("catalogs");
    assert_eq!(listing(&mut client, info).await, vec![vec!["quiver"]]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas::default())
        .await
        .expect("schemas");
    assert_eq!(
        listing(&mut client, info).await,
        vec![
            vec!["quiver", "default"],
            vec!["quiver", "lab"],
            vec!["quiver", "quiver"]
        ]
    );

    let info = client
        .get_tables(CommandGetTables {
            table_types: vec!["TABLE".into()],
            ..Default::default()
        })
        .await
        .expect("tables");
    assert_eq!(
        listing(&mut client, info).await,
        vec![
            vec!["quiver", "default", "docs", "TABLE"],
            vec!["quiver", "lab", "notes", "TABLE"]
        ]
    );

    // With include_schema, each table's Arrow schema comes along, IPC-encoded.
    let info = client
        .get_tables(CommandGetTables {
            db_schema_filter_pattern: Some("def%".into()),
            table_name_filter_pattern: Some("docs".into()),
            include_schema: true,
            ..Default::default()
        })
        .await
        .expect("tables");
    let batches = fetch(&mut client, info).await.expect("fetch");
    assert_eq!(batches[0].num_rows(), 1);
    let encoded = batches[0].column(4).as_binary::<i32>().value(0).to_vec();
    let schema = Schema::try_from(IpcMessage(encoded.into())).expect("schema");
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "title", "embedding"]);

    let info = client.get_table_types().await.expect("types");
    assert_eq!(
        listing(&mut client, info).await,
        vec![vec!["SYSTEM TABLE"], vec!["TABLE"]]
    );

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "docs".into(),
        })
        .await
        .expect("keys");
    assert_eq!(
        listing(&mut client, info).await,
        vec![vec!["quiver", "default", "docs", "id", "NULL", "1"]]
    );
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("lab".into()),
            table: "notes".into(),
        })
        .await
        .expect("keys");
    assert!(listing(&mut client, info).await.is_empty());

    // No foreign keys: empty results with the spec's 13 columns.
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "docs".into(),
        })
        .await
        .expect("imported keys");
    assert_eq!(
        info.clone()
            .try_decode_schema()
            .expect("schema")
            .fields()
            .len(),
        13
    );
    assert!(listing(&mut client, info).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn sql_info_and_type_info_describe_the_server() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerBulkIngestion,
            SqlInfo::FlightSqlServerCancel,
        ])
        .await
        .expect("sql info");
    let batches = fetch(&mut client, info).await.expect("fetch");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    let names = batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::UInt32Type>();
    assert!(names
        .values()
        .contains(&(SqlInfo::FlightSqlServerName as u32)));

    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .expect("type info");
    let types = listing(&mut client, info).await;
    let names: Vec<&str> = types.iter().map(|r| r[0].as_str()).collect();
    for expected in ["BIGINT", "VARCHAR", "DOUBLE", "BOOLEAN", "TIMESTAMP"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    server.shutdown().await;
}
