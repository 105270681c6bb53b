//! Sink DDL: `CREATE SINK` and `DROP SINK`, and a sink's job started (also
//! at startup, from a checkpoint).

use std::sync::Arc;

use weir_runtime::{Outputs, SinkOutput};
use weir_sql::{CreateSink, DropStream, Emit, SinkInput};

use super::Session;
use super::streams::{Start, parse_query};
use crate::catalog::SinkDef;
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{CommandTag, Output};
use crate::sink::{Sink, connector};

impl Session {
    /// `CREATE SINK name FROM relation | AS query WITH (...)`.
    pub(crate) async fn create_sink(&mut self, create: &CreateSink) -> Result<Output> {
        let name = self.relation_name(&create.name)?;
        let engine = self.engine.clone();
        let _ddl = engine.ddl_lock().await;
        if self.name_taken(&name, create.if_not_exists)? {
            return Ok(Output::Command(CommandTag::new("CREATE SINK")));
        }
        let query = match &create.input {
            SinkInput::From(relation) => {
                let relation_name = self.relation_name(relation)?;
                if self.db.relation(&relation_name).is_none() {
                    return Err(WeirError::undefined_table(&relation_name));
                }
                format!("SELECT * FROM {relation}")
            }
            SinkInput::Query(query) => query.to_string(),
        };
        let def = SinkDef {
            oid: self.engine.allocate_oid(),
            name: name.clone(),
            query,
            emit_on_window_close: create.emit == Emit::OnWindowClose,
            parallelism: self.read_settings().streaming_parallelism(),
            log_position: 0, // set when it starts
            options: create.options.clone(),
        };
        self.start_sink(def, Start::Create, &[]).await?;
        if let Err(e) = self.engine.save().await {
            if let Some(sink) = self.db.remove_sink(&name) {
                sink.stop();
            }
            return Err(e);
        }
        Ok(Output::Command(CommandTag::new("CREATE SINK")))
    }

    /// Plans a sink, settles its connector's output (`committed`: what the
    /// checkpoint restored staged), starts its job and adds it to the
    /// database.
    pub(crate) async fn start_sink(
        &self,
        mut def: SinkDef,
        start: Start,
        committed: &[String],
    ) -> Result<()> {
        let query = parse_query(&def.query)?;
        let emit = if def.emit_on_window_close {
            Emit::OnWindowClose
        } else {
            Emit::OnUpdate
        };
        let (plan, depends_on) = self
            .plan_materialized_view(&query, emit, def.parallelism)
            .await?;
        let check = matches!(start, Start::Create);
        let connector = connector(&def, &self.engine.config().data_dir, check).await?;
        connector.recover(committed).await.map_err(|e| {
            WeirError::new(sqlstate::IO_ERROR, format!("sink \"{}\": {e}", def.name))
        })?;
        let output = Arc::new(SinkOutput::new(connector, !plan.append_only));
        let create = matches!(start, Start::Create);
        let restore = match start {
            // Its job had finished and its output is committed: nothing is
            // left to write.
            Start::Checkpoint { finished: true, .. } => {
                let sink = Arc::new(Sink::new(def, output, depends_on));
                sink.mark_finished();
                self.db.add_sink(sink);
                return Ok(());
            }
            Start::Checkpoint { states, .. } => Some(states),
            Start::Create | Start::Restore => None,
        };
        let job = {
            let barriers = self.engine.barrier_lock().await;
            let (job, position) = plan
                .start(
                    Outputs::Sink(output.clone()),
                    *barriers,
                    self.engine.wal(),
                    restore,
                )
                .await?;
            if create {
                def.log_position = position;
            }
            job
        };
        let sink = Arc::new(Sink::new(def, output, depends_on));
        sink.set_job(job);
        self.db.add_sink(sink);
        Ok(())
    }

    /// `DROP SINK [IF EXISTS] name, ...`: its job stops; files already
    /// visible stay.
    pub(crate) async fn drop_sinks(&mut self, drop: &DropStream) -> Result<Output> {
        let engine = self.engine.clone();
        let _ddl = engine.ddl_lock().await;
        let mut targets = Vec::new();
        for name in &drop.names {
            let name = self.relation_name(name)?;
            match self.db.sink(&name) {
                Some(sink) if targets.iter().any(|t| std::sync::Arc::ptr_eq(t, &sink)) => {}
                Some(sink) => targets.push(sink),
                None if self.db.relation(&name).is_some() => {
                    return Err(WeirError::new(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("\"{name}\" is not a sink"),
                    ));
                }
                None if drop.if_exists => {
                    self.notice(format!("sink \"{name}\" does not exist, skipping"));
                }
                None => {
                    return Err(WeirError::new(
                        sqlstate::UNDEFINED_OBJECT,
                        format!("sink \"{name}\" does not exist"),
                    ));
                }
            }
        }
        for sink in &targets {
            self.db.remove_sink(&sink.def.name);
        }
        if let Err(e) = self.engine.save().await {
            for sink in targets {
                self.db.add_sink(sink);
            }
            return Err(e);
        }
        for sink in targets {
            sink.stop();
            if let Err(e) = sink.output.connector().remove() {
                self.warning(
                    sqlstate::IO_ERROR,
                    format!("sink \"{}\": {e}", sink.def.name),
                );
            }
        }
        Ok(Output::Command(CommandTag::new("DROP SINK")))
    }
}
