//! The web console's security, against the real server on its HTTP port: no page
//! answers without a session; a session is an HttpOnly, SameSite=Strict cookie given for
//! a valid token and ended by sign-out or by revoking the token; forms without the CSRF
//! token are refused; every answer carries the Content-Security-Policy; a session of one
//! organisation gets 404 for another's streams, exactly as for a stream that does not
//! exist; a member sees only the streams granted to them; text users chose is escaped.

mod common;

use common::{TestServer, point, publish_envelope, sealed};
use kpistream::auth::Role;
use kpistream::console::CONTENT_SECURITY_POLICY;
use kpistream::proto;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY as CSP, LOCATION, SET_COOKIE};
use secrecy::ExposeSecret;

/// A browser's view of the console: its cookies, and no automatic redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Self {
            base: format!("http://{}", server.http),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps what `Set-Cookie` says (an empty value deletes the cookie).
    fn remember(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (name, rest) = text.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.remember(&response);
        response
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.remember(&response);
        response
    }

    /// Loads the sign-in page and posts `token` with its CSRF token; the answer.
    async fn sign_in(&mut self, token: &str) -> reqwest::Response {
        let page = self.get("/console/sign-in").await.text().await.unwrap();
        let csrf = hidden_csrf(&page);
        self.post("/console/sign-in", &[("token", token), ("csrf", &csrf)])
            .await
    }
}

/// The CSRF token of a page's form.
fn hidden_csrf(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_owned()
}

