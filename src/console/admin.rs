//! The console's admin work on streams: create one (its credential shown once), rotate
//! and revoke keys, disable and enable, delete (typed confirmation), grants. Each form
//! calls the gRPC API's own handler for the signed-in user ([`Authenticated`]), so the
//! rules, the checks and the audit log are those of the API and the CLI.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tonic::{Code, Status};

use super::pages::{error_page, layout, page, refused};
use super::session::Handout;
use super::{Console, NoFields, Posted, SignedIn};
use crate::access::Grant;
use crate::grpc::Authenticated;
use crate::proto;
use crate::proto::stream_admin_server::StreamAdmin;
use crate::stream::Stream;
use crate::stream::StreamKey;

/// The frequencies and value types the forms offer, with their wire numbers.
const FREQUENCIES: [(&str, proto::Frequency); 4] = [
    ("daily", proto::Frequency::Daily),
    ("weekly", proto::Frequency::Weekly),
    ("monthly", proto::Frequency::Monthly),
    ("quarterly", proto::Frequency::Quarterly),
];
const VALUE_TYPES: [(&str, proto::ValueType); 3] = [
    ("number", proto::ValueType::Number),
    ("currency", proto::ValueType::Currency),
    ("percentage", proto::ValueType::Percentage),
];

fn stream_page(id: &str) -> Response {
    Redirect::to(&format!("/console/streams/{id}")).into_response()
}

// ----------------------------------------------------------------------------------
// Create a stream

#[derive(Deserialize, Default)]
pub struct NewStream {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    frequency: String,
    #[serde(default)]
    value_type: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    time_zone: String,
}

