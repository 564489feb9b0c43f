//! `kpistream connector record NAME` and `kpistream connector test [DIR]`: a
//! connector's source recorded once, and its filter, mapping and aggregation checked
//! against it offline, as a test kept in the repository beside the connector.

use std::path::Path;

use anyhow::Context;

use super::ServerArgs;
use super::connector::{Pull, definitions};
use crate::cli::exit::outln;
use crate::runner::fixture::{
    FORMAT, Fixture, differences, expected_csv, expected_path, fixture_path, read_expected, replay,
};
use crate::text::printable;

/// Pulls the connector's source as a run would (from its stored cursor), publishing
/// nothing and moving nothing, and writes the pages (at most `limit` records) to
/// `NAME.fixture.json` and the points they map to to `NAME.expected.csv`.
pub async fn record(
    name: &str,
    limit: usize,
    dir: &Path,
    server: &ServerArgs,
) -> anyhow::Result<()> {
    let mut pull = Pull::open(name, dir, server).await?;
    let mut pages = Vec::new();
    let mut records = 0;
    while records < limit {
        let Some(mut page) = pull.next_page().await? else {
            break;
        };
        page.truncate(limit - records);
        records += page.len();
        pages.push(page);
    }
    let calendar = &pull.target.calendar;
    let fixture = Fixture {
        kpistream_fixture: FORMAT,
        connector: name.to_owned(),
        recorded_at: jiff::Timestamp::now().to_string(),
        frequency: calendar.frequency.as_str().to_owned(),
        time_zone: calendar.tz.iana_name().unwrap_or("UTC").to_owned(),
        cursor: pull.cursor.clone(),
        pages,
    };
    let replayed = replay(&pull.job.def, &fixture).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let fixture_file = fixture_path(dir, name);
    let mut text = serde_json::to_string_pretty(&fixture)?;
    text.push('\n');
    std::fs::write(&fixture_file, text)
        .with_context(|| format!("{} cannot be written", fixture_file.display()))?;
    let expected_file = expected_path(dir, name);
    std::fs::write(&expected_file, expected_csv(&replayed.points))
        .with_context(|| format!("{} cannot be written", expected_file.display()))?;
    outln!(
        "recorded {records} record(s) in {} page(s) of {name} to {}",
        fixture.pages.len(),
        fixture_file.display()
    );
    outln!(
        "wrote the {} point(s) they map to to {}: check them, they are what `connector test` expects",
        replayed.points.len(),
        expected_file.display()
    );
    Ok(())
}

/// Checks every connector of `dir` that has a fixture; an error when one differs.
pub fn test(dir: &Path) -> anyhow::Result<()> {
    let jobs = definitions(dir)?;
    let mut failed = Vec::new();
    let mut tested = 0;
    for job in &jobs {
        let name = &job.def.name;
        let fixture_file = fixture_path(dir, name);
        if !fixture_file.exists() {
            outln!("no fixture: {name} (record one with `kpistream connector record {name}`)");
            continue;
        }
        tested += 1;
        match check_one(&job.def, dir) {
            Ok(points) => outln!("ok: {name} ({points} point(s))"),
            Err(lines) => {
                outln!("FAILED: {name}");
                for line in lines {
                    outln!("  {}", printable(&line));
                }
                failed.push(name.clone());
            }
        }
    }
    match (tested, failed.len()) {
        (0, _) => anyhow::bail!(
            "no connector of {} has a fixture; record one with `kpistream connector record NAME`",
            dir.display()
        ),
        (_, 0) => Ok(()),
        (_, n) => anyhow::bail!(
            "{n} of {tested} connector(s) differ from their expected points: {}",
            failed.join(", ")
        ),
    }
}

/// The number of points, or what is wrong.
fn check_one(def: &crate::connector::ConnectorDef, dir: &Path) -> Result<usize, Vec<String>> {
    let fixture_file = fixture_path(dir, &def.name);
    let text = std::fs::read_to_string(&fixture_file)
        .map_err(|e| vec![format!("{} cannot be read: {e}", fixture_file.display())])?;
    let fixture: Fixture = serde_json::from_str(&text)
        .map_err(|e| vec![format!("{} is not a fixture: {e}", fixture_file.display())])?;
    if fixture.kpistream_fixture != FORMAT {
        return Err(vec![format!(
            "{} is fixture format {}; this kpistream reads format {FORMAT}: record it again",
            fixture_file.display(),
            fixture.kpistream_fixture
        )]);
    }
    let expected =
        read_expected(&expected_path(dir, &def.name)).map_err(|e| vec![e.to_string()])?;
    let replayed = replay(def, &fixture).map_err(|e| vec![e.to_string()])?;
    let mut problems = differences(&expected, &replayed.points);
    if !problems.is_empty() {
        problems.insert(
            0,
            format!(
                "{} differs from what the recorded records map to:",
                expected_path(dir, &def.name).display()
            ),
        );
        problems.extend(
            replayed
                .rejected
                .iter()
                .take(5)
                .map(|r| format!("(a refused record: {r})")),
        );
        return Err(problems);
    }
    Ok(replayed.points.len())
}
