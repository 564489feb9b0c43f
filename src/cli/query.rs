//! `kpistream query`: a stream's points in a period range, its latest value, or the
//! revisions of one period.

use super::output::{Cell, Format, OutputArgs, Rows, time, time_text};
use super::{ServerArgs, status};
use crate::cli::exit::outln;
use crate::client::PeriodRange;
use crate::text::printable;

/// Read a stream's values.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream query str_8fK2mQ1xZp4LwT9a --from 2026-W40 --to 2026-W48\n  kpistream query str_8fK2mQ1xZp4LwT9a --latest --output json\n  kpistream query str_8fK2mQ1xZp4LwT9a --revisions 2026-W48 --output csv\n  kpistream query str_8fK2mQ1xZp4LwT9a --watch --output json"
)]
pub struct QueryArgs {
    /// The stream: its id, or its exact name.
    stream: String,
    /// First period (inclusive).
    #[arg(long, conflicts_with_all = ["latest", "revisions"])]
    from: Option<String>,
    /// Last period (inclusive).
    #[arg(long, conflicts_with_all = ["latest", "revisions"])]
    to: Option<String>,
    /// At most this many points, oldest first (default: all of them, read page by page).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    limit: u32,
    /// Only the latest period's value.
    #[arg(long, conflicts_with = "revisions")]
    latest: bool,
    /// The history of one period's value.
    #[arg(long, value_name = "PERIOD")]
    revisions: Option<String>,
    /// Print points as they are committed (after the latest one), until interrupted.
    #[arg(long, conflicts_with_all = ["from", "to", "latest", "revisions"])]
    watch: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl QueryArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let (client, stream) = self.server.connect_stream(&self.stream).await?;
        if self.watch {
            return watch(&client, &stream, &self.output).await;
        }
        if let Some(period) = self.revisions {
            let revisions = client.revisions(&stream, &period).await.map_err(status)?;
            let mut rows = Rows::new(vec![
                "period",
                "old_value",
                "new_value",
                "revised_at",
                "batch_id",
                "key_id",
            ]);
            for r in revisions {
                rows.push(vec![
                    r.period.into(),
                    Cell::Decimal(r.old_value),
                    Cell::Decimal(r.new_value),
                    time(&r.revised_at),
                    r.batch_id.into(),
                    r.key_id.into(),
                ]);
            }
            return rows.print(&self.output);
        }
        let points = if self.latest {
            vec![client.latest(&stream).await.map_err(status)?]
        } else {
            let range = PeriodRange {
                from: self.from,
                to: self.to,
                limit: self.limit,
            };
            client.points(&stream, &range).await.map_err(status)?
        };
        let mut rows = Rows::new(POINT_COLUMNS.to_vec());
        for p in &points {
            rows.push(point_cells(p));
        }
        rows.print(&self.output)
    }
}

/// Prints each point on its own line as it arrives: under a header for tables (a
/// revised period says so) and CSV, one JSON object per line for json and jsonl (a
/// watch has no end, so no single document). When the reader falls so far behind that
/// the server ends the watch (ABORTED), it watches again from the last point printed,
/// so the output has no gap.
async fn watch(
    client: &crate::client::Client,
    stream: &str,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let mut points = client.watch(stream, true).await.map_err(status)?;
    if !output.quiet {
        match output.output {
            Format::Table => outln!(
                "{:<12}  {:<20}  {:<20}  {:<20}  REVISIONS",
                "PERIOD",
                "VALUE",
                "EXTERNAL ID",
                "UPDATED AT"
            ),
            Format::Csv => outln!("{}", POINT_COLUMNS.join(",")),
            Format::Json | Format::Jsonl => {}
        }
    }
    let mut last_seen = None;
    loop {
        let point = match points.message().await {
            Ok(Some(point)) => point,
            Ok(None) => return Ok(()),
            Err(e) if e.code() == tonic::Code::Aborted && last_seen.is_some() => {
                eprintln!("{}: resuming", printable(e.message()));
                let since = last_seen.expect("checked above");
                points = client.watch_since(stream, since).await.map_err(status)?;
                continue;
            }
            Err(e) => return Err(status(e)),
        };
        if point.updated_at.is_some() {
            last_seen = point.updated_at;
        }
        print_point(&point, output)?;
    }
}

/// The columns of a point, as `query` prints them.
const POINT_COLUMNS: [&str; 5] = ["period", "value", "external_id", "updated_at", "revisions"];

fn point_cells(p: &crate::proto::DataPoint) -> Vec<Cell> {
    vec![
        p.period.clone().into(),
        Cell::Decimal(p.value.clone()),
        Cell::opt(p.external_id.clone()),
        time(&p.updated_at),
        p.revision_count.into(),
    ]
}

fn print_point(point: &crate::proto::DataPoint, output: &OutputArgs) -> anyhow::Result<()> {
    if output.quiet {
        outln!("{}", printable(&point.period));
        return Ok(());
    }
    match output.output {
        Format::Table => {
            let revised = match point.revision_count {
                0 => "0".to_owned(),
                n => format!("{n} (revised)"),
            };
            let external = match point.external_id.as_str() {
                "" => "-".into(),
                id => printable(id),
            };
            outln!(
                "{:<12}  {:<20}  {:<20}  {:<20}  {revised}",
                printable(&point.period),
                printable(&point.value),
                external,
                time_text(&point.updated_at),
            )
        }
        Format::Json | Format::Jsonl => {
            let mut rows = Rows::new(POINT_COLUMNS.to_vec());
            rows.push(point_cells(point));
            rows.print(&OutputArgs {
                output: Format::Jsonl,
                quiet: false,
            })?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            let cells = [
                point.period.clone(),
                point.value.clone(),
                point.external_id.clone(),
                time_text(&point.updated_at),
                point.revision_count.to_string(),
            ];
            w.write_record(&cells)?;
            w.flush()?;
        }
    }
    Ok(())
}
