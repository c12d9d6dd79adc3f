//! The pipeline: three steps with their own results (each becomes a Prefect task run). Extract
//! comes first; transform and load then run one after the other, or at once
//! ([`Pipeline::transform_and_load`], what `run_all` and the flow do).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::config::{ConfigError, Format, PipelineConfig};
use super::error::EtlError;
use super::extract::{self, Extracted};
use super::load::{self, CommitGate, LoadPlan, Outcome};
use super::observer::{run_blocking, LogLevel, PipelineObserver, Step};
use super::source::{self, SourceLocation};
use super::staging::{Layout, Staging, StagingWriter};
use super::summary::Summary;
use super::target::ResolvedTarget;
use super::transform::{self, Column, Plan, Sorted, TransformError, TransformReport, Transformed};

/// A configured pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Shared by the clones of this pipeline: one run at a time per pipeline value.
    gate: Arc<CommitGate>,
    config: PipelineConfig,
    target: ResolvedTarget,
    location: SourceLocation,
    format: Format,
    /// How many records [`Pipeline::run_all`] infers the types from before it starts to
    /// transform and load (see there).
    preview_records: u64,
}

/// The records [`Pipeline::run_all`] reads before it starts to transform and load a long CSV
/// source: enough to settle the types of any usual file, and a few milliseconds to read.
const PREVIEW_RECORDS: u64 = 65_536;

/// The result of the load step.
#[derive(Debug, Clone)]
pub struct Loaded {
    summary: Summary,
}

impl Loaded {
    /// What the run did.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// What the run did, by value.
    pub fn into_summary(self) -> Summary {
        self.summary
    }
}

impl Pipeline {
    /// Checks the configuration and binds it to a resolved target.
    pub fn new(config: PipelineConfig, target: ResolvedTarget) -> Result<Self, EtlError> {
        config.validate()?;
        let format = config.source_format().ok_or(ConfigError::InvalidField {
            at: String::new(),
            field: "format",
            reason: "cannot tell the source's format; set format".into(),
        })?;
        let location = SourceLocation::of(&config);
        // A local source that cannot be opened is a configuration error found before anything
        // else happens (before a flow run is created, before serve registers the deployment).
        // A pipe is refused before it is opened: opening one waits for its writer.
        if let SourceLocation::Path(path) = &location {
            let open_error = |source| super::source::ReadError::OpenFile {
                path: path.clone(),
                source,
            };
            if !std::fs::metadata(path).map_err(open_error)?.is_file() {
                return Err(super::source::ReadError::NotAFile { path: path.clone() }.into());
            }
            std::fs::File::open(path).map_err(open_error)?;
        }
        Ok(Pipeline {
            gate: Arc::default(),
            location,
            config,
            target,
            format,
            preview_records: PREVIEW_RECORDS,
        })
    }

