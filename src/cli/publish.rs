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
    /// Publish a file's good rows even when some rows are malformed (each is named);
    /// without it, a file with a malformed row publishes nothing.
    #[arg(long, requires = "file")]
    skip_bad_rows: bool,
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

/// Most problems (malformed rows, rejected points) named one by one; the rest are
/// counted.
const MAX_NAMED: u64 = 20;

/// Totals of a publish.
#[derive(Default)]
struct Totals {
    points: u64,
    batches: u64,
    accepted: u64,
    revised: u64,
    rejected: u64,
}

impl PublishArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let credential = read_credential(&self.credential)?;
        let client = self.server.connect_anonymous().await?;
        let totals = match &self.file {
            Some(path) => self.publish_file(&client, &credential, path).await?,
            None => {
                let point = self.point()?;
                let mut totals = Totals::default();
                self.send(
                    &client,
                    &credential,
                    None,
                    &[Line { number: 1, point }],
                    &mut totals,
                )
                .await?;
                totals
            }
        };
        outln!(
            "published {} point(s) in {} batch(es): {} accepted ({} revised), {} rejected",
            totals.points,
            totals.batches,
            totals.accepted,
            totals.revised,
            totals.rejected
        );
        if totals.rejected > MAX_NAMED {
            eprintln!(
                "({} more rejected point(s) not named above)",
                totals.rejected - MAX_NAMED
            );
        }
        if totals.rejected > 0 {
            return Err(crate::cli::exit::Rejected(totals.rejected).into());
        }
        Ok(())
    }

    fn point(&self) -> anyhow::Result<proto::Point> {
        let value = self
            .value
            .clone()
            .context("give --value with --period or --at, or --file")?;
        Ok(match (&self.period, self.at) {
            (Some(period), None) => client::point_for_period(period, &value, &self.external_id),
            (None, Some(at)) => client::point_at(at, &value, &self.external_id),
            _ => anyhow::bail!("give --period or --at (or --file)"),
        })
    }

    /// A CSV file, read twice and never held whole: once to check every row (a
    /// malformed row stops everything unless --skip-bad-rows) and count them, once to
    /// publish them batch by batch behind a progress bar.
    async fn publish_file(
        &self,
        client: &crate::client::Client,
        credential: &Credential,
        path: &std::path::Path,
    ) -> anyhow::Result<Totals> {
        let source = path.display().to_string();
        // Read twice: a pipe would be empty the second time.
        let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        if !regular {
            return Err(crate::cli::exit::UsageError(format!(
                "{source} is not a regular file: --file reads it twice (to check, then to publish), so save a pipe's output to a file first"
            ))
            .into());
        }
        let mut good = 0u64;
        let mut bad = 0u64;
        for row in csv_rows(path)? {
            match row? {
                Ok(_) => good += 1,
                Err((line, why)) => {
                    bad += 1;
                    if bad <= MAX_NAMED {
                        eprintln!("{source} line {line}: {why}");
                    }
                }
            }
        }
        if bad > MAX_NAMED {
            eprintln!(
                "{source}: {} more malformed row(s) not named above",
                bad - MAX_NAMED
            );
        }
        if bad > 0 && !self.skip_bad_rows {
            return Err(crate::cli::exit::UsageError(format!(
                "{source} has {bad} malformed row(s) (named above): nothing was published; fix them, or publish the {good} good row(s) with --skip-bad-rows"
            ))
            .into());
        }
        if good == 0 {
            anyhow::bail!("{source} holds no points");
        }
        let bar = progress_bar(good);
        let mut totals = Totals::default();
        let mut chunk = Vec::with_capacity(self.batch_size as usize);
        for row in csv_rows(path)? {
            let Ok(line) = row? else { continue };
            chunk.push(line);
            if chunk.len() == self.batch_size as usize {
                self.send(client, credential, Some(&source), &chunk, &mut totals)
                    .await?;
                bar.inc(chunk.len() as u64);
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.send(client, credential, Some(&source), &chunk, &mut totals)
                .await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        if totals.points != good {
            anyhow::bail!(
                "{source} changed while it was published: {good} good row(s) when checked, {} published",
                totals.points
            );
        }
        Ok(totals)
    }

    /// Publishes one batch and reports its rejected points by the line they came from.
    async fn send(
        &self,
        client: &crate::client::Client,
        credential: &Credential,
        source: Option<&str>,
        chunk: &[Line],
        totals: &mut Totals,
    ) -> anyhow::Result<()> {
        let points = chunk.iter().map(|l| l.point.clone()).collect();
        let response = client
            .publish(credential, points, self.all_or_nothing)
            .await
            .map_err(|e| {
                // --all-or-nothing: the batch's invalid points, by their lines.
                if let Some(invalid) = all_or_nothing_refusal(&e) {
                    let text = with_lines(e.message(), chunk);
                    match source {
                        Some(source) => eprintln!(
                            "{source} lines {}-{}: {}",
                            chunk[0].number,
                            chunk[chunk.len() - 1].number,
                            printable(&text)
                        ),
                        None => eprintln!("rejected: {}", printable(&text)),
                    }
                    return crate::cli::exit::Rejected(invalid).into();
                }
                let place = match source {
                    Some(source) => format!(
                        "{source} lines {}-{}: batch refused ({} earlier batch(es) were stored)",
                        chunk[0].number,
                        chunk[chunk.len() - 1].number,
                        totals.batches
                    ),
                    None => "publish refused".to_owned(),
                };
                status(e).context(place)
            })?;
        totals.batches += 1;
        totals.points += chunk.len() as u64;
        totals.accepted += u64::from(response.accepted);
        totals.revised += u64::from(response.revised);
        for rejection in &response.rejected {
            totals.rejected += 1;
            if totals.rejected > MAX_NAMED {
                continue;
            }
            let line = chunk.get(rejection.index as usize).map_or(0, |l| l.number);
            let reason = with_lines(&rejection.reason, chunk);
            let reason = printable(&reason);
            match source {
                Some(source) => eprintln!("{source} line {line}: {reason}"),
                None => eprintln!("rejected: {reason}"),
            }
        }
        Ok(())
    }
}

/// How many points an all-or-nothing batch was refused for, when `status` is that
/// refusal.
fn all_or_nothing_refusal(status: &tonic::Status) -> Option<u64> {
    let rest = status
        .message()
        .strip_prefix("all_or_nothing was asked and ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (status.code() == tonic::Code::InvalidArgument)
        .then(|| digits.parse().ok())
        .flatten()
}

/// A rejection reason with the batch's point numbers ("point 3") turned into the
/// file's line numbers, so that a message names lines only.
fn with_lines(reason: &str, chunk: &[Line]) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest.find("point ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "point ".len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        match after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|i| chunk.get(i))
        {
            Some(line) if digits > 0 => {
                out.push_str(&format!("line {}", line.number));
                rest = &after[digits..];
            }
            _ => {
                out.push_str("point ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "publishing [{bar:40}] {pos}/{len} points ({eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
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

/// A row of a points file: a point with its line, or the line and why it is not one.
type Row = Result<Line, (u64, String)>;

/// The rows of a points file, read as they are needed (`period,value[,external_id]`;
/// a first line `period,…` and empty lines are skipped). An error reading the file
/// itself ends the iteration.
fn csv_rows(path: &std::path::Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Row>>> {
    let source = path.display().to_string();
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {source}"))?;
    let mut first = true;
    Ok(reader.into_records().filter_map(move |record| {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return match e.kind() {
                    csv::ErrorKind::Io(_) => Some(Err(
                        anyhow::Error::new(e).context(format!("cannot read {source}"))
                    )),
                    _ => Some(Ok(Err((
                        line,
                        "not valid CSV (a quote left open, or bytes that are not UTF-8)".to_owned(),
                    )))),
                };
            }
        };
        let number = record.position().map_or(0, |p| p.line());
        let header = first && record.get(0) == Some("period");
        first = false;
        if header || (record.len() == 1 && record.get(0) == Some("")) {
            return None;
        }
        if !(2..=3).contains(&record.len()) {
            return Some(Ok(Err((
                number,
                format!(
                    "expected period,value[,external_id], found {} field(s)",
                    record.len()
                ),
            ))));
        }
        let when = &record[0];
        let external_id = record.get(2).unwrap_or_default();
        let point = match when.parse::<jiff::Timestamp>() {
            Ok(at) => client::point_at(at, &record[1], external_id),
            Err(_) => client::point_for_period(when, &record[1], external_id),
        };
        Some(Ok(Ok(Line { number, point })))
    }))
}
