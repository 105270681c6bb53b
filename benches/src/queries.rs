//! The benchmark queries: the SQL texts in `benches/queries/*.sql`, built
//! into the binary so that what runs is what the files say.
//!
//! A file holds a description (its first comment lines), the Nexmark tables
//! the query reads (`-- tables: bid`), the query in Weir's dialect (after
//! `-- streaming:`) and, for queries Weir runs, the same query for
//! DataFusion in batch (after `-- batch:`), with windows spelled in plain SQL.

/// One benchmark query.
#[derive(Debug, Clone)]
pub struct Query {
    pub name: &'static str,
    pub description: String,
    pub tables: Vec<String>,
    pub streaming: String,
    pub batch: Option<String>,
}

/// The files, in the order the harness runs them.
const FILES: &[(&str, &str)] = &[
    ("q0", include_str!("../queries/q0.sql")),
    ("q1", include_str!("../queries/q1.sql")),
    ("q2", include_str!("../queries/q2.sql")),
    ("q3", include_str!("../queries/q3.sql")),
    ("q5", include_str!("../queries/q5.sql")),
    ("q7", include_str!("../queries/q7.sql")),
    ("q8", include_str!("../queries/q8.sql")),
    ("q11", include_str!("../queries/q11.sql")),
    ("tumble_max", include_str!("../queries/tumble_max.sql")),
    ("hop_count", include_str!("../queries/hop_count.sql")),
];

/// Every query.
pub fn all() -> Vec<Query> {
    FILES.iter().map(|(name, text)| parse(name, text)).collect()
}

/// The query of that name.
pub fn find(name: &str) -> Option<Query> {
    all().into_iter().find(|q| q.name == name)
}

fn parse(name: &'static str, text: &str) -> Query {
    #[derive(PartialEq)]
    enum Part {
        Header,
        Streaming,
        Batch,
    }
    let mut part = Part::Header;
    let (mut description, mut tables) = (Vec::new(), Vec::new());
    let (mut streaming, mut batch) = (String::new(), String::new());
    for line in text.lines() {
        let trimmed = line.trim();
        match trimmed {
            "-- streaming:" => part = Part::Streaming,
            "-- batch:" => part = Part::Batch,
            _ if part == Part::Header => {
                let comment = trimmed.trim_start_matches("--").trim();
                if let Some(list) = comment.strip_prefix("tables:") {
                    tables = list.split(',').map(|t| t.trim().to_string()).collect();
                } else if !comment.is_empty() {
                    description.push(comment.to_string());
                }
            }
            _ => {
                let target = if part == Part::Streaming {
                    &mut streaming
                } else {
                    &mut batch
                };
                target.push_str(line);
                target.push('\n');
            }
        }
    }
    let batch = batch.trim().to_string();
    Query {
        name,
        description: description.join(" "),
        tables,
        streaming: streaming.trim().to_string(),
        batch: (!batch.is_empty()).then_some(batch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_streaming_query_and_its_tables() {
        for query in all() {
            assert!(!query.streaming.is_empty(), "{}", query.name);
            assert!(!query.tables.is_empty(), "{}", query.name);
            assert!(
                query
                    .tables
                    .iter()
                    .all(|t| ["bid", "auction", "person"].contains(&t.as_str())),
                "{}: {:?}",
                query.name,
                query.tables
            );
            assert!(!query.description.is_empty(), "{}", query.name);
        }
        let q0 = find("q0").expect("q0");
        assert!(q0.streaming.starts_with("SELECT auction"));
        assert!(q0.batch.is_some());
        assert!(find("q3").expect("q3").batch.is_none());
    }
}