    /// Sets how many records [`Pipeline::run_all`] reads before it starts to transform and
    /// load (tests use a few, to exercise both outcomes of the preview).
    #[doc(hidden)]
    pub fn with_preview_records(mut self, records: u64) -> Self {
        self.preview_records = records.max(1);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The target.
    pub fn target(&self) -> &ResolvedTarget {
        &self.target
    }

    /// Runs extract, then transform and load at once (see [`Pipeline::transform_and_load`]).
    ///
    /// A CSV source loaded into SQLite is read once fewer when it is long: extract reads only
    /// its first records (`PREVIEW_RECORDS`) and infers the types from them; transform then
    /// profiles every record as it sorts it, while load inserts. When the whole profile infers
    /// the same columns, as it does for almost every file, the rows are accepted and commit.
    /// When it does not, transform accepts nothing, load rolls back, and transform and load
    /// run again with the types of the whole source: the table, the rejects and the summary
    /// are those a full extract first would have given. (SQLite only: there the load is the
    /// slower side and reading the source twice was on its path; PostgreSQL takes the rows
    /// faster than transform writes them.)
    pub async fn run_all(&self, obs: &dyn PipelineObserver) -> Result<Summary, EtlError> {
        let preview = (self.format == Format::Csv
            && matches!(self.target, ResolvedTarget::Sqlite { .. }))
        .then_some(self.preview_records);
        let extracted = self.extract_limited(obs, preview).await?;
        if extracted.complete {
            return self.transform_and_load_all(extracted, obs).await;
        }
        let previewed = extracted.records;
        let extracted = match self.sort_and_load_previewed(extracted, obs).await? {
            Ok(summary) => return Ok(summary),
            Err(extracted) => extracted,
        };
        obs.log(
            Step::Transform,
            LogLevel::Info,
            &format!(
                "the types of the first {previewed} records do not hold for all {}; \
                 transforming again with the types of the whole source",
                extracted.records
            ),
        );
        self.transform_and_load_all(extracted, obs).await
    }

    /// [`Pipeline::transform_and_load`], driven to its end; transform's failure wins.
    async fn transform_and_load_all(
        &self,
        extracted: Extracted,
        obs: &dyn PipelineObserver,
    ) -> Result<Summary, EtlError> {
        let (transform, load) = self.transform_and_load(extracted, obs, obs)?;
        let (sorted, loaded) = tokio::join!(transform, load);
        sorted?;
        Ok(loaded?.into_summary())
    }

    /// Transform and load over types inferred from the first records only (see
    /// [`Pipeline::run_all`]); `Ok(Err(extracted))` when the whole source, profiled in
    /// `extracted`, infers other types.
    async fn sort_and_load_previewed(
        &self,
        extracted: Extracted,
        obs: &dyn PipelineObserver,
    ) -> Result<Result<Summary, Extracted>, EtlError> {
        let (plan, staging, writer) = self.plan_transform(&extracted)?;
        // The number of rows is not known yet: load's progress has no total.
        let load_plan = self.load_plan(&plan.columns, &plan.keys, 0);
        let started = extracted.started;
        let config = self.config.clone();
        let (sorted_tx, sorted_rx) = tokio::sync::oneshot::channel();
        let transform = async move {
            let result = run_blocking(Step::Transform, None, obs, move |reporter| {
                transform::sort_pass(extracted, &plan, writer, &reporter, Some(&config))
            })
            .await;
            obs.finished(Step::Transform);
            match result {
                Ok(Sorted::Accepted(report)) => {
                    let _ = sorted_tx.send(report);
                    Ok(None)
                }
                Ok(Sorted::TypesChanged(extracted)) => Ok(Some(extracted)),
                Err(error) => Err(error),
            }
        };
        let load = self.load_following(&load_plan, &staging, obs, sorted_rx, started);
        let (sorted, loaded) = tokio::join!(transform, load);
        match sorted? {
            // Load failed only because transform accepted nothing.
            Some(extracted) => Ok(Err(extracted)),
            None => Ok(Ok(loaded?.into_summary())),
        }
    }

    /// Extract: opens (or downloads) the source, reads the header, counts and profiles the
    /// records.
    pub async fn extract(&self, obs: &dyn PipelineObserver) -> Result<Extracted, EtlError> {
        self.extract_limited(obs, None).await
    }

    /// Extract, reading at most `limit` records.
    async fn extract_limited(
        &self,
        obs: &dyn PipelineObserver,
        limit: Option<u64>,
    ) -> Result<Extracted, EtlError> {
        let result = self.extract_inner(obs, limit).await;
        obs.finished(Step::Extract);
        result
    }

    async fn extract_inner(
        &self,
        obs: &dyn PipelineObserver,
        limit: Option<u64>,
    ) -> Result<Extracted, EtlError> {
        let started = Instant::now();
        let label = self.location.label();
        obs.log(
            Step::Extract,
            LogLevel::Info,
            &format!("reading {label} ({})", self.format),
        );
        let source = source::prepare(&self.location, obs).await?;
        let format = self.format;
        let key = self.config.key.clone();
        let (source, scan, label) = run_blocking(Step::Extract, None, obs, move |reporter| {
            let scan = extract::scan(&source, format, &label, &reporter, limit, &key)?;
            Ok((source, scan, label))
        })
        .await?;
        Ok(Extracted {
            source,
            format,
            label,
            headers: scan.headers,
            keys: scan.keys,
            records: scan.records,
            profile: scan.profile,
            started,
            complete: scan.complete,
        })
    }

    /// Transform: decides the column types, writes the rejects file and the staging file.
    /// Fails when more than `max_rejected` of the rows were rejected (the rejects file is
    /// written all the same, and nothing is loaded).
    pub async fn transform(
        &self,
        extracted: Extracted,
        obs: &dyn PipelineObserver,
    ) -> Result<Transformed, EtlError> {
        let result = async {
            let (plan, staging, writer) = self.plan_transform(&extracted)?;
            let started = extracted.started;
            let sorted = sort(extracted, plan.clone(), writer, obs).await?;
            Ok(Transformed {
                columns: plan.columns,
                keys: plan.keys,
                staging,
                rows_read: sorted.rows_read,
                rows_rejected: sorted.rows_rejected,
                rejects: sorted.rejects,
                started,
            })
        }
        .await;
        obs.finished(Step::Transform);
        result
    }

    /// Load: writes the clean rows into the target in one transaction.
    pub async fn load(
        &self,
        transformed: Transformed,
        obs: &dyn PipelineObserver,
    ) -> Result<Loaded, EtlError> {
        let plan = self.load_plan(
            &transformed.columns,
            &transformed.keys,
            transformed.rows_accepted(),
        );
        let sorted = TransformReport {
            rows_read: transformed.rows_read,
            rows_rejected: transformed.rows_rejected,
            rejects: transformed.rejects.clone(),
        };
        let result = self
            .load_inner(
                &plan,
                &transformed.staging,
                obs,
                async { Ok(sorted) },
                transformed.started,
            )
            .await;
        obs.finished(Step::Load);
        result
    }

    /// Transform and load at once, as two futures to drive together (`tokio::join!`): load
    /// reads the rows as transform writes them, so the two steps share the machine's cores
    /// and the load ends soon after transform. Load commits only once transform has accepted
    /// the input; when transform fails (too many rejects, an unreadable source), load rolls
    /// back and ends with [`EtlError::Cancelled`]. A configuration error found before either
    /// starts (a `key` or `types` column the source lacks) is returned at once.
    #[allow(clippy::type_complexity)]
    pub fn transform_and_load<'a>(
        &'a self,
        extracted: Extracted,
        transform_obs: &'a dyn PipelineObserver,
        load_obs: &'a dyn PipelineObserver,
    ) -> Result<
        (
            impl Future<Output = Result<TransformReport, EtlError>> + 'a,
            impl Future<Output = Result<Loaded, EtlError>> + 'a,
        ),
        EtlError,
    > {
        let (plan, staging, writer) = self.plan_transform(&extracted)?;
        let load_plan = self.load_plan(&plan.columns, &plan.keys, extracted.records);
        let started = extracted.started;
        let (sorted_tx, sorted_rx) = tokio::sync::oneshot::channel();
        let transform = async move {
            let result = sort(extracted, plan, writer, transform_obs).await;
            transform_obs.finished(Step::Transform);
            if let Ok(sorted) = &result {
                let _ = sorted_tx.send(sorted.clone());
            }
            result
        };
        let load = async move {
            self.load_following(&load_plan, &staging, load_obs, sorted_rx, started)
                .await
        };
        Ok((transform, load))
    }

