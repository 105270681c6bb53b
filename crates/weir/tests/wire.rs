//! The Postgres wire protocol as a driver uses it (tokio-postgres): prepared
//! statements with parameters, Describe, binary results, portals with a row
//! limit, errors and cancellation. Result types and binary values are compared
//! with a real PostgreSQL running the same statements.

mod support;

use std::error::Error;
use std::time::Duration;

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use support::TestServer;
use support::postgres::PostgresServer;

/// A value's bytes as sent on the wire, whatever its type.
#[derive(Debug, PartialEq)]
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

const SETUP: &str = "
SET TimeZone = 'UTC';
CREATE TABLE all_types (
  b boolean, s smallint, i integer, l bigint, r real, d double precision,
  n numeric(10,2), t text, v varchar(5), by bytea, dt date, tm time,
  ts timestamp, tz timestamptz, iv interval
);
INSERT INTO all_types VALUES
  (true, 1, 2, 3, 1.5, 0.1, 1.5, 'text', 'vc', '\\x0102', '2022-01-01', '10:00:00',
   '2022-01-01 10:00:00', '2022-01-01 10:00:00+00', '1 day 02:00:00'),
  (false, -32768, -2147483648, -9223372036854775807, 1e10, 1e20, -3.1, '', 'abcde', '\\x',
   '0001-01-01', '23:59:59.999999', '2022-01-01 10:00:00.5', '1999-12-31 23:00:00-02',
   '1 year 2 months 3 days 04:05:06.789'),
  (NULL, NULL, 7, NULL, NULL, NULL, 123456.78, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
";

/// Column types and binary values of a query, as a client decodes them.
async fn binary_result(client: &Client, sql: &str) -> (Vec<Type>, Vec<Vec<Option<Raw>>>) {
    let statement = client.prepare(sql).await.expect("prepare");
    let types = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let rows = client.query(&statement, &[]).await.expect("query");
    let values = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.get::<_, Option<Raw>>(i))
                .collect()
        })
        .collect();
    (types, values)
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_results_and_types_match_postgresql() {
    let weir = TestServer::start().await;
    let postgres = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("start PostgreSQL");
    let weir_client = weir.connect("weir").await;
    let pg_client = postgres.connect("postgres").await;
    weir_client
        .batch_execute(SETUP)
        .await
        .expect("setup on Weir");
    pg_client
        .batch_execute(SETUP)
        .await
        .expect("setup on PostgreSQL");

    let query = "SELECT * FROM all_types ORDER BY i";
    let (weir_types, weir_values) = binary_result(&weir_client, query).await;
    let (pg_types, pg_values) = binary_result(&pg_client, query).await;
    assert_eq!(weir_types, pg_types, "column types");
    for (row, (w, p)) in weir_values.iter().zip(&pg_values).enumerate() {
        for (column, (wv, pv)) in w.iter().zip(p).enumerate() {
            assert_eq!(
                wv, pv,
                "row {row}, column {} ({}): binary value differs",
                column, weir_types[column]
            );
        }
    }
    assert_eq!(weir_values.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_take_typed_parameters() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    client
        .batch_execute(
            "CREATE TABLE people (id int PRIMARY KEY, name text, height double precision, born date)",
        )
        .await
        .expect("create");

    let insert = client
        .prepare("INSERT INTO people VALUES ($1, $2, $3, $4)")
        .await
        .expect("prepare insert");
    assert_eq!(
        insert.params(),
        &[Type::INT4, Type::TEXT, Type::FLOAT8, Type::DATE],
        "parameter types are inferred from the columns"
    );
    assert!(insert.columns().is_empty(), "an INSERT returns no rows");
    let born = chrono::NaiveDate::from_ymd_opt(1990, 5, 17).expect("date");
    let count = client
        .execute(&insert, &[&1i32, &"ada", &1.7f64, &born])
        .await
        .expect("insert");
    assert_eq!(count, 1);
    client
        .execute(
            &insert,
            &[&2i32, &"bo", &None::<f64>, &None::<chrono::NaiveDate>],
        )
        .await
        .expect("insert with NULLs");

    let select = client
        .prepare("SELECT name, height, born FROM people WHERE id = $1")
        .await
        .expect("prepare select");
    assert_eq!(select.params(), &[Type::INT4]);
    let types: Vec<Type> = select.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(types, [Type::TEXT, Type::FLOAT8, Type::DATE]);
    let row = client.query_one(&select, &[&1i32]).await.expect("select");
    assert_eq!(row.get::<_, String>(0), "ada");
    assert_eq!(row.get::<_, f64>(1), 1.7);
    assert_eq!(row.get::<_, chrono::NaiveDate>(2), born);
    let row = client.query_one(&select, &[&2i32]).await.expect("select");
    assert_eq!(row.get::<_, Option<f64>>(1), None);

    // A parameter in an expression, and the same statement run again.
    let add = client
        .prepare("SELECT $1::bigint + 1 AS next")
        .await
        .expect("prepare");
    for n in [1i64, 41] {
        let row = client.query_one(&add, &[&n]).await.expect("add");
        assert_eq!(row.get::<_, i64>("next"), n + 1);
    }

    // UPDATE and DELETE with parameters report their row counts.
    let updated = client
        .execute(
            "UPDATE people SET height = $1 WHERE id = $2",
            &[&1.8f64, &2i32],
        )
        .await
        .expect("update");
    assert_eq!(updated, 1);
    let deleted = client
        .execute("DELETE FROM people WHERE height > $1", &[&1.75f64])
        .await
        .expect("delete");
    assert_eq!(deleted, 1);

    // Errors keep their SQLSTATE through the extended protocol, and the
    // connection stays usable.
    let err = client
        .execute(&insert, &[&1i32, &"dup", &1.0f64, &born])
        .await
        .expect_err("duplicate key");
    assert_eq!(err.code().map(|c| c.code()), Some("23505"));
    let err = client
        .prepare("SELECT nope FROM people")
        .await
        .expect_err("unknown column");
    assert_eq!(err.code().map(|c| c.code()), Some("42703"));
    let row = client
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn portals_return_rows_in_batches() {
    let server = TestServer::start().await;
    let mut client = server.connect("weir").await;
    client
        .batch_execute("CREATE TABLE n (x int); INSERT INTO n SELECT * FROM generate_series(1, 10)")
        .await
        .expect("setup");
    let transaction = client.transaction().await.expect("begin");
    let statement = transaction
        .prepare("SELECT x FROM n ORDER BY x")
        .await
        .expect("prepare");
    let portal = transaction.bind(&statement, &[]).await.expect("bind");
    let mut seen = Vec::new();
    loop {
        let rows = transaction.query_portal(&portal, 4).await.expect("fetch");
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 4, "at most the requested rows per Execute");
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    transaction.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_request_stops_a_running_statement() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token
            .cancel_query(NoTls)
            .await
            .expect("send the cancel request");
    });
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT count(*) FROM generate_series(1, 10000000000) a")
        .await
        .expect_err("the statement is cancelled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled within seconds, not after {:?}",
        started.elapsed()
    );
    canceller.await.expect("canceller");
    // The session is still usable.
    let rows = client.simple_query("SELECT 1").await.expect("after cancel");
    assert!(matches!(&rows[1], SimpleQueryMessage::Row(r) if r.get(0) == Some("1")));
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_timeout_applies() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .expect("set");
    let err = client
        .simple_query("SELECT count(*) FROM generate_series(1, 10000000000) a")
        .await
        .expect_err("times out");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_database_is_refused_at_startup() {
    let server = TestServer::start().await;
    let Err(err) = tokio_postgres::connect(&server.conn_str("nope"), NoTls).await else {
        panic!("connected to a database that does not exist");
    };
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_max_connections_are_refused() {
    let server = TestServer::start_with_max_connections(2).await;
    let first = server.connect("weir").await;
    let second = server.connect("weir").await;
    let Err(err) = tokio_postgres::connect(&server.conn_str("weir"), NoTls).await else {
        panic!("a third connection was accepted");
    };
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    assert_eq!(
        err.as_db_error().map(|e| e.message()),
        Some("sorry, too many clients already")
    );
    // The open sessions go on; a closed one frees its place.
    let one = first
        .query_one("SELECT 1", &[])
        .await
        .expect("first still works");
    assert_eq!(one.get::<_, i64>(0), 1);
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let third = loop {
        match tokio_postgres::connect(&server.conn_str("weir"), NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the closed connection's place was not freed: {e}"),
        }
    };
    for client in [&second, &third] {
        let rows = client.query_one("SELECT 41 + 1", &[]).await.expect("query");
        assert_eq!(rows.get::<_, i64>(0), 42);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn databases_are_isolated_catalogs() {
    let server = TestServer::start().await;
    let admin = server.connect("weir").await;
    admin
        .batch_execute("CREATE DATABASE one; CREATE DATABASE two")
        .await
        .expect("create");
    let one = server.connect("one").await;
    let two = server.connect("two").await;
    one.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .expect("one");
    two.batch_execute("CREATE TABLE t (x text); INSERT INTO t VALUES ('two')")
        .await
        .expect("two");
    let row = one.query_one("SELECT x FROM t", &[]).await.expect("one");
    assert_eq!(row.get::<_, i32>(0), 1);
    let row = two.query_one("SELECT x FROM t", &[]).await.expect("two");
    assert_eq!(row.get::<_, String>(0), "two");
    let err = admin
        .simple_query("SELECT * FROM t")
        .await
        .expect_err("not in weir");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    // A database with open sessions cannot be dropped; once they end, it can.
    drop(one);
    drop(two);
    admin
        .batch_execute("DROP DATABASE one; DROP DATABASE two")
        .await
        .expect("drop");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_parameter_numbers_are_refused() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let err = client
        .prepare("SELECT $2000000000::int")
        .await
        .expect_err("too many parameters");
    assert_eq!(err.code().map(|c| c.code()), Some("08P01"), "{err}");
    // The server is still there.
    let row = client.query_one("SELECT 1::int", &[]).await.expect("after");
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_in_parse_fail_the_transaction_block() {
    let server = TestServer::start().await;
    let mut client = server.connect("weir").await;
    let transaction = client.transaction().await.expect("begin");
    let err = transaction
        .prepare("SELECT nope")
        .await
        .expect_err("unknown column");
    assert_eq!(err.code().map(|c| c.code()), Some("42703"));
    let err = transaction
        .query("SELECT 1::int", &[])
        .await
        .expect_err("the block failed");
    assert_eq!(err.code().map(|c| c.code()), Some("25P02"), "{err}");
    transaction.rollback().await.expect("rollback");
    let row = client.query_one("SELECT 1::int", &[]).await.expect("after");
    assert_eq!(row.get::<_, i32>(0), 1);
}
