//! `kpistream query`: a stream's points in a period range, its latest value, or the
//! revisions of one period.

use super::output::{Format, Rows, time};
use super::{ServerArgs, status};
use crate::proto;

/// Read a stream's values.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream query str_8fK2mQ1xZp4LwT9a --from 2026-W40 --to 2026-W48\n  kpistream query str_8fK2mQ1xZp4LwT9a --latest --output json\n  kpistream query str_8fK2mQ1xZp4LwT9a --revisions 2026-W48 --output csv"
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
    #[arg(long, value_enum, default_value_t)]
    output: Format,
    #[command(flatten)]
    server: ServerArgs,
}

impl QueryArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut query = self.server.connect().await?.query();
        if let Some(period) = self.revisions {
            let list = query
                .list_revisions(proto::ListRevisionsRequest {
                    stream_id: self.stream,
                    period,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut rows = Rows::new(vec![
                "period",
                "old_value",
                "new_value",
                "revised_at",
                "batch_id",
                "key_id",
            ]);
            for r in list.revisions {
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
            vec![
                query
                    .latest(proto::LatestRequest {
                        stream_id: self.stream,
                    })
                    .await
                    .map_err(status)?
                    .into_inner(),
            ]
        } else {
            let request = proto::ListPointsRequest {
                stream_id: self.stream,
                from: self.from.unwrap_or_default(),
                to: self.to.unwrap_or_default(),
                limit: self.limit,
            };
            query
                .list_points(request)
                .await
                .map_err(status)?
                .into_inner()
                .points
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