    /// The load of [`Pipeline::transform_and_load`]: reads the staging file as transform writes
    /// it; `sorted` brings transform's counts when it accepts the rows. Cancelled when
    /// transform stops without accepting them.
    async fn load_following(
        &self,
        plan: &LoadPlan,
        staging: &Staging,
        obs: &dyn PipelineObserver,
        sorted: tokio::sync::oneshot::Receiver<TransformReport>,
        started: Instant,
    ) -> Result<Loaded, EtlError> {
        let sorted = async {
            sorted
                .await
                .map_err(|_| EtlError::Cancelled { step: Step::Load })
        };
        let result = self.load_inner(plan, staging, obs, sorted, started).await;
        let result = match result {
            Err(_) if staging.stopped() => Err(EtlError::Cancelled { step: Step::Load }),
            other => other,
        };
        obs.finished(Step::Load);
        result
    }

    /// Names the columns, decides their types, and creates the staging file.
    fn plan_transform(
        &self,
        extracted: &Extracted,
    ) -> Result<(Plan, Staging, StagingWriter), EtlError> {
        let (columns, keys) = transform::plan_columns(&self.config, extracted)?;
        let plan = Plan {
            columns,
            keys,
            rejects: self.config.rejects_path(),
            max_rejected: self.config.max_rejected,
        };
        let layout = match self.target {
            ResolvedTarget::Sqlite { .. } => Layout::Sqlite,
            ResolvedTarget::Postgres { .. } => Layout::Postgres,
        };
        let (staging, writer) = Staging::create(layout).map_err(TransformError::WriteStaging)?;
        Ok((plan, staging, writer))
    }

