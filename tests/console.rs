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
        "/console",
        &format!("/console/streams/{stream_id}"),
        "/console/streams/str_x",
    ] {
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
        !text.contains("<h2>Keys</h2>"),
        "a reader does not see the keys"
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

    // The admin manages the stream: its page lists the keys.
    let mut ada = Browser::new(&server);
    ada.sign_in(&server.token).await;
    let page = ada
        .get(&format!("/console/streams/{shared}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>Keys</h2>") && page.contains(credential.key_id().as_str()));
    assert!(page.contains("user:grace"), "and the grants");
}
