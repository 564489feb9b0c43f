//! `kpistream publish`: signs points with a stream's credential and publishes them,
//! from flags or from a CSV file of `period,value[,external_id]`.

use crate::cli::exit::outln;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use super::{ServerArgs, status};
use crate::client::{self, Credential};
use crate::proto;
use crate::text::printable;

/// Sign and publish datapoints. The credential is the only authorisation needed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream publish --credential wau.kpik --period 2026-W48 --value 1520\n  kpistream publish --credential wau.kpik --at 2026-11-23T09:30:00Z --value 1533\n  kpistream publish --credential wau.kpik --file points.csv --batch-size 1000\n\nA CSV file has lines `period,value[,external_id]` (an optional first line\n`period,value,external_id` is skipped); the period column may also hold an\nRFC 3339 timestamp, placed in the stream's time zone."
)]
pub struct PublishArgs {
    /// File holding the stream's credential (kpik1.…), or - to read it from standard input.
    #[arg(long, env = "KPISTREAM_CREDENTIAL_FILE")]
    credential: PathBuf,
    /// The period: 2026-11-23, 2026-W48, 2026-11 or 2026-Q4.
    #[arg(long, conflicts_with_all = ["at", "file"], requires = "value")]
    period: Option<String>,
    /// An RFC 3339 instant, placed in a period in the stream's time zone.
    #[arg(long, conflicts_with = "file", requires = "value", value_parser = parse_instant)]
    at: Option<jiff::Timestamp>,
    /// The value, as exact decimal text.
    #[arg(long, allow_hyphen_values = true)]
    value: Option<String>,
    /// The id of the source record.
    #[arg(long, default_value = "")]
    external_id: String,
    /// A CSV file of points.
    #[arg(long, conflicts_with_all = ["period", "at", "value"])]
    file: Option<PathBuf>,
    /// Points per signed batch when publishing a file.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    /// Refuse a whole batch when one of its points is invalid.
    #[arg(long)]
    all_or_nothing: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `--at`: an instant with its time and offset. A date alone is refused rather than
/// guessed at (midnight where?): a day is a period.
fn parse_instant(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    if text.parse::<jiff::civil::Date>().is_ok() {
        return Err(format!(
            "{text:?} is a date, not an instant: for that day's period write --period {text}, or give a time, such as {text}T09:30:00Z"
        ));
    }
    Err(format!(
        "{text:?} is not an instant: write it in RFC 3339 with its offset, such as 2026-11-23T09:30:00Z or 2026-11-23T10:30:00+01:00"
    ))
}

/// A point read from input, with the line it came from.
struct Line {
    number: u64,
    point: proto::Point,
}

impl PublishArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let credential = read_credential(&self.credential)?;
        let (source, lines) = self.points()?;
        if lines.is_empty() {
            anyhow::bail!("{source} holds no points");
        }
        let client = self.server.connect_anonymous().await?;
        let mut totals = (0u64, 0u64, 0u64);
        let mut batches = 0;
        for chunk in lines.chunks(self.batch_size as usize) {
            let points = chunk.iter().map(|l| l.point.clone()).collect();
            let first = chunk[0].number;
            let last = chunk[chunk.len() - 1].number;
            let response = client.publish(&credential, points, self.all_or_nothing).await.map_err(|e| {
                let place = match self.file {
                    Some(_) => format!("{source} lines {first}-{last}: batch refused ({batches} earlier batch(es) were stored)"),
                    None => "publish refused".to_owned(),
                };
                status(e).context(place)
            })?;
            batches += 1;
            totals.0 += u64::from(response.accepted);
            totals.1 += u64::from(response.revised);
            totals.2 += response.rejected.len() as u64;
            for rejection in &response.rejected {
                let line = chunk.get(rejection.index as usize).map_or(0, |l| l.number);
                let reason = printable(&rejection.reason);
                match self.file {
                    Some(_) => eprintln!("{source} line {line}: {reason}"),
                    None => eprintln!("rejected: {reason}"),
                }
            }
        }
        let (accepted, revised, rejected) = totals;
        outln!(
            "published {} point(s) in {batches} batch(es): {accepted} accepted ({revised} revised), {rejected} rejected",
            lines.len()
        );
        if rejected > 0 {
            return Err(crate::cli::exit::Rejected(rejected).into());
        }
        Ok(())
    }

    fn points(&self) -> anyhow::Result<(String, Vec<Line>)> {
        if let Some(path) = &self.file {
            return Ok((path.display().to_string(), read_csv(path)?));
        }
        let value = self
            .value
            .clone()
            .context("give --value with --period or --at, or --file")?;
        let point = match (&self.period, self.at) {
            (Some(period), None) => client::point_for_period(period, &value, &self.external_id),
            (None, Some(at)) => client::point_at(at, &value, &self.external_id),
            _ => anyhow::bail!("give --period or --at (or --file)"),
        };
        Ok(("the command line".into(), vec![Line { number: 1, point }]))
    }
}

fn read_credential(path: &PathBuf) -> anyhow::Result<Credential> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the credential from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the credential file {}", path.display()))?
    };
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a valid credential", path.display()))
}

fn read_csv(path: &PathBuf) -> anyhow::Result<Vec<Line>> {
    let source = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {source}"))?;
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{source}: not valid CSV"))?;
        let number = record.position().map_or(0, |p| p.line());
        if lines.is_empty() && record.get(0) == Some("period") {
            continue;
        }
        if record.len() == 1 && record.get(0) == Some("") {
            continue;
        }
        if !(2..=3).contains(&record.len()) {
            anyhow::bail!(
                "{source} line {number}: expected period,value[,external_id], found {} field(s)",
                record.len()
            );
        }
        let when = &record[0];
        let external_id = record.get(2).unwrap_or_default();
        let point = match when.parse::<jiff::Timestamp>() {
            Ok(at) => client::point_at(at, &record[1], external_id),
            Err(_) => client::point_for_period(when, &record[1], external_id),
        };
        lines.push(Line { number, point });
    }
    Ok(lines)
}
