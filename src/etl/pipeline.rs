//! The pipeline: three sequential steps with their own results (each becomes a Prefect task
//! run), and `run_all` for the three in a row.

use std::time::Instant;

use super::config::{ConfigError, Format, PipelineConfig};
use super::error::EtlError;
use super::extract::{self, Extracted};
use super::load::{self, LoadPlan, Outcome};
use super::observer::{run_blocking, LogLevel, PipelineObserver, Step};
use super::source::{self, SourceLocation};
use super::summary::Summary;
use super::target::ResolvedTarget;
use super::transform::{self, Plan, Transformed};

/// A configured pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: PipelineConfig,
    target: ResolvedTarget,
    location: SourceLocation,
    format: Format,
}

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
        Ok(Pipeline {
            location: SourceLocation::of(&config),
            config,
            target,
            format,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The target.
    pub fn target(&self) -> &ResolvedTarget {
        &self.target
    }

    /// Runs extract, transform and load in a row.
    pub async fn run_all(&self, obs: &dyn PipelineObserver) -> Result<Summary, EtlError> {
        let extracted = self.extract(obs).await?;
        let transformed = self.transform(extracted, obs).await?;
        Ok(self.load(transformed, obs).await?.into_summary())
    }

    /// Extract: opens (or downloads) the source, reads the header, counts and profiles the
    /// records.
    pub async fn extract(&self, obs: &dyn PipelineObserver) -> Result<Extracted, EtlError> {
        let result = self.extract_inner(obs).await;
        obs.finished(Step::Extract);
        result
    }

    async fn extract_inner(&self, obs: &dyn PipelineObserver) -> Result<Extracted, EtlError> {
        let started = Instant::now();
        let label = self.location.label();
        obs.log(
            Step::Extract,
            LogLevel::Info,
            &format!("reading {label} ({})", self.format),
        );
        let source = source::prepare(&self.location, obs).await?;
        let format = self.format;
        let (source, scan, label) = run_blocking(Step::Extract, None, obs, move |reporter| {
            let scan = extract::scan(&source, format, &label, &reporter)?;
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
        let result = self.transform_inner(extracted, obs).await;
        obs.finished(Step::Transform);
        result
    }

    async fn transform_inner(
        &self,
        extracted: Extracted,
        obs: &dyn PipelineObserver,
    ) -> Result<Transformed, EtlError> {
        let (columns, keys) = transform::plan_columns(&self.config, &extracted)?;
        let plan = Plan {
            columns,
            keys,
            rejects: self.config.rejects_path(),
            max_rejected: self.config.max_rejected,
        };
        let total = Some(extracted.records);
        run_blocking(Step::Transform, total, obs, move |reporter| {
            transform::sort_records(extracted, plan, &reporter)
        })
        .await
    }

    /// Load: writes the clean rows into the target in one transaction.
    pub async fn load(
        &self,
        transformed: Transformed,
        obs: &dyn PipelineObserver,
    ) -> Result<Loaded, EtlError> {
        let result = self.load_inner(transformed, obs).await;
        obs.finished(Step::Load);
        result
    }

    async fn load_inner(
        &self,
        transformed: Transformed,
        obs: &dyn PipelineObserver,
    ) -> Result<Loaded, EtlError> {
        let plan = LoadPlan {
            table: self.config.table.clone(),
            columns: transformed.columns.clone(),
            keys: transformed.keys.clone(),
            rows: transformed.rows_accepted(),
            replace: self.config.replace,
        };
        let shown = self.target.display_url();
        let message = format!("loading {} rows into {} at {shown}", plan.rows, plan.table);
        obs.log(Step::Load, LogLevel::Info, &message);
        let outcome = self.load_into_target(&plan, &transformed, obs).await?;
        let summary = Summary {
            table: plan.table,
            target: shown,
            rows_read: transformed.rows_read,
            rows_loaded: transformed.rows_accepted(),
            rows_rejected: transformed.rows_rejected,
            rows_changed: outcome.changed,
            table_created: outcome.created,
            rejects: transformed.rejects.clone(),
            duration: transformed.started.elapsed(),
        };
        obs.log(Step::Load, LogLevel::Info, &summary.to_string());
        Ok(Loaded { summary })
    }

    async fn load_into_target(
        &self,
        plan: &LoadPlan,
        transformed: &Transformed,
        obs: &dyn PipelineObserver,
    ) -> Result<Outcome, EtlError> {
        match &self.target {
            ResolvedTarget::Sqlite { path } => {
                let (path, plan) = (path.clone(), plan.clone());
                let staging =
                    (transformed.staging.rewind()).map_err(load::LoadError::ReadStaging)?;
                run_blocking(Step::Load, Some(plan.rows), obs, move |reporter| {
                    load::sqlite::load(&path, &plan, staging, &reporter)
                })
                .await
            }
            ResolvedTarget::Postgres { url, password } => {
                load::postgres::load(url, password.as_ref(), plan, &transformed.staging, obs).await
            }
        }
    }
}