    /// What load needs; `rows` is how many rows it expects (for progress).
    fn load_plan(&self, columns: &[Column], keys: &[usize], rows: u64) -> LoadPlan {
        LoadPlan {
            table: self.config.table.clone(),
            columns: columns.to_vec(),
            keys: keys.to_vec(),
            rows,
            replace: self.config.replace,
            gate: self.gate.clone(),
        }
    }

    /// Stops the current run of this pipeline before its load commits; drop the run's future
    /// then. False when the commit has already begun: the run cannot be stopped any more, and
    /// its future should be awaited to learn how it ended.
    pub fn stop(&self) -> bool {
        self.gate.stop()
    }

    /// Loads the staged rows; `sorted` yields transform's counts once it has ended.
    async fn load_inner(
        &self,
        plan: &LoadPlan,
        staging: &Staging,
        obs: &dyn PipelineObserver,
        sorted: impl Future<Output = Result<TransformReport, EtlError>>,
        started: Instant,
    ) -> Result<Loaded, EtlError> {
        let shown = self.target.display_url();
        let message = format!("loading into {} at {shown}", plan.table);
        obs.log(Step::Load, LogLevel::Info, &message);
        let outcome = self.load_into_target(plan, staging, obs).await?;
        let sorted = sorted.await?;
        let summary = Summary {
            table: plan.table.clone(),
            target: shown,
            rows_read: sorted.rows_read,
            rows_loaded: sorted.rows_read - sorted.rows_rejected,
            rows_rejected: sorted.rows_rejected,
            rows_changed: outcome.changed,
            table_created: outcome.created,
            rejects: sorted.rejects,
            duration: started.elapsed(),
        };
        obs.log(Step::Load, LogLevel::Info, &summary.to_string());
        Ok(Loaded { summary })
    }

    async fn load_into_target(
        &self,
        plan: &LoadPlan,
        staging: &Staging,
        obs: &dyn PipelineObserver,
    ) -> Result<Outcome, EtlError> {
        match &self.target {
            ResolvedTarget::Sqlite { path } => {
                let (path, plan, input) = (path.clone(), plan.clone(), staging.follow());
                let total = (plan.rows > 0).then_some(plan.rows);
                run_blocking(Step::Load, total, obs, move |reporter| {
                    load::sqlite::load(&path, &plan, input, &reporter)
                })
                .await
            }
            ResolvedTarget::Postgres { url, password } => {
                load::postgres::load(url, password.as_ref(), plan, staging, obs).await
            }
        }
    }
}

/// Runs transform's pass over the records.
async fn sort(
    extracted: Extracted,
    plan: Plan,
    writer: StagingWriter,
    obs: &dyn PipelineObserver,
) -> Result<TransformReport, EtlError> {
    let total = Some(extracted.records);
    run_blocking(Step::Transform, total, obs, move |reporter| {
        transform::sort_records(extracted, &plan, writer, &reporter)
    })
    .await
}