pub async fn new_stream_page(State(console): State<Console>, signed_in: SignedIn) -> Response {
    new_stream_form(
        &console,
        &signed_in,
        &NewStream::default(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn new_stream_form(
    console: &Console,
    signed_in: &SignedIn,
    form: &NewStream,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let categories = match console
        .state
        .store
        .list_categories(&signed_in.who.org_id)
        .await
    {
        Ok(categories) => categories,
        Err(e) => return super::pages::store_error(&console.state, &e),
    };
    let time_zone = if form.time_zone.is_empty() {
        "UTC"
    } else {
        &form.time_zone
    };
    let markup = layout(
        "New stream",
        Some(signed_in),
        html! {
            p.back { a href="/console" { "← Streams" } }
            h1 { "New stream" }
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form.edit method="post" action="/console/streams" {
                (signed_in.csrf_field())
                label { "Name" input name="name" required maxlength="200" value=(form.name); }
                label { "Description" textarea name="description" rows="2" { (form.description) } }
                label { "Category"
                    input name="category" list="categories" value=(form.category);
                    datalist #categories { @for c in &categories { option value=(c.name) {} } }
                }
                label { "Frequency"
                    select name="frequency" required {
                        @for (name, _) in FREQUENCIES {
                            option value=(name) selected[form.frequency == name] { (name) }
                        }
                    }
                }
                label { "Value type"
                    select name="value_type" required {
                        @for (name, _) in VALUE_TYPES {
                            option value=(name) selected[form.value_type == name] { (name) }
                        }
                    }
                }
                label { "Currency (ISO 4217, for a currency)"
                    input name="currency" maxlength="3" placeholder="EUR" value=(form.currency);
                }
                label { "Time zone of its periods" input name="time_zone" value=(time_zone); }
                button type="submit" { "Create stream" }
            }
        },
    );
    page(status, markup)
}

pub async fn create_stream(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<NewStream>,
) -> Response {
    let number = |options: &[(&str, i32)], name: &str| {
        options
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, number)| *number)
    };
    let frequencies: Vec<(&str, i32)> = FREQUENCIES.iter().map(|(n, f)| (*n, *f as i32)).collect();
    let types: Vec<(&str, i32)> = VALUE_TYPES.iter().map(|(n, t)| (*n, *t as i32)).collect();
    let request = proto::CreateStreamRequest {
        name: form.name.clone(),
        description: form.description.clone(),
        category: form.category.clone(),
        frequency: number(&frequencies, &form.frequency),
        value_type: number(&types, &form.value_type),
        currency: form.currency.trim().to_uppercase(),
        time_zone: form.time_zone.trim().to_owned(),
        grants: Vec::new(),
    };
    let created = console
        .admin
        .create_stream(Authenticated::request(&signed_in.who, request))
        .await;
    match created {
        Ok(created) => {
            let created = created.into_inner();
            let (Some(stream), Some(key)) = (created.stream, created.key) else {
                return refused(&console.state, &Status::internal("no stream in the answer"));
            };
            let handout =
                credential_handout(stream.id, &stream.name, key.key_id, created.credential);
            hand_out(&console, &signed_in, handout)
        }
        // What the user can fix in the form: a field, a category that does not exist.
        Err(status)
            if matches!(
                status.code(),
                Code::InvalidArgument
                    | Code::NotFound
                    | Code::FailedPrecondition
                    | Code::AlreadyExists
            ) =>
        {
            new_stream_form(
                &console,
                &signed_in,
                &form,
                Some(status.message()),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(status) => refused(&console.state, &status),
    }
}

// ----------------------------------------------------------------------------------
// A credential, shown once

/// Keeps a new secret for its one showing and sends the browser to it (so a reload of
/// the page after the form shows nothing again and creates nothing twice).
pub fn hand_out(console: &Console, signed_in: &SignedIn, handout: Handout) -> Response {
    let to = handout.shown_at.clone();
    console.sessions.hand_out(&signed_in.id, handout);
    Redirect::to(&to).into_response()
}

/// A stream's new credential, for its page.
fn credential_handout(stream_id: String, name: &str, key_id: String, secret: String) -> Handout {
    Handout::new(
        stream_id.clone(),
        format!("Credential of {name}"),
        vec![("Stream", stream_id.clone()), ("Key", key_id)],
        file_name(name, "kpik"),
        (format!("/console/streams/{stream_id}"), name.to_owned()),
        format!("/console/streams/{stream_id}/credential"),
        SecretString::from(secret),
    )
}

/// A name as a file name with `extension`: `weekly-active-users.kpik`.
pub fn file_name(name: &str, extension: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug = if slug.is_empty() { "secret" } else { &slug };
    format!("{slug}.{extension}")
}

pub async fn credential(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    show_secret(
        &console,
        &signed_in,
        &id,
        "Rotate the stream's key to get a new one.",
        html! {
            "Whoever holds this credential can publish to the stream; keep it in a file only its program can read (mode 0600). Publish with it: "
            code { "kpistream publish --credential FILE --period 2026-11-30 --value 42" }
        },
    )
}

/// The page that shows a secret kept for this session about `subject`, once.
pub fn show_secret(
    console: &Console,
    signed_in: &SignedIn,
    subject: &str,
    again: &str,
    usage: Markup,
) -> Response {
    let Some(handout) = console.sessions.take_handout(&signed_in.id, subject) else {
        return error_page(
            StatusCode::GONE,
            "Shown already",
            &format!("A secret is shown once, on the page after it was made. {again}"),
        );
    };
    let secret = handout.secret.expose_secret();
    let data = base64::engine::general_purpose::STANDARD.encode(format!("{secret}\n"));
    let (back, back_text) = &handout.back;
    let markup = layout(
        &handout.title,
        Some(signed_in),
        html! {
            p.back { a href=(back) { "← " (back_text) } }
            h1 { (handout.title) }
            p.warning role="alert" {
                strong { "Save it now: it will not be shown again." }
                " The server keeps only what checks it, never the secret itself."
            }
            dl.facts {
                @for (name, value) in &handout.facts { dt { (name) } dd { code { (value) } } }
            }
            label for="credential" { "Secret" }
            textarea #credential.credential readonly rows="3" spellcheck="false" { (secret) }
            p.actions {
                a.button #download download=(handout.file_name)
                    data-download-from="credential"
                    href={ "data:application/octet-stream;base64," (data) } { "Download" }
                button type="button" data-copy="credential" hidden { "Copy" }
            }
            p { (usage) }
        },
    );
    page(StatusCode::OK, markup)
}

// ----------------------------------------------------------------------------------
// Keys, status, deletion, grants

#[derive(Deserialize)]
pub struct KeyForm {
    key_id: String,
}

pub async fn rotate_key(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    let request = proto::StreamRef { stream_id: id };
    let stream = match stream_of(&console, &signed_in, &request.stream_id).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    match console
        .admin
        .rotate_key(Authenticated::request(&signed_in.who, request))
        .await
    {
        Ok(rotated) => {
            let rotated = rotated.into_inner();
            let key_id = rotated.key.map(|k| k.key_id).unwrap_or_default();
            let handout = credential_handout(
                stream.id.to_string(),
                &stream.definition.name,
                key_id,
                rotated.credential,
            );
            hand_out(&console, &signed_in, handout)
        }
        Err(status) => refused(&console.state, &status),
    }
}

/// The stream, for a page that names it; the same answer as the API's for one the user
/// may not see.
async fn stream_of(console: &Console, signed_in: &SignedIn, id: &str) -> Result<Stream, Response> {
    console
        .state
        .stream_for(&signed_in.who, id, crate::access::Access::Read)
        .await
        .map_err(|e| refused(&console.state, &Status::from(e)))
}

pub async fn revoke_key(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, form }: Posted<KeyForm>,
) -> Response {
    let request = proto::RevokeKeyRequest {
        stream_id: id.clone(),
        key_id: form.key_id,
    };
    api!(console, admin, signed_in, revoke_key, request);
    stream_page(&id)
}

pub async fn disable(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    let request = proto::StreamRef {
        stream_id: id.clone(),
    };
    api!(console, admin, signed_in, disable_stream, request);
    stream_page(&id)
}

pub async fn enable(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    let request = proto::StreamRef {
        stream_id: id.clone(),
    };
    api!(console, admin, signed_in, enable_stream, request);
    stream_page(&id)
}

pub async fn delete_page(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let stream = match console
        .state
        .stream_for(&signed_in.who, &id, crate::access::Access::Manage)
        .await
    {
        Ok(stream) => stream,
        Err(e) => return refused(&console.state, &Status::from(e)),
    };
    delete_form(&signed_in, &stream, None, StatusCode::OK)
}

fn delete_form(
    signed_in: &SignedIn,
    stream: &Stream,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let name = &stream.definition.name;
    let markup = layout(
        "Delete stream",
        Some(signed_in),
        html! {
            p.back { a href={ "/console/streams/" (stream.id) } { "← " (name) } }
            h1 { "Delete " (name) }
            p.warning role="alert" {
                "This deletes the stream, its " (stream.point_count) " point(s), their revisions and its keys, for good. "
                "Publishers holding its credential are refused from then on. To stop it for a while, disable it instead."
            }
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form.edit method="post" action={ "/console/streams/" (stream.id) "/delete" } {
                (signed_in.csrf_field())
                label { "Type the stream's name, " strong { (name) } ", to confirm"
                    input name="confirm" autocomplete="off" required;
                }
                button.danger type="submit" { "Delete for good" }
            }
        },
    );
    page(status, markup)
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

pub async fn delete(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, form }: Posted<DeleteForm>,
) -> Response {
    let stream = match console
        .state
        .stream_for(&signed_in.who, &id, crate::access::Access::Manage)
        .await
    {
        Ok(stream) => stream,
        Err(e) => return refused(&console.state, &Status::from(e)),
    };
    if form.confirm.trim() != stream.definition.name {
        return delete_form(
            &signed_in,
            &stream,
            Some("The name typed is not the stream's: nothing was deleted."),
            StatusCode::BAD_REQUEST,
        );
    }
    let request = proto::StreamRef { stream_id: id };
    api!(console, admin, signed_in, delete_stream, request);
    Redirect::to("/console").into_response()
}

#[derive(Deserialize)]
pub struct GrantForm {
    /// `team`, `user` or `org`.
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    access: String,
}

impl GrantForm {
    /// The grant as the API spells it: `team:NAME:read`, `org:manage`.
    fn spec(&self) -> String {
        let access = if self.access == "manage" {
            "manage"
        } else {
            "read"
        };
        match self.kind.as_str() {
            "org" => format!("org:{access}"),
            kind => format!("{kind}:{}:{access}", self.name.trim()),
        }
    }
}

pub async fn add_grant(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, form }: Posted<GrantForm>,
) -> Response {
    let request = proto::GrantRequest {
        stream_id: id.clone(),
        grant: form.spec(),
    };
    api!(console, admin, signed_in, add_grant, request);
    stream_page(&id)
}

#[derive(Deserialize)]
pub struct RemoveGrantForm {
    grantee: String,
}

pub async fn remove_grant(
    State(console): State<Console>,
    Path(id): Path<String>,
    Posted { signed_in, form }: Posted<RemoveGrantForm>,
) -> Response {
    let request = proto::GrantRequest {
        stream_id: id.clone(),
        grant: form.grantee,
    };
    api!(console, admin, signed_in, remove_grant, request);
    stream_page(&id)
}

// ----------------------------------------------------------------------------------
// What a stream's page shows its managers

/// The keys, grants and controls of a stream, for those who manage it.
pub fn stream_controls(
    signed_in: &SignedIn,
    stream: &Stream,
    disabled: bool,
    keys: &[StreamKey],
    grants: &[Grant],
    teams: &[String],
) -> Markup {
    let base = format!("/console/streams/{}", stream.id);
    let csrf = signed_in.csrf_field();
    html! {
        section.manage aria-labelledby="keys" {
            h2 #keys { "Keys" }
            table.keys {
                thead { tr { th { "Key" } th { "Origin" } th { "Created" } th { "Last used" } th { "Revoked" } th { span.visually-hidden { "Action" } } } }
                tbody {
                    @for k in keys {
                        tr class=[k.revoked_at.map(|_| "revoked")] {
                            td { code { (k.key_id) } }
                            td { (k.origin.as_str()) }
                            td { (super::pages::local_time(k.created_at)) }
                            td { @if let Some(at) = k.last_used_at { (super::pages::local_time(at)) } @else { "never" } }
                            td { @if let Some(at) = k.revoked_at { (super::pages::local_time(at)) } @else { "no" } }
                            td {
                                @if k.revoked_at.is_none() {
                                    form.inline method="post" action={ (base) "/keys/revoke" } {
                                        (csrf)
                                        input type="hidden" name="key_id" value=(k.key_id);
                                        button.secondary type="submit" aria-label={ "Revoke key " (k.key_id) } { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action={ (base) "/keys" } {
                (csrf)
                button type="submit" { "Rotate key" }
                span.hint { " A new key and its credential, shown once; the old keys stay valid until revoked." }
            }
        }
        section.manage aria-labelledby="grants" {
            h2 #grants { "Grants" }
            @if grants.is_empty() { p { "Not shared: the organisation's admins and its managers see it." } }
            @else {
                ul.grants {
                    @for g in grants {
                        li {
                            (g.grantee.to_string()) " — " (g.access.as_str())
                            form.inline method="post" action={ (base) "/grants/remove" } {
                                (csrf)
                                input type="hidden" name="grantee" value=(g.grantee.to_string());
                                button.secondary type="submit" aria-label={ "Remove the grant to " (g.grantee.to_string()) } { "Remove" }
                            }
                        }
                    }
                }
            }
            form.grant method="post" action={ (base) "/grants" } {
                (csrf)
                label { "Share with "
                    select name="kind" {
                        option value="team" { "team" }
                        option value="user" { "user" }
                        option value="org" { "the whole organisation" }
                    }
                }
                label { "Name " input name="name" list="teams" placeholder="team or user name"; }
                datalist #teams { @for t in teams { option value=(t) {} } }
                label { "Access "
                    select name="access" { option value="read" { "read" } option value="manage" { "manage" } }
                }
                button type="submit" { "Grant" }
            }
        }
        section.manage aria-labelledby="state" {
            h2 #state { "State" }
            @if disabled {
                form.inline method="post" action={ (base) "/enable" } {
                    (csrf)
                    button type="submit" { "Enable stream" }
                    span.hint { " Publishing is refused while it is disabled." }
                }
            } @else {
                form.inline method="post" action={ (base) "/disable" } {
                    (csrf)
                    button.secondary type="submit" { "Disable stream" }
                    span.hint { " Refuses new points and keeps what it has." }
                }
            }
            p { a.danger href={ (base) "/delete" } { "Delete stream…" } }
        }
    }
}
