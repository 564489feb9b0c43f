//! The access verbs of the command line (`org`, `user`, `team`, `token`, `grant`,
//! `audit`), run as a user runs them: the real binary against a real server, the admin
//! with the token file of the first start, members with the tokens the CLI gave them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{TestServer, cli};
use serde_json::Value;
use tempfile::TempDir;

/// A folder to run the CLI in, next to a running server.
struct Shell {
    server: TestServer,
    work: TempDir,
}

impl Shell {
    fn start() -> Self {
        Self {
            server: TestServer::start(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.work.path().join(file)
    }

    /// Runs `kpistream ARGS` as the first start's admin.
    fn admin(&self, args: &[&str]) -> Output {
        cli(self.work.path())
            .args(args)
            .env("KPISTREAM_SERVER", &self.server.grpc)
            .env("KPISTREAM_TOKEN_FILE", self.server.token_path())
            .output()
            .unwrap()
    }

    /// Runs `kpistream ARGS` with `KPISTREAM_TOKEN=$(cat TOKEN_FILE)`, as the README does.
    fn with_token(&self, token_file: &str, args: &[&str]) -> Output {
        let token = std::fs::read_to_string(self.path(token_file)).unwrap();
        cli(self.work.path())
            .args(args)
            .env("KPISTREAM_SERVER", &self.server.grpc)
            .env("KPISTREAM_TOKEN", token.trim())
            .output()
            .unwrap()
    }

    /// Runs `kpistream ARGS` with `KPISTREAM_TOKEN=TOKEN`.
    fn with_token_text(&self, token: &str, args: &[&str]) -> Output {
        std::fs::write(self.path("given.token"), token).unwrap();
        self.with_token("given.token", args)
    }

    /// Creates a stream as the admin with `--grant` flags; returns its id.
    fn stream(&self, name: &str, grants: &[&str]) -> String {
        let credential = format!("{}.kpik", name.to_lowercase());
        let mut args = vec![
            "stream",
            "create",
            "--name",
            name,
            "--frequency",
            "monthly",
            "--type",
            "number",
            "--credential-out",
            &credential,
        ];
        for grant in grants {
            args.extend(["--grant", grant]);
        }
        succeeds(self.admin(&args)).trim().to_owned()
    }

    /// Creates a member `user` in `team` and writes their token to `<user>.token`.
    fn member_of(&self, team: &str, user: &str) -> String {
        let token_file = format!("{user}.token");
        succeeds(self.admin(&["team", "create", team]));
        succeeds(self.admin(&["user", "create", user]));
        succeeds(self.admin(&["team", "add", team, user]));
        succeeds(self.admin(&[
            "token",
            "create",
            "--user",
            user,
            "--name",
            "laptop",
            "--token-out",
            &token_file,
        ]));
        token_file
    }
}

/// Standard output of a command that must succeed.
fn succeeds(output: Output) -> String {
    assert!(
        output.status.success(),
        "the command failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Standard error of a command that must fail.
fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "the command succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// `--output json` rows.
fn json(stdout: &str) -> Vec<serde_json::Map<String, Value>> {
    serde_json::from_str::<Vec<Value>>(stdout)
        .unwrap_or_else(|e| panic!("not JSON rows ({e}):\n{stdout}"))
        .into_iter()
        .map(|row| row.as_object().expect("a JSON object per row").clone())
        .collect()
}

/// The values of one column of `--output json` rows.
fn column(stdout: &str, name: &str) -> Vec<String> {
    json(stdout)
        .iter()
        .map(|row| row[name].as_str().expect("text cells").to_owned())
        .collect()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_member_sees_only_the_streams_granted_to_their_team_until_the_grant_is_removed() {
    let sh = Shell::start();
    let token_file = sh.member_of("finance", "ada");
    let token_path = sh.path(&token_file);
    assert_eq!(mode_of(&token_path), 0o600, "the token file is private");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(token.trim().starts_with("kpit_"), "a token: {token:?}");

    let revenue = sh.stream("Revenue", &["team:finance"]);
    let headcount = sh.stream("Headcount", &[]);

    let listed = succeeds(sh.with_token(&token_file, &["stream", "list", "--output", "json"]));
    assert_eq!(column(&listed, "id"), std::slice::from_ref(&revenue));
    let hidden = fails(sh.with_token(&token_file, &["stream", "show", &headcount]));
    assert!(
        hidden.contains(&format!("stream {headcount} was not found")),
        "an ungranted stream looks like no stream: {hidden}"
    );

    let grants = succeeds(sh.admin(&["grant", "list", &revenue, "--output", "json"]));
    let grants: Vec<String> = json(&grants)
        .iter()
        .map(|g| {
            format!(
                "{}:{}",
                g["grantee"].as_str().unwrap(),
                g["access"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(grants, ["team:finance:read", "user:admin:manage"]);

    succeeds(sh.admin(&["grant", "remove", &revenue, "team:finance"]));
    let listed = succeeds(sh.with_token(&token_file, &["stream", "list", "--output", "json"]));
    assert!(column(&listed, "id").is_empty(), "nothing left: {listed}");
    let gone = fails(sh.with_token(&token_file, &["query", &revenue]));
    assert!(gone.contains("was not found"), "{gone}");

    succeeds(sh.admin(&["grant", "add", &revenue, "user:ada"]));
    let listed = succeeds(sh.with_token(&token_file, &["stream", "list", "--output", "json"]));
    assert_eq!(column(&listed, "id"), [revenue], "a direct grant works too");
}

#[test]
fn the_audit_log_lists_each_action_with_the_name_of_who_did_it() {
    let sh = Shell::start();
    let token_file = sh.member_of("finance", "ada");
    let revenue = sh.stream("Revenue", &["team:finance"]);
    succeeds(sh.admin(&["grant", "remove", &revenue, "team:finance"]));
    // A member may make tokens for themselves: that is ada's action, not the admin's.
    succeeds(sh.with_token(
        &token_file,
        &["token", "create", "--name", "ci", "--token-out", "ci.token"],
    ));

    let log = json(&succeeds(sh.admin(&["audit", "list", "--output", "json"])));
    let entries: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().expect("text cells");
            (text("actor"), text("action"), text("target"))
        })
        .collect();
    for expected in [
        ("admin", "team.created", "finance"),
        ("admin", "user.created", "ada"),
        ("admin", "team.member_added", "finance"),
        ("admin", "stream.created", revenue.as_str()),
        ("admin", "grant.removed", revenue.as_str()),
    ] {
        assert!(entries.contains(&expected), "{expected:?} in {entries:?}");
    }
    let tokens: Vec<&str> = entries
        .iter()
        .filter(|(_, action, _)| *action == "token.created")
        .map(|(actor, _, _)| *actor)
        .collect();
    assert_eq!(tokens, ["admin", "ada"], "who made each token");
    let secrets = [
        std::fs::read_to_string(sh.path(&token_file)).unwrap(),
        std::fs::read_to_string(sh.path("ci.token")).unwrap(),
    ];
    let text = serde_json::to_string(&log).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret.trim()), "no token in the audit log");
    }

    let by_ada = succeeds(sh.admin(&["audit", "list", "--actor", "ada", "--output", "json"]));
    assert_eq!(column(&by_ada, "action"), ["token.created"]);
    let about = succeeds(sh.admin(&["audit", "list", "--target", &revenue, "--output", "json"]));
    assert_eq!(
        column(&about, "action"),
        ["stream.created", "grant.removed"]
    );
    let future =
        succeeds(sh.admin(&["audit", "list", "--since", "2999-01-01", "--output", "json"]));
    assert!(json(&future).is_empty(), "{future}");

    let refused = fails(sh.with_token(&token_file, &["audit", "list"]));
    assert!(
        refused.contains("only an organisation admin may read the audit log"),
        "{refused}"
    );
}

#[test]
fn a_revoked_token_makes_the_next_call_fail_saying_the_token_is_not_valid() {
    let sh = Shell::start();
    let token_file = sh.member_of("finance", "ada");
    let me = succeeds(sh.with_token(&token_file, &["user", "whoami"]));
    assert!(me.contains("you are \"ada\", a member"), "{me}");

    let tokens = succeeds(sh.admin(&["token", "list", "--user", "ada", "--output", "json"]));
    let ids = column(&tokens, "id");
    assert_eq!(ids.len(), 1, "{tokens}");
    assert_eq!(column(&tokens, "name"), ["laptop"]);
    let revoked = succeeds(sh.admin(&["token", "revoke", &ids[0]]));
    assert!(
        revoked.contains(&format!("revoked token {}", ids[0])),
        "{revoked}"
    );

    let refused = fails(sh.with_token(&token_file, &["stream", "list"]));
    assert!(refused.contains("the token is not valid"), "{refused}");
    let tokens = succeeds(sh.admin(&["token", "list", "--user", "ada", "--output", "json"]));
    assert_ne!(column(&tokens, "revoked"), [""], "the list shows when");
}

#[test]
fn a_token_written_to_standard_output_appears_there_only_and_expires_when_asked() {
    let sh = Shell::start();
    let output = sh.admin(&[
        "token",
        "create",
        "--name",
        "ci",
        "--expires-in",
        "30d",
        "--token-out",
        "-",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = succeeds(output);
    let secret = stdout.trim();
    assert!(
        secret.starts_with("kpit_") && !secret.contains(' '),
        "{stdout:?}"
    );
    assert!(
        !stderr.contains(secret),
        "the secret is not repeated: {stderr}"
    );
    assert!(stderr.contains("shown only this once"), "{stderr}");

    let tokens = succeeds(sh.admin(&["token", "list", "--output", "json"]));
    let ci = json(&tokens)
        .into_iter()
        .find(|t| t["name"] == "ci")
        .unwrap_or_else(|| panic!("the ci token is listed: {tokens}"));
    let expires: jiff::Timestamp = ci["expires"].as_str().unwrap().parse().unwrap();
    let days = (expires - jiff::Timestamp::now()).get_seconds() / 86_400;
    assert!((29..=30).contains(&days), "expires in 30 days: {expires}");
    assert!(!tokens.contains(secret), "a list never shows a secret");

    let me = succeeds(sh.with_token_text(secret, &["user", "whoami"]));
    assert!(me.contains("you are \"admin\""), "{me}");
}

#[test]
fn a_token_file_is_never_overwritten_and_nothing_is_created_when_it_exists() {
    let sh = Shell::start();
    std::fs::write(sh.path("taken.token"), "keep me").unwrap();
    let refused = fails(sh.admin(&["token", "create", "--token-out", "taken.token"]));
    assert!(refused.contains("taken.token already exists"), "{refused}");
    assert_eq!(
        std::fs::read_to_string(sh.path("taken.token")).unwrap(),
        "keep me"
    );
    let tokens = succeeds(sh.admin(&["token", "list", "--output", "json"]));
    assert_eq!(column(&tokens, "name"), ["first"], "no token was made");
}

#[test]
fn members_may_not_manage_users_and_deletions_need_yes() {
    let sh = Shell::start();
    let token_file = sh.member_of("finance", "ada");
    let refused = fails(sh.with_token(&token_file, &["user", "create", "bob"]));
    assert!(
        refused.contains("only an organisation admin may create users"),
        "{refused}"
    );

    let unconfirmed = fails(sh.admin(&["user", "delete", "ada"]));
    assert!(
        unconfirmed.contains("add --yes to confirm"),
        "{unconfirmed}"
    );
    let unconfirmed = fails(sh.admin(&["team", "delete", "finance"]));
    assert!(
        unconfirmed.contains("add --yes to confirm"),
        "{unconfirmed}"
    );

    succeeds(sh.admin(&["user", "role", "ada", "admin"]));
    let users = succeeds(sh.admin(&["user", "list", "--output", "json"]));
    let ada = json(&users)
        .into_iter()
        .find(|u| u["name"] == "ada")
        .expect("ada is listed");
    assert_eq!(
        (&ada["role"], &ada["teams"]),
        (&"admin".into(), &serde_json::json!(["finance"]))
    );

    succeeds(sh.admin(&["team", "remove", "finance", "ada"]));
    succeeds(sh.admin(&["team", "delete", "finance", "--yes"]));
    succeeds(sh.admin(&["user", "delete", "ada", "--yes"]));
    let users = succeeds(sh.admin(&["user", "list", "--output", "json"]));
    assert_eq!(column(&users, "name"), ["admin"]);
    let teams = succeeds(sh.admin(&["team", "list", "--output", "json"]));
    assert!(json(&teams).is_empty(), "{teams}");
    let refused = fails(sh.with_token(&token_file, &["user", "whoami"]));
    assert!(refused.contains("the token is not valid"), "{refused}");
}

#[test]
fn the_server_admin_creates_an_organisation_that_sees_nothing_of_the_first() {
    let sh = Shell::start();
    sh.stream("Revenue", &["org"]);
    let output = sh.admin(&[
        "org",
        "create",
        "Acme Retail",
        "--admin",
        "grace",
        "--token-out",
        "grace.token",
    ]);
    let stdout = succeeds(output);
    let org_id = stdout.trim();
    assert!(org_id.starts_with("org_"), "the org id: {stdout:?}");
    assert_eq!(mode_of(&sh.path("grace.token")), 0o600);

    let me = succeeds(sh.with_token("grace.token", &["user", "whoami"]));
    assert!(
        me.contains(&format!(
            "you are \"grace\", an admin of organisation \"Acme Retail\" ({org_id})"
        )),
        "{me}"
    );
    assert!(!me.contains("server admin"), "{me}");
    let listed = succeeds(sh.with_token("grace.token", &["stream", "list", "--output", "json"]));
    assert!(json(&listed).is_empty(), "{listed}");
    let refused = fails(sh.with_token(
        "grace.token",
        &[
            "org",
            "create",
            "Other",
            "--admin",
            "x",
            "--token-out",
            "x.token",
        ],
    ));
    assert!(
        refused.contains("only the server admin may create organisations"),
        "{refused}"
    );
    assert!(!sh.path("x.token").exists(), "no file for a refused call");
}