fn redirects_to(response: &reqwest::Response, path: &str) -> bool {
    response.status() == StatusCode::SEE_OTHER
        && response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            == Some(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_page_answers_without_a_session_and_every_answer_carries_the_policy() {
    let server = TestServer::start();
    let (stream_id, _) = server.daily_stream("Sign-ups").await;
    let mut browser = Browser::new(&server);
    for path in [
        "/console".to_owned(),
        format!("/console/streams/{stream_id}"),
        "/console/streams/str_x".to_owned(),
        "/console/streams/new".to_owned(),
        format!("/console/streams/{stream_id}/periods/2026-01-01"),
        format!("/console/streams/{stream_id}/events"),
        format!("/console/streams/{stream_id}/credential"),
        format!("/console/streams/{stream_id}/delete"),
        "/console/connectors".to_owned(),
        "/console/connectors/erp".to_owned(),
        "/console/connectors/erp/events".to_owned(),
        "/console/people".to_owned(),
        "/console/categories".to_owned(),
        "/console/audit".to_owned(),
        "/console/tokens/tok_x/secret".to_owned(),
    ] {
        let path = path.as_str();
        let response = browser.get(path).await;
        assert!(
            redirects_to(&response, "/console/sign-in"),
            "{path}: {response:?}"
        );
        let csp = response
            .headers()
            .get(CSP)
            .expect("a Content-Security-Policy");
        assert_eq!(csp, CONTENT_SECURITY_POLICY);
    }
    let response = browser.post("/console/sign-out", &[("csrf", "x")]).await;
    assert!(redirects_to(&response, "/console/sign-in"));
    let root = browser.get("/").await;
    assert!(redirects_to(&root, "/console"));
    let css = browser.get("/console/console.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers().get(CSP).is_some());
    let missing = browser.get("/console/nothing-here").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers().get(CSP).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_becomes_a_strict_session_cookie_that_sign_out_and_revocation_end() {
    let server = TestServer::start();
    let admin = server.client().await;
    admin.create_user("grace", Role::Member).await.unwrap();
    let (token, secret) = admin
        .create_token("laptop", Some("grace"), None)
        .await
        .unwrap();
    let mut browser = Browser::new(&server);

    // The form is bound to the browser that loaded it.
    let page = browser.get("/console/sign-in").await;
    let cookie = page
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let csrf = hidden_csrf(&page.text().await.unwrap());
    let mut stranger = Browser::new(&server);
    let refused = stranger
        .post(
            "/console/sign-in",
            &[("token", secret.expose_secret()), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "no CSRF cookie");
    assert!(stranger.cookies.is_empty(), "no session");

    let wrong = browser.sign_in("kpit_not-a-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That token is not valid")
    );

    let signed_in = browser.sign_in(secret.expose_secret()).await;
    assert!(redirects_to(&signed_in, "/console"));
    let session = signed_in
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("kpistream_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(session.contains(flag), "{flag}: {session}");
    }
    assert!(
        !session.contains(secret.expose_secret()),
        "the cookie is not the token"
    );
    let overview = browser.get("/console").await;
    assert_eq!(overview.status(), StatusCode::OK);
    let page = overview.text().await.unwrap();
    assert!(page.contains("grace"), "the page names who is signed in");
    assert!(
        !page.contains(secret.expose_secret()),
        "the token is in no page"
    );

    // Sign-out needs the session's CSRF token, then ends the session.
    let refused = browser
        .post("/console/sign-out", &[("csrf", "forged")])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get("/console").await.status(),
        StatusCode::OK,
        "still signed in"
    );
    let session_cookie = browser.cookie_header();
    let csrf = hidden_csrf(&page);
    let out = browser.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert!(redirects_to(&out, "/console/sign-in"));
    let mut replay = Browser::new(&server);
    replay.cookies = vec![(
        "kpistream_session".into(),
        session_cookie
            .trim_start_matches("kpistream_session=")
            .to_owned(),
    )];
    assert!(
        redirects_to(&replay.get("/console").await, "/console/sign-in"),
        "the old cookie is dead"
    );

    // A revoked token ends its sessions at once.
    assert!(redirects_to(
        &browser.sign_in(secret.expose_secret()).await,
        "/console"
    ));
    admin.revoke_token(&token.id).await.unwrap();
    assert!(redirects_to(
        &browser.get("/console").await,
        "/console/sign-in"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_sees_only_its_grants_and_another_organisations_stream_is_not_found() {
    let server = TestServer::start();
    let admin = server.client().await;
    let (shared, credential) = server
        .daily_stream("Shared <script>alert(1)</script>")
        .await;
    let (private, _) = server.daily_stream("Private revenue").await;
    let yesterday = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .unwrap()
        .to_string();
    let envelope = sealed(&credential, vec![point(&yesterday, "1520.25")]);
    publish_envelope(&admin, envelope, true).await.unwrap();
    admin.create_user("grace", Role::Member).await.unwrap();
    admin.add_grant(&shared, "user:grace").await.unwrap();
    let (_, grace) = admin
        .create_token("laptop", Some("grace"), None)
        .await
        .unwrap();
    let other_org = admin.create_org("Globex", "hank").await.unwrap();

    let mut member = Browser::new(&server);
    member.sign_in(grace.expose_secret()).await;
    let page = member.get("/console").await.text().await.unwrap();
    assert!(
        page.contains(&format!("/console/streams/{shared}")),
        "{page}"
    );
    assert!(
        !page.contains(&private),
        "an ungranted stream is not listed"
    );
    assert!(
        page.contains("Shared &lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(!page.contains("<script>alert(1)</script>"));
    let stream_page = member.get(&format!("/console/streams/{shared}")).await;
    assert_eq!(stream_page.status(), StatusCode::OK);
    let text = stream_page.text().await.unwrap();
    assert!(
        text.contains("1520.25") && text.contains(&yesterday),
        "the point is shown"
    );
    assert!(
        !text.contains(">Keys</h2>") && !text.contains("/disable"),
        "a reader sees neither the keys nor the controls"
    );
    // A reader's forms are refused by the API's rules, with its own CSRF token.
    let csrf = hidden_csrf(&text);
    let refused = member
        .post(
            &format!("/console/streams/{shared}/disable"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = member
        .post(
            &format!("/console/streams/{private}/disable"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        refused.status(),
        StatusCode::NOT_FOUND,
        "not granted: not found"
    );
    assert_eq!(
        member.get("/console/connectors").await.status(),
        StatusCode::FORBIDDEN,
        "connectors are for admins and runners"
    );
    let bars = member
        .get(&format!("/console/streams/{shared}?chart=bars"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        bars.contains("class=\"bar\"") && bars.contains(&format!("{yesterday}: 1520.25")),
        "the same values as bars"
    );
    let ungranted = member.get(&format!("/console/streams/{private}")).await;
    assert_eq!(ungranted.status(), StatusCode::NOT_FOUND);

    let mut hank = Browser::new(&server);
    hank.sign_in(other_org.token.expose_secret()).await;
    let page = hank.get("/console").await.text().await.unwrap();
    assert!(
        !page.contains(&shared) && !page.contains(&private),
        "nothing of another org"
    );
    let foreign = hank.get(&format!("/console/streams/{shared}")).await;
    let foreign_status = foreign.status();
    let foreign_body = foreign.text().await.unwrap();
    let unknown = hank.get("/console/streams/str_0000000000000000").await;
    assert_eq!(foreign_status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        foreign_body,
        unknown.text().await.unwrap(),
        "the same answer"
    );
    let hank_page = hank.get("/console").await.text().await.unwrap();
    let hank_csrf = hidden_csrf(&hank_page);
    for path in [
        format!("/console/streams/{shared}/periods/{yesterday}"),
        format!("/console/streams/{shared}/events"),
        format!("/console/streams/{shared}/delete"),
        "/console/connectors/erp".to_owned(),
    ] {
        let status = hank.get(&path).await.status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["disable", "keys", "grants", "delete"] {
        let response = hank
            .post(
                &format!("/console/streams/{shared}/{path}"),
                &[("csrf", &hank_csrf), ("kind", "org"), ("confirm", "x")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // The admin manages the stream: its page lists the keys.
    let mut ada = Browser::new(&server);
    ada.sign_in(&server.token).await;
    let page = ada
        .get(&format!("/console/streams/{shared}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(">Keys</h2>") && page.contains(credential.key_id().as_str()));
    assert!(page.contains("user:grace"), "and the grants");
}

/// The console's forms, each posted to a stream's or a connector's path.
const FORMS: [&str; 22] = [
    "/console/streams",
    "/console/streams/{id}/keys",
    "/console/streams/{id}/keys/revoke",
    "/console/streams/{id}/disable",
    "/console/streams/{id}/enable",
    "/console/streams/{id}/delete",
    "/console/streams/{id}/grants",
    "/console/streams/{id}/grants/remove",
    "/console/connectors/erp/run",
    "/console/connectors/erp/enable",
    "/console/connectors/erp/disable",
    "/console/people",
    "/console/people/role",
    "/console/people/delete",
    "/console/teams",
    "/console/teams/members",
    "/console/tokens",
    "/console/tokens/revoke",
    "/console/categories",
    "/console/categories/rename",
    "/console/categories/delete",
    "/console/teams/delete",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_form_without_the_session_csrf_token_is_refused_and_changes_nothing() {
    let server = TestServer::start();
    let admin = server.client().await;
    let (id, credential) = server.daily_stream("Sign-ups").await;
    let mut browser = Browser::new(&server);
    browser.sign_in(&server.token).await;
    let page = browser
        .get(&format!("/console/streams/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = hidden_csrf(&page);
    let key = credential.key_id().to_string();
    let grants_before = admin.grants(&id).await.unwrap();
    for form in FORMS {
        let path = form.replace("{id}", &id);
        let fields = [
            ("name", "Forged"),
            ("role", "admin"),
            ("team", "forged"),
            ("user", "admin"),
            ("frequency", "daily"),
            ("value_type", "number"),
            ("key_id", key.as_str()),
            ("confirm", "Sign-ups"),
            ("kind", "org"),
            ("grantee", "org"),
        ];
        let without = browser.post(&path, &fields).await;
        assert_eq!(
            without.status(),
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        let body = without.text().await.unwrap();
        assert!(body.contains("CSRF token does not match"), "{body}");
        let mut forged = fields.to_vec();
        forged.push(("csrf", "forged"));
        let with_forged = browser.post(&path, &forged).await;
        assert_eq!(
            with_forged.status(),
            StatusCode::FORBIDDEN,
            "{path} with a forged token"
        );
        // Another session's token is no better.
        let mut other = Browser::new(&server);
        other.sign_in(&server.token).await;
        let mut theirs = fields.to_vec();
        theirs.push(("csrf", csrf.as_str()));
        let crossed = other.post(&path, &theirs).await;
        assert_eq!(
            crossed.status(),
            StatusCode::FORBIDDEN,
            "{path} with another session's token"
        );
    }
    let streams = admin.streams(&Default::default()).await.unwrap();
    assert_eq!(streams.len(), 1, "nothing created, nothing deleted");
    assert_ne!(
        streams[0].status,
        proto::StreamStatus::Disabled as i32,
        "not disabled"
    );
    let keys = admin.keys(&id).await.unwrap();
    assert_eq!(keys.len(), 1, "no key rotated");
    assert!(keys[0].revoked_at.is_none(), "none revoked");
    assert_eq!(admin.grants(&id).await.unwrap(), grants_before, "no grant");
    let users = admin.users(0).await.unwrap();
    assert_eq!(users.len(), 1, "no user added: {users:?}");
    assert!(admin.teams().await.unwrap().is_empty(), "no team");
    assert!(admin.categories().await.unwrap().is_empty(), "no category");
}

/// The `href` of the page's credential download link, decoded.
fn downloaded_credential(page: &str) -> String {
    let marker = "href=\"data:application/octet-stream;base64,";
    let start = page.find(marker).expect("a download link") + marker.len();
    let data = page[start..].split('"').next().unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap();
    String::from_utf8(bytes).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_creates_a_stream_whose_credential_is_shown_once_then_rotates_revokes_and_deletes()
{
    let server = TestServer::start();
    let admin = server.client().await;
    let mut ada = Browser::new(&server);
    ada.sign_in(&server.token).await;
    let form = ada.get("/console/streams/new").await.text().await.unwrap();
    let csrf = hidden_csrf(&form);

    // The API's own sentence for a bad field, and the form keeps what was typed.
    let bad = ada
        .post(
            "/console/streams",
            &[
                ("csrf", &csrf),
                ("name", "Revenue"),
                ("frequency", "monthly"),
                ("value_type", "currency"),
                ("currency", "XYZ"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let text = bad.text().await.unwrap();
    assert!(
        text.contains("XYZ") && text.contains("value=\"Revenue\""),
        "{text}"
    );
    let no_category = ada
        .post(
            "/console/streams",
            &[
                ("csrf", &csrf),
                ("name", "Revenue"),
                ("frequency", "monthly"),
                ("value_type", "number"),
                ("category", "Finance"),
            ],
        )
        .await;
    assert_eq!(no_category.status(), StatusCode::BAD_REQUEST);
    assert!(no_category.text().await.unwrap().contains("Finance"));
    admin.create_category("Finance").await.unwrap();

    let created = ada
        .post(
            "/console/streams",
            &[
                ("csrf", &csrf),
                ("name", "Revenue"),
                ("description", "Invoiced, net"),
                ("category", "Finance"),
                ("frequency", "monthly"),
                ("value_type", "currency"),
                ("currency", "eur"),
                ("time_zone", "Europe/Paris"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let to = created.headers()[LOCATION].to_str().unwrap().to_owned();
    let id = to
        .strip_prefix("/console/streams/")
        .and_then(|rest| rest.strip_suffix("/credential"))
        .expect("to the credential page")
        .to_owned();
    let stream = admin.stream(&id).await.unwrap().stream.unwrap();
    assert_eq!(
        (stream.name.as_str(), stream.currency.as_str()),
        ("Revenue", "EUR")
    );
    let page = ada.get(&to).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let page = page.text().await.unwrap();
    assert!(page.contains("it will not be shown again"), "{page}");
    let secret = downloaded_credential(&page);
    assert!(page.contains(&secret), "shown in the page too, to copy");
    let credential: kpistream::client::Credential = secret.parse().unwrap();
    assert_eq!(credential.stream_id().as_str(), id);
    assert_eq!(ada.get(&to).await.status(), StatusCode::GONE, "shown once");
    let audit = admin.audit(&Default::default()).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "stream.created" && e.target_id == id),
        "audited as through the API"
    );

    // The credential publishes; a correction is a revision, with its history.
    publish_envelope(
        &admin,
        sealed(&credential, vec![point("2026-10", "1200.50")]),
        true,
    )
    .await
    .unwrap();
    publish_envelope(
        &admin,
        sealed(&credential, vec![point("2026-10", "1250.00")]),
        true,
    )
    .await
    .unwrap();
    let history = ada
        .get(&format!("/console/streams/{id}/periods/2026-10"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        history.contains("1250.00 EUR") && history.contains("1200.50 EUR"),
        "{history}"
    );
    assert!(history.contains(credential.key_id().as_str()), "which key");

    // Rotate: a new credential, once; revoke the first key.
    let rotated = ada
        .post(&format!("/console/streams/{id}/keys"), &[("csrf", &csrf)])
        .await;
    assert_eq!(rotated.headers()[LOCATION], to.as_str());
    let page = ada.get(&to).await.text().await.unwrap();
    let second: kpistream::client::Credential = downloaded_credential(&page).parse().unwrap();
    assert_ne!(second.key_id(), credential.key_id());
    let revoked = ada
        .post(
            &format!("/console/streams/{id}/keys/revoke"),
            &[("csrf", &csrf), ("key_id", credential.key_id().as_str())],
        )
        .await;
    assert!(redirects_to(&revoked, &format!("/console/streams/{id}")));
    let refused = publish_envelope(
        &admin,
        sealed(&credential, vec![point("2026-11", "1")]),
        true,
    )
    .await;
    assert!(refused.is_err(), "the revoked key signs nothing");
    publish_envelope(
        &admin,
        sealed(&second, vec![point("2026-11", "1300")]),
        true,
    )
    .await
    .unwrap();

    // Disable, enable, grant, then delete with the name typed.
    let stream_page = format!("/console/streams/{id}");
    let disabled = || async {
        admin.stream(&id).await.unwrap().stream.unwrap().status
            == proto::StreamStatus::Disabled as i32
    };
    ada.post(&format!("{stream_page}/disable"), &[("csrf", &csrf)])
        .await;
    assert!(disabled().await);
    ada.post(&format!("{stream_page}/enable"), &[("csrf", &csrf)])
        .await;
    assert!(!disabled().await);
    admin.create_team("finance").await.unwrap();
    let granted = ada
        .post(
            &format!("{stream_page}/grants"),
            &[
                ("csrf", &csrf),
                ("kind", "team"),
                ("name", "finance"),
                ("access", "read"),
            ],
        )
        .await;
    assert!(redirects_to(&granted, &stream_page));
    let grants = admin.grants(&id).await.unwrap();
    assert!(
        grants
            .iter()
            .any(|g| g.grantee == "team:finance" && g.access == "read"),
        "{grants:?}"
    );
    let unknown = ada
        .post(
            &format!("{stream_page}/grants"),
            &[
                ("csrf", &csrf),
                ("kind", "team"),
                ("name", "nobody"),
                ("access", "read"),
            ],
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(
        unknown.text().await.unwrap().contains("nobody"),
        "the API's sentence"
    );
    let wrong = ada
        .post(
            &format!("{stream_page}/delete"),
            &[("csrf", &csrf), ("confirm", "revenue")],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST, "the name, exactly");
    assert!(admin.stream(&id).await.is_ok(), "not deleted");
    let deleted = ada
        .post(
            &format!("{stream_page}/delete"),
            &[("csrf", &csrf), ("confirm", "Revenue")],
        )
        .await;
    assert!(redirects_to(&deleted, "/console"));
    assert_eq!(ada.get(&stream_page).await.status(), StatusCode::NOT_FOUND);
    let actions: Vec<String> = admin
        .audit(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.target_id == id)
        .map(|e| e.action)
        .collect();
    for action in [
        "stream.created",
        "key.rotated",
        "key.revoked",
        "stream.disabled",
        "stream.enabled",
        "grant.added",
        "stream.deleted",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_manages_people_tokens_and_categories_and_reads_the_audit_log() {
    let server = TestServer::start();
    let admin = server.client().await;
    let mut ada = Browser::new(&server);
    ada.sign_in(&server.token).await;
    let page = ada.get("/console/people").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = hidden_csrf(&page.text().await.unwrap());
    let post = |path: &'static str, fields: Vec<(&'static str, &'static str)>| {
        let mut fields = fields;
        fields.push(("csrf", Box::leak(csrf.clone().into_boxed_str())));
        (path, fields)
    };
    for (path, fields) in [
        post(
            "/console/people",
            vec![("name", "grace"), ("role", "member")],
        ),
        post("/console/teams", vec![("team", "growth")]),
        post(
            "/console/teams/members",
            vec![("team", "growth"), ("user", "grace"), ("change", "add")],
        ),
        post("/console/categories", vec![("name", "Finance")]),
        post(
            "/console/categories/rename",
            vec![("name", "Finance"), ("new_name", "Money")],
        ),
    ] {
        let answer = ada.post(path, &fields).await;
        assert_eq!(
            answer.status(),
            StatusCode::SEE_OTHER,
            "{path}: {:?}",
            answer.text().await
        );
    }
    let users = admin.users(0).await.unwrap();
    assert!(
        users
            .iter()
            .any(|u| u.name == "grace" && u.role == "member"),
        "{users:?}"
    );
    let teams = admin.teams().await.unwrap();
    assert_eq!(
        (teams[0].name.as_str(), teams[0].members.clone()),
        ("growth", vec!["grace".to_owned()])
    );
    let categories = admin.categories().await.unwrap();
    assert_eq!(categories[0].name, "Money");
    let duplicate = ada
        .post(
            "/console/people",
            &[("name", "grace"), ("role", "member"), ("csrf", &csrf)],
        )
        .await;
    assert!(duplicate.status().is_client_error(), "{duplicate:?}");
    assert!(
        duplicate.text().await.unwrap().contains("grace"),
        "the API's sentence"
    );

    // A token for grace: shown once; it signs her in; revoked, her session ends.
    let created = ada
        .post(
            "/console/tokens",
            &[
                ("name", "laptop"),
                ("user", "grace"),
                ("expires", "2099-01-31"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let shown_at = created.headers()[LOCATION].to_str().unwrap().to_owned();
    let token_id = shown_at
        .strip_prefix("/console/tokens/")
        .and_then(|rest| rest.strip_suffix("/secret"))
        .expect("to the token's page")
        .to_owned();
    let page = ada.get(&shown_at).await.text().await.unwrap();
    let secret = downloaded_credential(&page);
    assert!(page.contains("download=\"laptop.token\""), "{page}");
    let people = ada.get("/console/people").await.text().await.unwrap();
    assert!(
        people.contains(&format!("Revoke token {token_id}")),
        "an admin sees and revokes everyone's tokens"
    );
    assert!(secret.starts_with("kpit_"), "{secret}");
    assert_eq!(
        ada.get(&shown_at).await.status(),
        StatusCode::GONE,
        "shown once"
    );
    let mut grace = Browser::new(&server);
    assert!(redirects_to(&grace.sign_in(&secret).await, "/console"));
    let hers = grace.get("/console/people").await.text().await.unwrap();
    assert!(
        hers.contains("laptop") && hers.contains(&token_id),
        "her token"
    );
    assert!(
        !hers.contains("Add user") && !hers.contains("/console/people/delete"),
        "a member manages no one"
    );
    assert_eq!(
        grace.get("/console/audit").await.status(),
        StatusCode::FORBIDDEN
    );
    let revoked = ada
        .post(
            "/console/tokens/revoke",
            &[("id", &token_id), ("csrf", &csrf)],
        )
        .await;
    assert!(redirects_to(&revoked, "/console/people"));
    assert!(
        redirects_to(&grace.get("/console").await, "/console/sign-in"),
        "her session ended"
    );

    // The audit log, filtered by target.
    let log = ada
        .get("/console/audit?target=grace")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        log.contains("user.created") && !log.contains("team.member_added"),
        "{log}"
    );
    assert!(!log.contains("category.renamed"), "only what targets grace");
    let all = ada
        .get("/console/audit?actor=admin")
        .await
        .text()
        .await
        .unwrap();
    for action in [
        "user.created",
        "team.member_added",
        "team.created",
        "token.created",
        "token.revoked",
        "category.renamed",
    ] {
        assert!(all.contains(action), "{action}");
    }
    let bad = ada.get("/console/audit?since=yesterday").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let deleted = ada
        .post(
            "/console/categories/delete",
            &[("name", "Money"), ("csrf", &csrf)],
        )
        .await;
    assert!(redirects_to(&deleted, "/console/categories"));
    assert!(admin.categories().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_holds_a_bounded_number_of_live_pages() {
    let server = TestServer::start();
    let (id, _) = server.daily_stream("Sign-ups").await;
    let mut ada = Browser::new(&server);
    ada.sign_in(&server.token).await;
    let events = format!("/console/streams/{id}/events");
    let mut open = Vec::new();
    for _ in 0..8 {
        let live = ada.get(&events).await;
        assert_eq!(live.status(), StatusCode::OK);
        assert_eq!(live.headers()["content-type"], "text/event-stream");
        open.push(live);
    }
    let ninth = ada.get(&events).await;
    assert_eq!(ninth.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ninth
            .text()
            .await
            .unwrap()
            .contains("8 live pages open already")
    );
    let mut other = Browser::new(&server);
    other.sign_in(&server.token).await;
    assert_eq!(
        other.get(&events).await.status(),
        StatusCode::OK,
        "another session has places of its own"
    );
    // A page closed gives its place back.
    drop(open.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = ada.get(&events).await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place was not given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
