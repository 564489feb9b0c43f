//! The README's runnable sections: the `$ command` lines of their console blocks with
//! the output each shows, and the normalisation that lets a real run be compared with
//! them (ids, times and other per-run values become stable placeholders).

use std::collections::HashMap;

use regex::Regex;

/// One command of a section and the output the README shows for it.
pub struct Step {
    pub command: String,
    pub expected: String,
}

/// The steps of every section between a `start` and an `end` marker, in order.
pub fn steps_between(readme: &str, start: &str, end: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut rest = readme;
    while let Some(from) = rest.find(start) {
        let to = rest[from..]
            .find(end)
            .expect("every start marker has its end")
            + from;
        collect_steps(&rest[from..to], &mut steps);
        rest = &rest[to..];
    }
    steps
}

/// The `$ command` lines of the console blocks of one section, with the output lines
/// that follow each.
fn collect_steps(section: &str, steps: &mut Vec<Step>) {
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_owned(),
                expected: String::new(),
            }),
            None => {
                let step = steps.last_mut().expect("output follows a command");
                step.expected.push_str(line);
                step.expected.push('\n');
            }
        }
    }
}

/// The steps as the README shows them and as a run printed them (`outputs`, one per
/// step), both normalised: `(got, expected)`.
pub fn transcripts(steps: &[Step], outputs: &[impl AsRef<str>]) -> (String, String) {
    let expected: String = steps
        .iter()
        .map(|s| format!("$ {}\n{}", s.command, s.expected))
        .collect();
    let got: String = steps
        .iter()
        .zip(outputs)
        .map(|(s, out)| format!("$ {}\n{}", s.command, out.as_ref()))
        .collect();
    (normalize(&got), normalize(&expected))
}

/// Replaces what differs from run to run by stable placeholders: ids are numbered in
/// order of first appearance (so "the same key twice" still has to hold), times,
/// batch ids, the host and process in a CLI runner's id, and a stream that went stale
/// while the walk-through's dates aged.
pub fn normalize(text: &str) -> String {
    let mut names: HashMap<String, String> = HashMap::new();
    let ids = Regex::new(r"\b(str|key|tok)_[A-Za-z0-9]{10,32}\b").unwrap();
    let text = ids.replace_all(text, |c: &regex::Captures| {
        let n = names.len() + 1;
        names
            .entry(c[0].to_owned())
            .or_insert_with(|| format!("{}_{n:0>width$}", &c[1], width = c[0].len() - 4))
            .clone()
    });
    let time = Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z").unwrap();
    let uuid = Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let runner = Regex::new(r"\bcli-[A-Za-z0-9.-]+-\d+\b").unwrap();
    let stale = Regex::new(r"(?m)^status:( +)stale$").unwrap();
    let text = time.replace_all(&text, "YYYY-MM-DDTHH:MM:SSZ");
    let text = uuid.replace_all(&text, "<uuid>");
    let text = runner.replace_all(&text, "cli-HOST-PID");
    stale.replace_all(&text, "status:${1}active").into_owned()
}
