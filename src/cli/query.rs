//! `kpistream query`: a stream's points in a period range, its latest value, or the
//! revisions of one period.

use super::output::{Format, Rows, time};
use super::{ServerArgs, status};
use crate::client::PeriodRange;
use crate::text::printable;

/// Read a stream's values.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream query str_8fK2mQ1xZp4LwT9a --from 2026-W40 --to 2026-W48\n  kpistream query str_8fK2mQ1xZp4LwT9a --latest --output json\n  kpistream query str_8fK2mQ1xZp4LwT9a --revisions 2026-W48 --output csv\n  kpistream query str_8fK2mQ1xZp4LwT9a --watch --output json"
)]
pub struct QueryArgs {
    stream: String,
    /// First period (inclusive).
    #[arg(long, conflicts_with_all = ["latest", "revisions"])]
    from: Option<String>,
    /// Last period (inclusive).
    #[arg(long, conflicts_with_all = ["latest", "revisions"])]
    to: Option<String>,
    /// At most this many points (the server caps it at 10,000).
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
    #[arg(long, value_enum, default_value_t)]
    output: Format,
    #[command(flatten)]
    server: ServerArgs,
}

impl QueryArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.server.connect().await?;
        if self.watch {
            return watch(&client, &self.stream, self.output).await;
        }
        if let Some(period) = self.revisions {
            let revisions = client
                .revisions(&self.stream, &period)
                .await
                .map_err(status)?;
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
                    r.period,
                    r.old_value,
                    r.new_value,
                    time(&r.revised_at),
                    r.batch_id,
                    r.key_id,
                ]);
            }
            return rows.print(self.output);
        }
        let points = if self.latest {
            vec![client.latest(&self.stream).await.map_err(status)?]
        } else {
            let range = PeriodRange {
                from: self.from,
                to: self.to,
                limit: self.limit,
            };
            client.points(&self.stream, &range).await.map_err(status)?
        };
        let mut rows = Rows::new(vec![
            "period",
            "value",
            "external_id",
            "updated_at",
            "revisions",
        ]);
        for p in points {
            rows.push(vec![
                p.period,
                p.value,
                p.external_id,
                time(&p.updated_at),
                p.revision_count.to_string(),
            ]);
        }
        rows.print(self.output)
    }
}

/// Prints each point on its own line as it arrives: tab-separated for tables, one JSON
/// object per line, or CSV rows after a header. When the reader falls so far behind
/// that the server ends the watch (ABORTED), it watches again from the last point
/// printed, so the output has no gap.
async fn watch(client: &crate::client::Client, stream: &str, output: Format) -> anyhow::Result<()> {
    let mut points = client.watch(stream, true).await.map_err(status)?;
    if let Format::Csv = output {
        println!("period,value,external_id,updated_at");
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

fn print_point(point: &crate::proto::DataPoint, output: Format) -> anyhow::Result<()> {
    let updated = time(&point.updated_at);
    match output {
        Format::Table => println!(
            "{}\t{}\t{}\t{updated}",
            printable(&point.period),
            printable(&point.value),
            printable(&point.external_id)
        ),
        Format::Json => println!(
            "{}",
            serde_json::json!({"period": point.period, "value": point.value, "external_id": point.external_id, "updated_at": updated})
        ),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([&point.period, &point.value, &point.external_id, &updated])?;
            w.flush()?;
        }
    }
    Ok(())
}
