//! The stream a connector publishes to, and the source it pulls from: the stream's
//! frequency and time zone as the server describes them for the credential
//! [`super::local`] read, the templates' values for a run, and the source opened for it.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::local::SourceInputs;
use super::mapping::{MappedPoint, When};
use super::rest::RestContext;
use super::run::{Job, RunEnv};
use super::template::TemplateContext;
use super::{FetchError, Source, command, rest, sql};
use crate::client::Client;
use crate::connector::ConnectorDef;
use crate::period::{Frequency, Period};
use crate::signature::Credential;

/// The stream a connector publishes to, as the server describes it.
pub struct Target {
    /// The connector's credential for it.
    pub credential: Credential,
    /// Its id.
    pub stream_id: String,
    /// Its frequency.
    pub frequency: Frequency,
    /// Its time zone, where local times and timestamps are placed.
    pub tz: TimeZone,
}

impl Target {
    /// Asks the server for the stream of the connector's `credential`.
    pub async fn resolve(client: &Client, credential: Credential) -> Result<Self, String> {
        let stream_id = credential.stream_id().to_string();
        let stream = client
            .stream(&stream_id)
            .await
            .map_err(|s| format!("the stream {stream_id} cannot be read: {}", s.message()))?
            .stream
            .ok_or("the server answered without the stream")?;
        let frequency = crate::wire::frequency(stream.frequency)
            .ok()
            .flatten()
            .ok_or("the server answered with an unknown frequency")?;
        let tz = TimeZone::get(&stream.time_zone).map_err(|_| {
            format!(
                "the stream's time zone {:?} is not in the time zone database",
                stream.time_zone
            )
        })?;
        Ok(Self {
            credential,
            stream_id,
            frequency,
            tz,
        })
    }

    /// The templates' values for a run of `slot` starting from `cursor`: the period is
    /// the stream period the slot falls in.
    pub fn template_context(
        &self,
        slot: Timestamp,
        cursor: Option<String>,
    ) -> Result<TemplateContext, String> {
        let period = Period::at(self.frequency, slot, &self.tz).map_err(|e| e.to_string())?;
        Ok(TemplateContext {
            cursor,
            period_start: midnight(period.start(), &self.tz)?,
            period_end: midnight(period.end(), &self.tz)?,
            now: slot,
        })
    }

    /// The stream period a mapped point falls in, as text.
    pub fn period_of(&self, point: &MappedPoint) -> Result<String, String> {
        let at = match &point.when {
            When::Period(text) => {
                return Period::parse(self.frequency, text)
                    .map(|p| p.to_string())
                    .map_err(|e| e.to_string());
            }
            When::At(at) => *at,
            When::Local(local) => self
                .tz
                .to_ambiguous_zoned(*local)
                .compatible()
                .map_err(|e| e.to_string())?
                .timestamp(),
        };
        Period::at(self.frequency, at, &self.tz)
            .map(|p| p.to_string())
            .map_err(|e| e.to_string())
    }
}

/// Opens the connector's source for one run, with what [`LocalInputs::read`] read.
///
/// [`LocalInputs::read`]: super::local::LocalInputs::read
pub(super) async fn open_source(
    env: &RunEnv,
    job: &Job,
    inputs: SourceInputs<'_>,
    ctx: &TemplateContext,
) -> Result<Box<dyn Source>, FetchError> {
    open_source_with(&env.rest, job, inputs, ctx).await
}

/// Opens the connector's source for one run (also used by `connector preview`).
pub async fn open_source_with(
    rest_context: &RestContext,
    job: &Job,
    inputs: SourceInputs<'_>,
    ctx: &TemplateContext,
) -> Result<Box<dyn Source>, FetchError> {
    let def = &job.def;
    Ok(match inputs {
        SourceInputs::Rest(source, inputs) => {
            Box::new(rest::open(rest_context, source, inputs, ctx, &def.retry)?)
        }
        SourceInputs::Sql(source, database) => {
            Box::new(sql::open(&database, source, ctx, &def.retry).await?)
        }
        SourceInputs::Command(source) => {
            let hidden: Vec<&str> = def.credential_env.as_deref().into_iter().collect();
            Box::new(command::open(source, ctx, &hidden).await?)
        }
    })
}

/// The stream a definition publishes to, for alerts and listings: its id when the
/// credential can be read, else where the credential comes from.
pub fn stream_label(def: &ConnectorDef) -> String {
    match super::local::load_credential(def) {
        Ok(c) => c.stream_id().to_string(),
        Err(_) => match (&def.credential_env, &def.credential_file) {
            (Some(var), _) => format!("(credential in ${var})"),
            (_, Some(file)) => format!("(credential in {})", file.display()),
            _ => "?".into(),
        },
    }
}

fn midnight(date: jiff::civil::Date, tz: &TimeZone) -> Result<Timestamp, String> {
    date.to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}
