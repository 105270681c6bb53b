//! Statements run through a session, checked by their results (no wire).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use weir_engine::{Engine, EngineConfig, Output, Session};

async fn session(dir: &std::path::Path) -> Session {
    let engine = Engine::open(EngineConfig::new(dir))
        .await
        .expect("open engine");
    engine.connect("weir", "weir", &[]).expect("connect")
}

/// Runs `sql` and renders its rows, or its command tag.
async fn run(session: &mut Session, sql: &str) -> String {
    let mut out = Vec::new();
    for statement in session.parse(sql).expect("parse") {
        match session
            .run(statement)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        {
            Output::Command(tag) => out.push(tag.to_string()),
            Output::Rows(rows) | Output::CopyOut(weir_engine::CopyOut { rows, .. }) => {
                let batches: Vec<RecordBatch> = rows.batches.try_collect().await.expect("rows");
                out.push(pretty_format_batches(&batches).expect("format").to_string());
            }
        }
    }
    out.join("\n")
}

async fn error_code(session: &mut Session, sql: &str) -> String {
    let statement = session.parse(sql).map(|mut s| s.remove(0));
    let result = match statement {
        Ok(statement) => match session.run(statement).await {
            Ok(Output::Rows(rows) | Output::CopyOut(weir_engine::CopyOut { rows, .. })) => rows
                .batches
                .try_collect::<Vec<_>>()
                .await
                .map(|_| ())
                .map_err(weir_engine::WeirError::from),
            Ok(Output::Command(_)) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => panic!("{sql} succeeded"),
        Err(e) => e.code.to_string(),
    }
}

#[tokio::test]
async fn table_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = session(dir.path()).await;
    assert_eq!(
        run(
            &mut s,
            "CREATE TABLE t (id int PRIMARY KEY, name varchar(5), n numeric(6,2) DEFAULT 1.5)"
        )
        .await,
        "CREATE TABLE"
    );
    assert_eq!(
        run(
            &mut s,
            "INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b'), (3, NULL)"
        )
        .await,
        "INSERT 0 3"
    );
    assert_eq!(
        run(&mut s, "UPDATE t SET name = 'z' WHERE id >= 2").await,
        "UPDATE 2"
    );
    assert_eq!(run(&mut s, "DELETE FROM t WHERE id = 1").await, "DELETE 1");
    let rows = run(&mut s, "SELECT id, name, n FROM t ORDER BY id").await;
    assert!(rows.contains("| 2  | z    | 1.50 |"), "{rows}");
    assert!(rows.contains("| 3  | z    | 1.50 |"), "{rows}");
    assert_eq!(
        error_code(&mut s, "INSERT INTO t VALUES (2, 'x', 1)").await,
        "23505"
    );
    assert_eq!(
        error_code(&mut s, "INSERT INTO t VALUES (NULL, 'x', 1)").await,
        "23502"
    );
    assert_eq!(
        error_code(&mut s, "INSERT INTO t VALUES (9, 'toolong', 1)").await,
        "22001"
    );
    assert_eq!(error_code(&mut s, "SELECT * FROM nope").await, "42P01");
    assert_eq!(error_code(&mut s, "SELECT nope FROM t").await, "42703");
    assert_eq!(error_code(&mut s, "SELECT 1/0").await, "22012");
    assert_eq!(error_code(&mut s, "SELEC 1").await, "42601");
    assert_eq!(
        error_code(&mut s, "INSERT INTO t (id) SELECT name FROM t").await,
        "42804"
    );
    assert_eq!(
        run(&mut s, "CREATE VIEW v AS SELECT id FROM t WHERE id > 2").await,
        "CREATE VIEW"
    );
    assert_eq!(error_code(&mut s, "DROP TABLE t").await, "2BP01");
    let rows = run(&mut s, "SELECT count(*) AS c FROM v").await;
    assert!(rows.contains("| 1 |"), "{rows}");
    drop(s);

    // The catalog comes back after a restart.
    let mut s = session(dir.path()).await;
    let rows = run(&mut s, "SHOW TABLES").await;
    assert!(rows.contains("| t    |"), "{rows}");
    // So do the rows (the write-ahead log), which the view reads.
    let rows = run(&mut s, "SELECT count(*) AS c FROM v").await;
    assert!(rows.contains("| 1 |"), "{rows}");
    assert_eq!(run(&mut s, "DROP TABLE t CASCADE").await, "DROP TABLE");
    assert_eq!(error_code(&mut s, "SELECT * FROM v").await, "42P01");
}
